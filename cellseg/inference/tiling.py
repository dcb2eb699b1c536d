"""Tiled inference with overlap and blending, so any image size runs in bounded memory.

Tiles overlap by ``overlap`` px; each tile's output is weighted by a window that ramps
linearly from the tile border over the overlap (and stays 1 where a tile touches the
image border), so seams are blended away and no cell is cut at a tile border.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``length`` with at least ``overlap``."""
    if length <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, length - tile, step))
    return [*starts, length - tile]


def _ramp(size: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    ramp = np.ones(size, np.float32)
    if overlap > 0:
        edge = (np.arange(overlap, dtype=np.float32) + 0.5) / overlap
        if not at_start:
            ramp[:overlap] = np.minimum(ramp[:overlap], edge)
        if not at_end:
            ramp[-overlap:] = np.minimum(ramp[-overlap:], edge[::-1])
    return ramp


def tiles(shape: tuple[int, int], tile: int, overlap: int) -> Iterator[tuple[slice, slice, np.ndarray]]:
    """Yield ``(rows, cols, weight)`` for every tile of an image of ``shape``."""
    height, width = shape
    for y in (ys := tile_starts(height, tile, overlap)):
        for x in (xs := tile_starts(width, tile, overlap)):
            rows, cols = slice(y, min(y + tile, height)), slice(x, min(x + tile, width))
            wy = _ramp(rows.stop - y, overlap, y == ys[0], y == ys[-1])
            wx = _ramp(cols.stop - x, overlap, x == xs[0], x == xs[-1])
            yield rows, cols, np.outer(wy, wx)


def predict_tiled(
    predict: Callable[[torch.Tensor], np.ndarray],
    image: np.ndarray,
    tile: int = 1024,
    overlap: int = 128,
    batch_size: int = 1,
    channels: int = 2,
) -> np.ndarray:
    """Blend ``predict`` (N,1,h,w -> N,C,h,w probabilities) over the tiles of a 2-D image."""
    if image.shape[0] <= tile and image.shape[1] <= tile:  # one tile: nothing to blend
        return predict(torch.from_numpy(image)[None, None])[0]
    out = np.zeros((channels, *image.shape), np.float32)
    norm = np.zeros(image.shape, np.float32)
    pending: list[tuple[slice, slice, np.ndarray]] = []

    def flush() -> None:
        shapes = {(r.stop - r.start, c.stop - c.start) for r, c, _ in pending}
        groups = [[p for p in pending if (p[0].stop - p[0].start, p[1].stop - p[1].start) == s] for s in shapes]
        for group in groups:
            batch = torch.from_numpy(np.stack([image[r, c] for r, c, _ in group]))[:, None]
            probs = predict(batch)
            for (rows, cols, weight), prob in zip(group, probs):
                out[:, rows, cols] += prob * weight
                norm[rows, cols] += weight
        pending.clear()

    for item in tiles(image.shape, tile, overlap):
        pending.append(item)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    return out / norm
