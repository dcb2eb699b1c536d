"""The "Cells to review" dock widget: the cells of the active cellseg labels layer most worth
checking first (:func:`cellseg.review.cells_to_review`, the same list as the prediction
report), a click away each, and a button that saves the corrected labels as training masks.

Choosing a row moves the viewer to the cell's frame, centres the view on it and selects its
label, so painting or erasing starts on that cell.
"""

from __future__ import annotations

import napari
import pandas as pd
from napari.layers import Labels
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cellseg.errors import CellsegError
from cellseg.napari.writer import save_corrections
from cellseg.review import REVIEW_COLUMNS, cells_to_review

FORMATS = {"mean_prob": "{:.3f}", "size_score": "{:+.1f}", "area": "{:.0f}"}


def is_cellseg_labels(layer: object) -> bool:
    """Whether ``layer`` is a labels layer the cellseg reader opened."""
    return isinstance(layer, Labels) and "cellseg" in layer.metadata


def unwrap(layer: object) -> object:
    """The layer itself, not the proxy napari hands to plugin widgets (a new one on every access)."""
    return getattr(layer, "__wrapped__", layer)


def cell_text(column: str, value: object) -> str:
    """How the table shows one value."""
    if pd.isna(value):
        return ""
    return FORMATS[column].format(value) if column in FORMATS else str(value)


class ReviewWidget(QWidget):
    """A table of the cells to review in the active cellseg labels layer, and a save button."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, n: int = 20):
        super().__init__()
        self.viewer = napari_viewer
        self.layer: Labels | None = None
        self.rows = pd.DataFrame(columns=REVIEW_COLUMNS)
        self.title = QLabel()
        self.count = QSpinBox()
        self.count.setRange(1, 10_000)
        self.count.setValue(n)
        self.count.setPrefix("show up to ")
        self.table = QTableWidget(0, len(REVIEW_COLUMNS))
        self.table.setHorizontalHeaderLabels(REVIEW_COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.overwrite = QCheckBox("replace existing masks")
        self.save_button = QPushButton("Save corrections")
        self.status = QLabel()
        self.status.setWordWrap(True)
        saving = QHBoxLayout()
        saving.addWidget(self.save_button)
        saving.addWidget(self.overwrite)
        layout = QVBoxLayout(self)
        for widget in (self.title, self.count, self.table):
            layout.addWidget(widget)
        layout.addLayout(saving)
        layout.addWidget(self.status)
        self.count.valueChanged.connect(self.refresh)
        self.table.itemSelectionChanged.connect(self._on_selection)
        self.save_button.clicked.connect(self.save)
        self.viewer.layers.selection.events.active.connect(self._on_layers)
        self.viewer.layers.events.inserted.connect(self._on_layers)
        self.viewer.layers.events.removed.connect(self._on_layers)
        self.set_layer(self.pick_layer())

    def pick_layer(self) -> Labels | None:
        """The active layer if it is a cellseg labels layer, else the one shown now, else the first."""
        layers = [unwrap(layer) for layer in self.viewer.layers]
        active = unwrap(self.viewer.layers.selection.active)
        if is_cellseg_labels(active):
            return active
        if any(layer is self.layer for layer in layers):
            return self.layer
        return next((layer for layer in layers if is_cellseg_labels(layer)), None)

    def _on_layers(self, event: object = None) -> None:
        layer = self.pick_layer()
        if layer is not self.layer:
            self.set_layer(layer)

    def set_layer(self, layer: Labels | None) -> None:
        """List the cells of ``layer`` (None: nothing to list). "replace existing masks" was
        ticked for the layer before: another image's hand-made masks are not replaced unasked."""
        self.layer = layer
        self.overwrite.setChecked(False)
        self.refresh()

    def refresh(self) -> None:
        """Recompute the list from the layer's measurements and fill the table."""
        layer = self.layer
        if layer is None:
            self.rows = self.rows.iloc[0:0]
            self.title.setText("open a cellseg output folder (File > Open Folder...) to list its cells")
        else:
            cells = layer.metadata["cellseg"]["measurements"]
            self.rows = cells_to_review(cells, self.count.value())
            corrected = int(cells["corrected"].sum()) if "corrected" in cells else 0
            left_out = f" ({corrected} cells your saved corrections changed are left out)" if corrected else ""
            self.title.setText(f"{layer.name}: {len(self.rows)} cells to check first, most doubtful first{left_out}")
        self.table.blockSignals(True)
        self.table.clearContents()
        self.table.setRowCount(len(self.rows))
        for i, row in enumerate(self.rows.itertuples(index=False)):
            for j, column in enumerate(REVIEW_COLUMNS):
                self.table.setItem(i, j, QTableWidgetItem(cell_text(column, getattr(row, column))))
        self.table.blockSignals(False)
        self.table.resizeColumnsToContents()

    def _on_selection(self) -> None:
        picked = self.table.selectionModel().selectedRows()
        if picked:
            self.go_to(picked[0].row())

    def go_to(self, index: int) -> None:
        """Show row ``index``: its frame, centred, with its label selected for editing."""
        layer, row = self.layer, self.rows.iloc[index]
        frame, label = int(row["frame"]), int(row["label"])
        cells = layer.metadata["cellseg"]["measurements"]
        cell = cells[(cells["frame"] == frame) & (cells["label"] == label)].iloc[0]
        position = [cell["centroid_y"], cell["centroid_x"]]
        world = layer.data_to_world([frame, *position] if layer.ndim == 3 else position)
        first = self.viewer.dims.ndim - layer.ndim  # world axis of the layer's first axis
        if layer.ndim == 3:
            self.viewer.dims.set_point(first, world[0])
        self.viewer.camera.center = tuple(world[-2:])
        layer.selected_label = label
        if unwrap(self.viewer.layers.selection.active) is not layer:
            self.viewer.layers.selection.active = layer

    def save(self) -> list:
        """Save the layer's corrections beside its image; report what was written or why not."""
        if self.layer is None:
            self.status.setText("no cellseg labels layer to save")
            return []
        try:
            written = save_corrections(self.layer, overwrite=self.overwrite.isChecked())
        except (CellsegError, OSError) as err:  # MasksExist is both
            self.status.setText(str(err))
            show_warning(str(err))
            return []
        message = f"saved {len(written)} mask file(s): {', '.join(str(p) for p in written)}"
        self.status.setText(message)
        show_info(message)
        return written
