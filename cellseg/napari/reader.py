"""napari reader: a cellseg output folder (``predict.py``'s ``output=``) as layers.

For every source of the run: the raw image (read the way prediction read it, channel
included), the cell probability (hidden image layer), the labels with the measurements as
layer ``features``, and for tracked movies a tracks layer with its division graph. Where
corrections were saved beside the image (``<stem>_masks.tif``, per frame for a movie
folder), the labels show them in place of the prediction, so a second session goes on from
the first; the features still describe the prediction, and the cells to review leave out
the predicted cells those corrections changed (``corrected`` in the measurements).

The images behind the outputs are found through ``run.json`` (``sources[].paths``); an
older folder without it is matched to ``<stem>.tif/.tiff/.png/.npy`` in the folder above
it, or, for a movie folder whose output sits inside it, to that folder's frames.

Features are one row per label value, as napari wants: a single image gets its rows of
``measurements.csv`` unchanged; a tracked movie (label = track id) one row per track
(first and last frame, frame count, median area, mean intensity, mean and lowest
``mean_prob``); an untracked stack, whose labels are numbered afresh in every frame, none.
The per-frame rows of every movie are in ``layer.metadata["cellseg"]["measurements"]``.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tifffile

from cellseg.data.io import annotated_pages
from cellseg.errors import CellsegError
from cellseg.inference.inputs import BadFrame, Source, decide_axes, find_inputs, header, is_movie_folder
from cellseg.napari.writer import mask_path
from cellseg.outputs.streams import read_measurements

LayerData = tuple[Any, dict, str]
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".npy")


def output_folder(path: str | Path | list) -> Path | None:
    """The cellseg output folder ``path`` names (the folder, its measurements.csv or run.json), or None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    folder = Path(path)
    if folder.is_file() and folder.name in ("measurements.csv", "run.json"):
        folder = folder.parent
    if folder.is_dir() and (folder / "measurements.csv").is_file() and any(folder.glob("*_labels.tif")):
        return folder
    return None


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """npe2 reader hook: :func:`read_output_folder` when ``path`` is a cellseg output folder."""
    return read_output_folder if output_folder(path) is not None else None


def run_record(folder: Path) -> dict | None:
    """``run.json`` of the folder, or None when absent or unreadable."""
    try:
        return json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return None


def source_list(folder: Path, record: dict | None) -> list[tuple[str, list[Path]]]:
    """``(stem, image paths)`` of every source with labels: from run.json, else from the labels files."""
    stems = sorted(p.name.removesuffix("_labels.tif") for p in folder.glob("*_labels.tif"))
    recorded = {s["name"]: [Path(p) for p in s.get("paths", [])] for s in (record or {}).get("sources", [])}
    found = []
    for stem in stems:
        paths = [p for p in recorded.get(stem, []) if p.is_file()]
        if len(paths) < len(recorded.get(stem, [])):
            warnings.warn(f"{stem}: images named in run.json are missing; looking beside the folder", stacklevel=3)
            paths = []
        found.append((stem, paths or beside(folder, stem)))
    return found


def beside(folder: Path, stem: str) -> list[Path]:
    """The image of ``stem`` next to the output folder, or the movie folder the output sits in."""
    parent = folder.parent
    for suffix in IMAGE_SUFFIXES:
        if (parent / f"{stem}{suffix}").is_file():
            return [parent / f"{stem}{suffix}"]
    if parent.name == stem:
        try:
            frames = find_inputs(str(parent))
        except CellsegError:
            return []
        if is_movie_folder(frames):
            return frames
    return []


