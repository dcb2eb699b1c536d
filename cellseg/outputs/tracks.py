"""The outputs of a tracked movie: the Cell Tracking Challenge result folder (written as
frames come), the tracks table, napari's Tracks layer tables and the pictures.

- ``<stem>_RES/``: ``maskNNN.tif`` (uint16, value = track id) and ``res_track.txt``
  (``L B E P``), the folder the challenge's validator and py-ctcmetrics read;
- ``<stem>_tracks.csv``: one row per track, TrackMate's column names;
- ``<stem>_napari_tracks.csv`` (``track_id, t, y, x``) and ``<stem>_napari_graph.json``
  (``{track_id: [parent_id]}``): ``viewer.add_tracks(data, graph=graph)``;
- ``<stem>_growth.png`` (area and mean intensity of every track over time) and
  ``<stem>_lineage.png`` (the lineage tree).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tifffile

from cellseg.errors import CellsegError
from cellseg.outputs.atomic import commit, remove, temp_name, write_json, write_with
from cellseg.outputs.plots import growth_figure, lineage_figure
from cellseg.outputs.streams import FileQueue
from cellseg.tracking.ctc import frame_digits
from cellseg.tracking.tables import ctc_frame_labels, ctc_res_track_lines, napari_tracks, tracks_table
from cellseg.tracking.tracker import Track


def write_mask(path: Path, labels: np.ndarray) -> None:
    """One CTC mask page (uint16, uncompressed as the challenge's examples)."""
    tifffile.imwrite(path, labels.astype(np.uint16, copy=False), photometric="minisblack")


class TrackOutputs:
    """Everything a tracked movie writes beside its labels and measurements."""

    SUFFIXES = ("_tracks.csv", "_napari_tracks.csv", "_napari_graph.json", "_growth.png", "_lineage.png", "_RES")

    def __init__(self, out_dir: Path, stem: str, files: FileQueue, n_frames: int):
        self.out_dir, self.stem, self.files = out_dir, stem, files
        self.digits = frame_digits(n_frames)  # mask1000.tif sorts before mask101.tif: all get 4 digits then
        self.res = self.res_path(out_dir, stem)
        self.res_tmp = temp_name(self.res)
        remove(self.res_tmp)
        self.res_tmp.mkdir(parents=True)
        self.count = 0

    @staticmethod
    def res_path(out_dir: Path, stem: str) -> Path:
        """The movie's CTC result folder (the one output that is a folder)."""
        return out_dir / f"{stem}_RES"

    @classmethod
    def paths(cls, out_dir: Path, stem: str) -> list[Path]:
        """Final paths of a movie's track outputs."""
        return [out_dir / f"{stem}{suffix}" for suffix in cls.SUFFIXES]

    def add_frame(self, index: int, labels: np.ndarray, tracks: list[Track]) -> None:
        """Queue frame ``index``'s mask for the CTC folder (a track bridged over a gap is a new
        CTC track after the gap, as the challenge's format wants)."""
        masks = ctc_frame_labels(labels, index, tracks)
        if masks.dtype.itemsize > 2 and int(masks.max(initial=0)) >= 2**16:
            raise CellsegError(f"{self.stem}: track id {int(masks.max())} does not fit the CTC's 16-bit masks")
        self.files.submit(write_mask, self.res_tmp / f"mask{index:0{self.digits}d}.tif", masks)

    def commit(self, tracks: list, rows: pd.DataFrame) -> None:
        """Write the tables and pictures, then move everything to its final name."""
        self.count = len(tracks)
        (self.res_tmp / "res_track.txt").write_text("".join(f"{line}\n" for line in ctc_res_track_lines(tracks)))
        table = tracks_table(tracks)
        data, graph = napari_tracks(rows, tracks)
        path = dict(zip(self.SUFFIXES, self.paths(self.out_dir, self.stem)))
        write_with(path["_tracks.csv"], lambda tmp: table.to_csv(tmp, index=False))
        napari = pd.DataFrame(data, columns=["track_id", "t", "y", "x"])
        write_with(path["_napari_tracks.csv"], lambda tmp: napari.to_csv(tmp, index=False))
        write_json(path["_napari_graph.json"], {str(k): list(map(int, v)) for k, v in graph.items()})
        write_with(path["_growth.png"], lambda tmp: growth_figure(rows, tmp))
        write_with(path["_lineage.png"], lambda tmp: lineage_figure(table, tmp))
        commit(self.res_tmp, self.res)

    def discard(self) -> None:
        """Remove the unfinished CTC folder."""
        remove(self.res_tmp)
