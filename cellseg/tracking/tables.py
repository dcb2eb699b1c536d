"""Track rows as tables: TrackMate-style statistics, napari Tracks layer data, CTC lineage.

A track bridged over a gap keeps one id (napari, the table) but is written to the Cell
Tracking Challenge format as one CTC track per gap-free run, each run the child of the one
before (CTC labels must be present in every frame from their start to their end).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from cellseg.tracking.tracker import Track

TRACK_COLUMNS = [
    "TRACK_ID",
    "PARENT_ID",
    "TRACK_START",
    "TRACK_STOP",
    "NUMBER_SPOTS",
    "DIVIDES",
    "TRACK_DISPLACEMENT",
    "TRACK_MEAN_SPEED",
    "MEAN_AREA",
    "MEAN_INTENSITY",
]


def tracks_table(tracks: Iterable[Track]) -> pd.DataFrame:
    """One row per track: lifetime, lineage, displacement and speed (px, px/frame), means."""
    tracks = list(tracks)
    parents = {t.parent_id for t in tracks}
    rows = []
    for t in tracks:
        duration = t.last_frame - t.first_frame
        rows.append(
            [
                t.track_id,
                t.parent_id,
                t.first_frame,
                t.last_frame,
                t.frames_present,
                t.track_id in parents,
                float(np.hypot(*np.subtract(t.last_centroid, t.first_centroid))),
                t.path_length / duration if duration else 0.0,
                t.mean_area,
                t.mean_intensity,
            ]
        )
    return pd.DataFrame(rows, columns=TRACK_COLUMNS).astype({"DIVIDES": bool})


def napari_tracks(rows: pd.DataFrame, tracks: Iterable[Track]) -> tuple[np.ndarray, dict[int, list[int]]]:
    """``(data, graph)`` for ``napari.layers.Tracks``.

    ``rows``: one row per cell and frame with ``label`` (the track id), ``frame``,
    ``centroid_y``, ``centroid_x`` (the columns of :func:`cellseg.measure.measure`).
    ``data`` is ``(N, 4)`` ``track_id, t, y, x`` sorted by track and time; ``graph`` maps
    each daughter track id to the list of its parents' ids.
    """
    ordered = rows.sort_values(["label", "frame"])
    data = ordered[["label", "frame", "centroid_y", "centroid_x"]].to_numpy(np.float64)
    graph = {t.track_id: [t.parent_id] for t in tracks if t.parent_id}
    return data, graph


def ctc_res_track_lines(tracks: Iterable[Track]) -> list[str]:
    """Lines ``L B E P`` of the CTC ``res_track.txt``, one per gap-free run of every track."""
    tracks = list(tracks)
    last_label = {t.track_id: t.segments[-1][0] for t in tracks}  # what a track's daughters name as parent
    lines = []
    for t in tracks:
        parent = last_label.get(t.parent_id, 0)
        for label, start, stop in t.segments:
            lines.append(f"{label} {start} {stop} {parent}")
            parent = label
    return lines


def ctc_frame_labels(labels: np.ndarray, frame: int, tracks: Iterable[Track]) -> np.ndarray:
    """Track-id labels of ``frame`` as CTC labels (differs only after a bridged gap; else
    ``labels`` itself, without a pass over the frame)."""
    renames = {
        t.track_id: label
        for t in tracks
        if len(t.segments) > 1
        for label, start, stop in t.segments
        if start <= frame <= stop and label != t.track_id
    }
    if not renames:
        return labels
    lut = np.arange(max(int(labels.max()), *renames) + 1, dtype=np.uint32)
    lut[list(renames)] = list(renames.values())
    return lut[labels]
