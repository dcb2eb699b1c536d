"""``python -m cellseg.export``."""

import sys

from cellseg.errors import CellsegError
from cellseg.export import main

try:
    main(sys.argv[1:])
except CellsegError as err:
    print(f"cellseg: error: {err}".splitlines()[0], file=sys.stderr)
    sys.exit(2)
