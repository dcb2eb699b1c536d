"""From interior/edge probabilities to instance labels.

``threshold`` (the seed's method): threshold the interior probability, take connected
components, fill holes, grow each component back over its edge band within the
foreground, drop objects under ``min_size``. The network separates touching cells by
predicting their shared edge, so components are cell interiors and the growth restores
their area.

``watershed`` (the fix for the seed's two failure modes): the interior mask is first
bridged across gaps of a few px where the network saw no edge (a dim band through a
large cell is not a boundary, so the cell is not split); then one marker per h-maximum of
its smoothed distance transform, so two neighbours whose shared edge was missed still get
a marker each, and a watershed on the distance transform splits them at the neck. The
result grows over the edge band like the threshold method.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import gaussian
from skimage.morphology import disk, h_maxima
from skimage.segmentation import expand_labels, relabel_sequential, watershed

METHODS = ("threshold", "watershed")


def foreground(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Pixels that belong to some cell: interior plus edge probability above threshold."""
    return (prob[0] + prob[1]) > threshold


def threshold_components(prob: np.ndarray, threshold: float) -> np.ndarray:
    """Connected components of the hole-filled interior mask."""
    interior = ndi.binary_fill_holes(prob[0] > threshold)
    labels, _ = ndi.label(interior)
    return labels


def watershed_split(prob: np.ndarray, threshold: float, h: float, bridge: int = 2) -> np.ndarray:
    """Marker-controlled watershed on the distance transform of the bridged interior."""
    interior = ndi.binary_fill_holes(prob[0] > threshold)
    closed = ndi.binary_closing(interior, structure=disk(bridge), border_value=0)
    bridged = interior | (closed & (prob[1] < 0.5))
    distance = gaussian(ndi.distance_transform_edt(bridged), sigma=1.0)
    markers, _ = ndi.label(h_maxima(distance, h) & bridged)
    return watershed(-distance, markers, mask=bridged)


def grow_and_clean(seeds: np.ndarray, fg: np.ndarray, expand: int, min_size: int) -> np.ndarray:
    """Grow seeds by ``expand`` px inside ``fg``, drop objects under ``min_size``, relabel 1..N."""
    labels = expand_labels(seeds, distance=expand) if expand > 0 else seeds
    labels = np.where(fg | (seeds > 0), labels, 0)
    if min_size > 0:
        small = np.bincount(labels.ravel()) < min_size
        small[0] = False
        labels = np.where(small[labels], 0, labels)
    labels, _, _ = relabel_sequential(labels)
    dtype = np.uint16 if labels.max() < 2**16 else np.uint32
    return labels.astype(dtype)


def probabilities_to_labels(
    prob: np.ndarray,
    threshold: float = 0.5,
    method: str = "threshold",
    min_size: int = 15,
    expand: int = 2,
    h: float = 2.0,
) -> np.ndarray:
    """Instance labels (uint16, uint32 beyond 65535 cells) from (2, H, W) probabilities."""
    if method not in METHODS:
        raise ValueError(f"unknown postprocess method {method!r}; use one of {', '.join(METHODS)}")
    fg = foreground(prob, threshold)
    seeds = watershed_split(prob, threshold, h) if method == "watershed" else threshold_components(prob, threshold)
    return grow_and_clean(seeds, fg, expand, min_size)
