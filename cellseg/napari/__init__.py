"""napari plugin: open a cellseg output folder, review the doubtful cells, save corrections.

The manifest (``napari.yaml``) names the reader, the writer and the widget; napari finds it
through the ``napari.manifest`` entry point once cellseg is installed (``pip install -e .``).
Nothing here imports napari or Qt at import time except :mod:`cellseg.napari.widget`.
"""

from pathlib import Path

MANIFEST = Path(__file__).with_name("napari.yaml")
