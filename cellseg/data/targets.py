"""Training targets derived from instance labels: interior, edge band and border term.

Edges are never annotated by hand: they are computed here from the instance labels of the
whole frame, before any crop or augmentation, so a crop border or a rotation can neither
invent a boundary nor erase one (geometric transforms move the target maps with the image,
with nearest-neighbour interpolation).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from cellseg.morphology import inner_boundaries


def edge_band(labels: np.ndarray, width: int) -> np.ndarray:
    """Pixels of each cell within ``width`` px of where it meets background or another cell."""
    boundary = inner_boundaries(labels)
    if width > 1:
        boundary = ndi.binary_dilation(boundary, iterations=width - 1)
    return boundary & (labels > 0)


def border_term(labels: np.ndarray, sigma: float) -> np.ndarray:
    """U-Net border term ``exp(-(d1 + d2)^2 / (2 sigma^2))`` on background pixels.

    ``d1`` and ``d2`` are the distances to the nearest and second-nearest cell. The term
    is only non-negligible within ``3 sigma`` of two cells, so each cell's distance map is
    computed in its bounding box grown by that margin.
    """
    height, width = labels.shape
    d1 = np.full(labels.shape, np.inf, np.float32)
    d2 = np.full(labels.shape, np.inf, np.float32)
    margin = int(np.ceil(3 * sigma))
    for index, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        ys = slice(max(box[0].start - margin, 0), min(box[0].stop + margin, height))
        xs = slice(max(box[1].start - margin, 0), min(box[1].stop + margin, width))
        dist = ndi.distance_transform_edt(labels[ys, xs] != index).astype(np.float32)
        near1, near2 = d1[ys, xs], d2[ys, xs]
        d2[ys, xs] = np.minimum(near2, np.maximum(near1, dist))
        d1[ys, xs] = np.minimum(near1, dist)
    term = np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    term[labels > 0] = 0
    return np.nan_to_num(term, nan=0.0).astype(np.float32)


def make_targets(labels: np.ndarray, edge_width: int, border_sigma: float) -> dict[str, np.ndarray]:
    """Interior (cell minus edge band), edge band and U-Net border term of one frame."""
    edge = edge_band(labels, edge_width)
    return {
        "interior": ((labels > 0) & ~edge).astype(np.float32),
        "edge": edge.astype(np.float32),
        "border": border_term(labels, border_sigma),
    }
