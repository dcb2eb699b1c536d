"""``python -m cellseg.bench``."""

from cellseg.bench import main

main()
