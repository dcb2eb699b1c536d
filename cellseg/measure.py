"""Per-cell measurements on the raw (un-normalized) intensities."""

from __future__ import annotations

import numpy as np
import pandas as pd
from skimage.measure import regionprops_table

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
]


def measure(labels: np.ndarray, raw: np.ndarray, image: str, frame: int) -> pd.DataFrame:
    """One row per cell of ``labels``: geometry and intensity of ``raw`` inside it."""
    table = regionprops_table(
        labels,
        intensity_image=raw.astype(np.float64),
        properties=("label", "area", "centroid", "bbox", "eccentricity", "intensity_mean"),
    )
    frame_table = pd.DataFrame(
        {
            "image": image,
            "frame": frame,
            "label": table["label"],
            "area": table["area"].astype(np.int64),
            "centroid_y": table["centroid-0"],
            "centroid_x": table["centroid-1"],
            "bbox_y0": table["bbox-0"],
            "bbox_x0": table["bbox-1"],
            "bbox_y1": table["bbox-2"],
            "bbox_x1": table["bbox-3"],
            "eccentricity": table["eccentricity"],
            "mean_intensity": table["intensity_mean"],
            "total_intensity": table["intensity_mean"] * table["area"],
        },
        columns=COLUMNS,
    )
    return frame_table
