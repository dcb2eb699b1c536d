"""The one exception type that entry points turn into a single clear error line."""


class CellsegError(Exception):
    """A user-facing problem (bad input, bad checkpoint, bad option) with a fix in its message."""
