"""The test tensors: the sample frame, its centre crop and bioimage.io's ``scale_range`` of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellseg.errors import CellsegError
from cellseg.export.network import MULTIPLE

EPS = 1e-6  # scale_range's epsilon (the default, which bioimageio.core applies)


def read_frame(path: Path) -> np.ndarray:
    """The sample: one 2-D frame at least 32 px on each side."""
    from cellseg.data.io import as_2d, read_image

    image = as_2d(read_image(path), path)
    with np.errstate(over="ignore", invalid="ignore"):  # float64 past float32's range becomes inf: refused
        bad = int(np.count_nonzero(~np.isfinite(image.astype(np.float32))))
    if bad:
        raise CellsegError(
            f"sample={path}: {bad} NaN or infinite pixels (as float32); replace them or use another frame"
        )
    if min(image.shape) < MULTIPLE:
        raise CellsegError(
            f"sample={path}: frame of shape {image.shape} is smaller than {MULTIPLE}x{MULTIPLE}; use a larger one"
        )
    return image


def center_crop(image: np.ndarray, crop: int) -> np.ndarray:
    """The square centre crop of side ``min(crop, the largest multiple of 32 that fits)``."""
    side = min(crop, min(image.shape) // MULTIPLE * MULTIPLE)
    y0, x0 = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    return image[y0 : y0 + side, x0 : x0 + side]


def crop_input(image: np.ndarray, crop: int, norm: dict, path: Path) -> np.ndarray:
    """The centre crop as float32 raw intensities, refused where its percentiles do not differ."""
    raw = center_crop(image, crop).astype(np.float32)
    low, high = np.percentile(raw, (norm["low"], norm["high"]))
    if not high > low:
        raise CellsegError(
            f"sample={path}: the centre crop's percentiles {norm['low']:g} and {norm['high']:g} are equal "
            f"({low:g}); pick a frame with more contrast or a larger crop="
        )
    return raw


def scale_range(raw: np.ndarray, low: float, high: float) -> np.ndarray:
    """bioimage.io's ``scale_range`` over (y, x): ``(x - p_low) / (p_high - p_low + eps)``, not clipped,
    with linearly interpolated percentiles (as bioimageio.core and cellseg compute them)."""
    p_low, p_high = np.percentile(raw, (low, high))
    return ((raw - p_low) / (p_high - p_low + EPS)).astype(np.float32)
