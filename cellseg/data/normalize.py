"""Percentile normalization, the same at training and prediction time."""

from __future__ import annotations

import numpy as np

from cellseg.errors import CellsegError


def percentile_normalize(
    image: np.ndarray, low: float = 1.0, high: float = 99.8, name: str = "image"
) -> np.ndarray:
    """Map the ``low`` and ``high`` intensity percentiles of ``image`` to 0 and 1 (float32).

    Values outside the percentiles keep going linearly, as in Cellpose and CSBDeep. A
    constant image has no contrast to normalize and is refused.
    """
    image = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(image, (low, high))
    if hi <= lo:  # dim frames: fall back to the full range before giving up
        lo, hi = float(image.min()), float(image.max())
    if hi <= lo:
        raise CellsegError(f"{name}: image is constant (all pixels {lo:g}); nothing to segment")
    return (image - np.float32(lo)) / np.float32(hi - lo)
