"""Save labels: napari's writer for any labels layer, and :func:`save_corrections`, which puts
corrected labels beside the image they belong to as training masks.

``<image stem>_masks.tif`` (Cellpose's name) next to the image: a single image gets one
2-D mask; a stack file one mask stack (one page per frame, the frames that differ from the
prediction named in its description, so that training takes only those); a movie folder of frames
(``t000.tif`` ...) one mask per frame beside that frame, by default only for the frames
that differ from the prediction. Labels are uint16, or uint32 where a label needs it.
Every file is written under a temporary name and moved into place; an existing mask is
never replaced unless ``overwrite=True``, or the layer showed it (the reader loads saved
corrections) or wrote it itself, and the file has not changed since.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from cellseg.data.io import annotated_pages
from cellseg.errors import CellsegError
from cellseg.outputs.atomic import temp_name


class MasksExist(CellsegError, FileExistsError):
    """A mask file is already there and ``overwrite`` was not given."""


def mask_dtype(labels: np.ndarray) -> np.dtype:
    """uint16 when every label fits, else uint32; negative or larger labels are refused."""
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= 2**32):
        raise CellsegError(f"labels range {int(labels.min())}..{int(labels.max())} does not fit uint32 masks")
    return np.dtype(np.uint32 if labels.size and int(labels.max()) >= 2**16 else np.uint16)


def write_mask(path: Path, labels: np.ndarray, overwrite: bool = False, corrected: list[int] | None = None) -> Path:
    """Write ``labels`` to ``path`` through a temporary name; refuse to replace a file unless
    ``overwrite``. ``corrected``: for a mask stack, the frames that were corrected (recorded in
    the TIFF's description; training reads only those)."""
    labels = np.asarray(labels)
    tmp = temp_name(path)
    described = {"corrected_frames": corrected} if corrected is not None else {}
    try:
        tifffile.imwrite(
            tmp, labels.astype(mask_dtype(labels)), photometric="minisblack", compression="zlib", metadata=described
        )
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if overwrite:
        os.replace(tmp, path)
        return path
    try:
        os.link(tmp, path)  # fails if path exists, atomically
    except FileExistsError:
        tmp.unlink()
        raise MasksExist(f"{path}: exists already; pass overwrite=True to replace it") from None
    except OSError:  # a file system without hard links: check, then rename
        if path.exists():
            tmp.unlink()
            raise MasksExist(f"{path}: exists already; pass overwrite=True to replace it") from None
        os.replace(tmp, path)
        return path
    tmp.unlink()
    return path


def write_labels(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 writer hook for one labels layer: a uint16/uint32 TIFF at ``path`` (napari asks before replacing)."""
    write_mask(Path(path), np.asarray(data), overwrite=True)
    return [path]


def mask_path(image: Path) -> Path:
    """Where the training mask of ``image`` goes: ``<stem>_masks.tif`` beside it."""
    return image.with_name(f"{image.stem}_masks.tif")


def changed_frames(labels: np.ndarray, predicted: Path) -> list[int]:
    """Frames of a (T, Y, X) ``labels`` that differ from the predicted labels file."""
    with tifffile.TiffFile(predicted) as tif:
        pages = tif.series[0].pages
        return [t for t in range(len(labels)) if not np.array_equal(np.squeeze(pages[t].asarray()), labels[t])]


def planned_masks(meta: dict, labels: np.ndarray, frames: Sequence[int] | None) -> dict[Path, tuple]:
    """The mask files a layer's corrections go to, with their contents and, for a stack file's
    mask stack, its corrected frames."""
    images = [Path(p) for p in meta.get("image_paths", [])]
    if not images:
        raise CellsegError(
            f"{meta.get('name')}: the image behind these labels was not found (or did not fit them) when the "
            "folder was opened, "
            "so there is nowhere to put its masks; save the layer with File > Save Selected Layers"
        )
    if len(images) == 1 and labels.ndim == 2:
        return {mask_path(images[0]): (labels, None)}
    if labels.ndim != 3 or (len(images) > 1 and len(labels) != len(images)):
        raise CellsegError(f"{meta.get('name')}: labels of shape {labels.shape} for a movie of {len(images)} frames")
    chosen = list(frames) if frames is not None else changed_frames(labels, Path(meta["labels_path"]))
    if not chosen:
        raise CellsegError(f"{meta.get('name')}: no frame differs from the prediction; pass frames=[...] to save some")
    if not all(0 <= int(t) < len(labels) for t in chosen):
        raise CellsegError(f"{meta.get('name')}: frames={list(chosen)} are not all among 0..{len(labels) - 1}")
    if len(images) == 1:  # a stack file: one mask stack, the corrected frames named in it
        return {mask_path(images[0]): (labels, sorted(int(t) for t in chosen))}
    return {mask_path(images[t]): (labels[t], None) for t in chosen}


def save_corrections(layer: Any, overwrite: bool = False, frames: Sequence[int] | None = None) -> list[Path]:
    """Save a labels layer opened by the cellseg reader as ``<stem>_masks.tif`` beside its image(s).

    ``frames``: for a movie folder or stack file, the frames to save (default: those changed
    from the prediction). Nothing is written when one of the files exists and ``overwrite`` is False,
    unless the layer showed or wrote that file and it has not changed since: saving again
    goes on from the layer's own corrections.
    """
    meta = getattr(layer, "metadata", {}).get("cellseg")
    if meta is None:
        raise CellsegError(f"{getattr(layer, 'name', layer)}: not a labels layer opened from a cellseg output folder")
    planned = planned_masks(meta, np.asarray(layer.data), frames)
    opened = meta.setdefault("saved_masks", {})
    own = {p for p in planned if p.exists() and unchanged_since_opened(p, opened)}
    existing = [p for p in planned if p.exists() and p not in own]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise MasksExist(f"{existing[0]}{more}: exists already; pass overwrite=True to replace it")
    for path, (labels, corrected) in planned.items():
        if corrected is not None and path in own:  # frames saved before stay corrected
            planned[path] = (labels, sorted(set(corrected) | set(annotated_pages(path)[1])))
    written = [
        write_mask(path, labels, overwrite or path in own, corrected) for path, (labels, corrected) in planned.items()
    ]
    for path in written:  # this layer holds them now: the next save may replace them again
        stat = path.stat()
        opened[str(path)] = [stat.st_mtime_ns, stat.st_size]
    return written


def unchanged_since_opened(path: Path, opened: dict[str, list[int]]) -> bool:
    """Whether ``path`` is a mask the layer showed (or last saved) and nobody changed since."""
    stat = path.stat()
    return opened.get(str(path)) == [stat.st_mtime_ns, stat.st_size]
