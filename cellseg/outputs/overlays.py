"""Which frames of a source get an outline overlay PNG, and its name."""

from __future__ import annotations

import re


def overlay_frames(n_frames: int, every: int) -> set[int]:
    """Frames of a source that get an overlay PNG."""
    return {0} if n_frames == 1 else {*range(0, n_frames, max(every, 1)), n_frames - 1}


def overlay_name(stem: str, n_frames: int, index: int) -> str:
    """The overlay PNG of frame ``index`` of a source of ``n_frames``."""
    return f"{stem}_overlay.png" if n_frames == 1 else f"{stem}_t{index:03d}_overlay.png"


def is_overlay_of(stem: str, name: str) -> bool:
    """Whether file ``name`` is an overlay :func:`overlay_name` gives ``stem``, of any frame."""
    return re.fullmatch(rf"{re.escape(stem)}(_t\d{{3,}})?_overlay\.png", name) is not None
