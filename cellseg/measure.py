"""Per-cell measurements on the raw (un-normalized) intensities.

The columns are those of ``skimage.measure.regionprops_table`` (``area``, ``centroid``,
``bbox``, ``eccentricity``, ``intensity_mean``) and the network's mean probability inside
each cell (``mean_prob``: its confidence, for choosing cells to review), computed for all cells at once from
bincounts over the labelled pixels instead of one Python object per cell: the same
numbers in a fraction of the time on frames with hundreds of cells.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

COLUMNS = [
    "image",
    "frame",
    "label",
    "area",
    "centroid_y",
    "centroid_x",
    "bbox_y0",
    "bbox_x0",
    "bbox_y1",
    "bbox_x1",
    "eccentricity",
    "mean_intensity",
    "total_intensity",
    "mean_prob",
]


def measure(
    labels: np.ndarray, raw: np.ndarray, image: str, frame: int, prob: np.ndarray | None = None
) -> pd.DataFrame:
    """One row per cell of ``labels``: geometry and intensity of ``raw`` inside it, and the mean
    of ``prob`` (the cell probability map, NaN without one)."""
    flat = labels.ravel()
    pixels = np.flatnonzero(flat != 0)  # a boolean mask scans ~10x faster than np.nonzero(labels)
    ys, xs = np.divmod(pixels, labels.shape[1])
    cell = flat[pixels].astype(np.intp)
    count = int(labels.max()) + 1

    def per_cell(weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(cell, weights=weights, minlength=count)

    def extreme(reduce: np.ufunc, coordinate: np.ndarray) -> np.ndarray:
        """Each cell's smallest or largest ``coordinate`` (its bounding box: ``find_objects``'s
        slices, in a quarter of its time on a GOWT1 frame)."""
        out = np.full(count, labels.size if reduce is np.minimum else -1, np.int64)
        reduce.at(out, cell, coordinate)
        return out

    area = per_cell()
    present = np.flatnonzero(area)
    present = present[present > 0]
    safe_area = np.maximum(area, 1)
    cy, cx = per_cell(ys) / safe_area, per_cell(xs) / safe_area
    dy, dx = ys - cy[cell], xs - cx[cell]
    syy, sxx, sxy = (per_cell(w) / safe_area for w in (dy * dy, dx * dx, dy * dx))
    # eigenvalues of the covariance (= inertia tensor) of each cell's pixel coordinates
    half_trace, root = (syy + sxx) / 2, np.sqrt(((syy - sxx) / 2) ** 2 + sxy**2)
    major, minor = half_trace + root, np.maximum(half_trace - root, 0)
    eccentricity = np.sqrt(1 - np.divide(minor, major, out=np.ones_like(major), where=major > 0))
    total = per_cell(raw.ravel()[pixels].astype(np.float64))
    mean_prob = (
        per_cell(prob.ravel()[pixels].astype(np.float64)) / safe_area if prob is not None else np.full(count, np.nan)
    )
    bbox = np.stack([extreme(np.minimum, ys), extreme(np.minimum, xs), extreme(np.maximum, ys) + 1,
                     extreme(np.maximum, xs) + 1], axis=1)[present]  # fmt: skip
    return pd.DataFrame(
        {
            "image": image,
            "frame": frame,
            "label": present,
            "area": area[present].astype(np.int64),
            "centroid_y": cy[present],
            "centroid_x": cx[present],
            "bbox_y0": bbox[:, 0],
            "bbox_x0": bbox[:, 1],
            "bbox_y1": bbox[:, 2],
            "bbox_x1": bbox[:, 3],
            "eccentricity": eccentricity[present],
            "mean_intensity": total[present] / area[present],
            "total_intensity": total[present],
            "mean_prob": mean_prob[present],
        },
        columns=COLUMNS,
    )
