"""``python -m cellseg.bench``."""

import sys

from cellseg.bench import main
from cellseg.errors import CellsegError

try:
    main()
except CellsegError as err:
    print(f"cellseg: error: {err}".splitlines()[0], file=sys.stderr)
    sys.exit(2)
