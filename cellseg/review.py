"""Which cells a person should check first: the least confident and the oddly sized.

Works on the rows of ``measurements.csv`` (``mean_prob``, ``area``), so the prediction
report and the napari widget list the same cells in the same order.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# a cell is odd-sized when its log-area lies this many robust sd (1.4826 MAD) from its image's median
ODD_SIZE = 3.0
# below this mean cell probability a cell is unsure
UNSURE = 0.75
REVIEW_COLUMNS = ["image", "frame", "label", "area", "mean_prob", "size_score", "reason"]


def size_scores(table: pd.DataFrame) -> pd.Series:
    """Robust z-score of each cell's log-area within its image (0 where the spread is 0)."""
    log_area = np.log(table["area"].astype(float).clip(lower=1))
    by_image = log_area.groupby(table["image"])
    median = by_image.transform("median")
    spread = 1.4826 * (log_area - median).abs().groupby(table["image"]).transform("median")
    return ((log_area - median) / spread.where(spread > 0)).fillna(0.0)


def cells_to_review(table: pd.DataFrame, n: int = 20) -> pd.DataFrame:
    """Up to ``n`` cells worth checking first, most doubtful first: unsure cells (``mean_prob``
    below ``UNSURE``) by confidence, then odd sizes (``|size_score| >= ODD_SIZE``) by how odd.
    Rows marked ``corrected`` (cells a person's saved corrections changed) count for the sizes
    but are not listed."""
    if table.empty:
        return pd.DataFrame(columns=REVIEW_COLUMNS)
    rows = table.reset_index(drop=True)
    rows = rows.assign(size_score=size_scores(rows))
    unchecked = ~rows["corrected"].astype(bool) if "corrected" in rows else True
    unsure = (rows["mean_prob"] < UNSURE) & unchecked
    odd = (rows["size_score"].abs() >= ODD_SIZE) & unchecked
    large = rows["size_score"] > 0
    reason = np.select(
        [unsure & odd, unsure, odd & large, odd],
        ["unsure, odd size", "unsure", "large: merged neighbours?", "small: a fragment?"],
        default="",
    )
    rows = rows.assign(reason=reason)[unsure | odd]
    # one doubt scale: how far below UNSURE (in units of UNSURE) plus how far beyond ODD_SIZE
    below = (UNSURE - rows["mean_prob"].fillna(UNSURE)).clip(lower=0) / UNSURE
    beyond = (rows["size_score"].abs() - ODD_SIZE).clip(lower=0) / ODD_SIZE
    doubt = below + beyond
    order = doubt.sort_values(ascending=False, kind="stable").index
    return rows.loc[order, REVIEW_COLUMNS].head(n).reset_index(drop=True)