def read_frames(stem: str, paths: list[Path], shape: tuple[int, ...], channel: int | None) -> np.ndarray | None:
    """The raw frames as prediction read them, shaped like the labels; None (and a warning) if impossible."""
    try:
        if len(paths) == 1:
            axes, n_frames = decide_axes(*header(paths[0]), paths[0], channel)
            source = Source(stem, paths, n_frames, axes, channel)
        else:
            source = Source(stem, paths, len(paths), "YX", channel)
        frames = [frame for _, frame in source.frames()]
    except CellsegError as err:
        warnings.warn(f"{stem}: image not shown: {err}", stacklevel=3)
        return None
    good = next((f for f in frames if not isinstance(f, BadFrame)), None)
    if good is None:
        return None
    stack = np.stack([np.zeros_like(good) if isinstance(f, BadFrame) else f for f in frames])
    stack = stack[0] if len(shape) == 2 else stack
    if stack.shape != tuple(shape):
        warnings.warn(f"{stem}: image {paths[0]} of shape {stack.shape} but labels {shape}", stacklevel=3)
        return None
    return stack


def saved_masks(stem: str, paths: list[Path], labels: np.ndarray) -> tuple[np.ndarray, dict[str, list[int]]]:
    """``labels`` with the corrections saved beside the image(s) in place of the prediction
    (of a stack file's mask stack, the ``corrected_frames`` only), and the mask files used,
    each with its ``[mtime_ns, size]`` when read (saving may replace those files again, but
    not one changed since). A mask that does not fit is left out with a warning."""
    targets = {mask_path(paths[0]): slice(None)} if len(paths) == 1 else {mask_path(p): t for t, p in enumerate(paths)}
    if len(paths) > 1 and (labels.ndim != 3 or len(labels) != len(paths)):
        return labels, {}
    shown, used = labels, {}
    for path, where in targets.items():
        if not path.is_file():
            continue
        stat = path.stat()
        try:
            mask = np.squeeze(tifffile.imread(path))
            stack = annotated_pages(path) if len(paths) == 1 and labels.ndim == 3 else None  # refuses a bad record
        except (OSError, ValueError, tifffile.TiffFileError, CellsegError) as err:
            warnings.warn(f"{stem}: saved corrections {path} not shown: {err}", stacklevel=3)
            continue
        expected = labels[where].shape
        if mask.shape != expected or mask.dtype.kind not in "ui":
            warnings.warn(
                f"{stem}: saved corrections {path} not shown: {mask.dtype} of shape {mask.shape}, labels {expected}",
                stacklevel=3,
            )
            continue
        if shown is labels:
            shown = labels.astype(np.result_type(labels.dtype, mask.dtype))
        if stack is None:
            shown[where] = mask
        else:  # only the frames corrected: the others are the prediction's, perhaps an older model's
            shown[stack[1]] = mask[stack[1]]
        used[str(path)] = [stat.st_mtime_ns, stat.st_size]
    return shown, used


def corrected_cells(rows: pd.DataFrame, predicted: np.ndarray, shown: np.ndarray) -> pd.Series:
    """For each row (``frame``, ``label``) of the prediction, whether the shown labels changed
    any of its pixels."""
    changed: set[tuple[int, int]] = set()
    pages = (predicted, shown) if predicted.ndim == 3 else (predicted[None], shown[None])
    for t, (before, after) in enumerate(zip(*pages)):
        differs = before != after
        if differs.any():
            changed.update((t, int(label)) for label in np.unique(before[differs]) if label)
    cells = zip(rows["frame"].astype(int), rows["label"].astype(int))
    return pd.Series([cell in changed for cell in cells], index=rows.index, dtype=bool)


def label_features(rows: pd.DataFrame, n_frames: int) -> pd.DataFrame:
    """One row per label value (column ``index``): the cells of an image, or the tracks of a movie."""
    if n_frames == 1:
        return rows.reset_index(drop=True).assign(index=rows["label"].to_numpy())
    if rows.empty or rows["track_id"].isna().any():
        return pd.DataFrame()  # untracked stack: label values mean different cells in different frames
    by_track = rows.groupby("track_id")
    summary = pd.DataFrame(
        {
            "first_frame": by_track["frame"].min(),
            "last_frame": by_track["frame"].max(),
            "frames": by_track.size(),
            "area": by_track["area"].median(),
            "mean_intensity": by_track["mean_intensity"].mean(),
            "mean_prob": by_track["mean_prob"].mean(),
            "min_prob": by_track["mean_prob"].min(),
        }
    )
    summary.index = summary.index.astype(np.int64)
    return summary.rename_axis("track_id").reset_index().assign(index=lambda t: t["track_id"])


def tracks_layer(folder: Path, stem: str) -> LayerData | None:
    """napari tracks ``(track_id, t, y, x)`` with the division graph, where the movie has tracks."""
    table, graph_file = folder / f"{stem}_napari_tracks.csv", folder / f"{stem}_napari_graph.json"
    if not table.is_file():
        return None
    data = pd.read_csv(table).sort_values(["track_id", "t"], kind="stable")
    if data.empty:
        return None
    ids = set(data["track_id"].astype(int))
    graph = json.loads(graph_file.read_text()) if graph_file.is_file() else {}
    graph = {int(k): [int(p) for p in v if int(p) in ids] for k, v in graph.items() if int(k) in ids}
    kwargs = {"name": f"{stem} tracks", "graph": {k: v for k, v in graph.items() if v}, "tail_length": 10}
    return data[["track_id", "t", "y", "x"]].to_numpy(np.float64), kwargs, "tracks"


def source_layers(folder: Path, stem: str, paths: list[Path], table: pd.DataFrame, channel: int | None):
    """The layers of one source: image, probability, labels (and tracks)."""
    labels_path = folder / f"{stem}_labels.tif"
    labels = tifffile.imread(labels_path)
    n_frames = labels.shape[0] if labels.ndim == 3 else 1
    rows = table[table["image"] == stem].reset_index(drop=True)
    layers: list[LayerData] = []
    image = read_frames(stem, paths, labels.shape, channel) if paths else None
    if image is None and not paths:
        warnings.warn(f"{stem}: no image found (no run.json, nothing named {stem}.* beside {folder})", stacklevel=3)
    if image is not None:
        layers.append((image, {"name": stem, "metadata": {"cellseg": {"paths": [str(p) for p in paths]}}}, "image"))
    prob_path = folder / f"{stem}_prob.tif"
    if prob_path.is_file():
        prob = tifffile.imread(prob_path).astype(np.float32)  # float16 textures are not drawn everywhere
        style = {"colormap": "magma", "blending": "additive", "opacity": 0.5, "visible": False}
        layers.append((prob, {"name": f"{stem} probability", "contrast_limits": (0.0, 1.0), **style}, "image"))
    meta = {
        "output": str(folder),
        "name": stem,
        "image_paths": [str(p) for p in paths] if image is not None else [],  # saving needs the image it shows
        "labels_path": str(labels_path),
        "frames": n_frames,
        "tracked": bool(n_frames > 1 and not rows.empty and rows["track_id"].notna().all()),
        "measurements": rows,
    }
    shown, meta["saved_masks"] = saved_masks(stem, paths, labels) if image is not None else (labels, {})
    if meta["saved_masks"]:
        meta["measurements"] = rows.assign(corrected=corrected_cells(rows, labels, shown))
    name = f"{stem} labels" + (" (saved corrections)" if meta["saved_masks"] else "")
    kwargs = {"name": name, "features": label_features(rows, n_frames), "metadata": {"cellseg": meta}}
    layers.append((shown, kwargs, "labels"))
    tracks = tracks_layer(folder, stem) if n_frames > 1 else None
    return [*layers, tracks] if tracks is not None else layers


def read_output_folder(path: str | list[str]) -> list[LayerData]:
    """Every source of a cellseg output folder as layer data tuples."""
    folder = output_folder(path)
    if folder is None:
        raise CellsegError(f"{path}: not a cellseg output folder (measurements.csv and *_labels.tif)")
    table = read_measurements(folder / "measurements.csv")  # stems "01", "NA" stay text
    record = run_record(folder)
    channel = (record or {}).get("settings", {}).get("channel")
    layers = []
    for stem, paths in source_list(folder, record):
        layers += source_layers(folder, stem, paths, table, channel)
    return layers
