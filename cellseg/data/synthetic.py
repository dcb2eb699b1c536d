"""The built-in data set: synthetic fluorescent nuclei in the likeness of mouse ES cells.

Frames hold nuclei of varied size and shape, some very dim, with smooth texture and
nucleoli, many in touching pairs that share a boundary, blurred by the optics and
corrupted by shot and read noise. They are written as an ``images/`` + ``masks/`` folder
(16-bit TIFF images, instance-label TIFF masks) and read back through the same reader as
real data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi


def _ellipse(shape: tuple[int, int], center, radii, angle: float) -> tuple[tuple[slice, slice], np.ndarray]:
    """Bounding box (clipped to ``shape``) and mask of an ellipse within it."""
    reach = int(np.ceil(max(radii))) + 1
    y0, x0 = max(int(center[0]) - reach, 0), max(int(center[1]) - reach, 0)
    y1, x1 = min(int(center[0]) + reach + 1, shape[0]), min(int(center[1]) + reach + 1, shape[1])
    yy, xx = np.ogrid[y0:max(y1, y0), x0:max(x1, x0)]
    dy, dx = yy - center[0], xx - center[1]
    cos, sin = np.cos(angle), np.sin(angle)
    u = (dx * cos + dy * sin) / radii[1]
    v = (-dx * sin + dy * cos) / radii[0]
    return (slice(y0, max(y1, y0)), slice(x0, max(x1, x0))), u**2 + v**2 <= 1.0


def synthetic_frame(
    rng: np.random.Generator,
    size: int | tuple[int, int] = 512,
    n_nuclei: int | None = None,
    touching: float = 0.4,
) -> tuple[np.ndarray, np.ndarray]:
    """One frame: ``(image uint16, labels int32)``; by default 30 nuclei per 512 x 512 px."""
    shape = (size, size) if isinstance(size, int) else tuple(size)
    n_nuclei = n_nuclei or max(1, round(30 * shape[0] * shape[1] / 512**2))
    labels = np.zeros(shape, np.int32)
    signal = np.zeros(shape, np.float32)
    centers: list[tuple[float, float, float]] = []
    for _ in range(n_nuclei * 20):
        if len(centers) >= n_nuclei:
            break
        radius = rng.uniform(14, 30)
        radii = (radius * rng.uniform(0.65, 1.0), radius)
        if centers and rng.random() < touching:  # place against an existing nucleus
            cy, cx, cr = centers[rng.integers(len(centers))]
            theta = rng.uniform(0, 2 * np.pi)
            dist = (cr + radius) * rng.uniform(0.8, 0.92)
            center = (cy + dist * np.sin(theta), cx + dist * np.cos(theta))
        else:
            center = (rng.uniform(0, shape[0]), rng.uniform(0, shape[1]))
        box, mask = _ellipse(shape, center, radii, rng.uniform(0, np.pi))
        region = labels[box]
        if mask.sum() < 150 or (region[mask] > 0).mean() > 0.25:
            continue
        mask &= region == 0  # the newcomer yields: the two nuclei share a boundary
        index = len(centers) + 1
        region[mask] = index
        centers.append((center[0], center[1], radius))
        brightness = rng.lognormal(0.0, 0.35) * (0.2 if rng.random() < 0.2 else 1.0)
        texture = 1.0 + ndi.gaussian_filter(rng.standard_normal(mask.shape), 3)[mask]
        signal[box][mask] = brightness * np.clip(texture, 0.3, None)
        ys, xs = np.nonzero(mask)
        for _ in range(rng.integers(1, 4)):  # nucleoli: small dim spots inside
            pick = rng.integers(len(ys))
            spot_box, spot = _ellipse(mask.shape, (ys[pick], xs[pick]), (3.0, 4.0), 0.0)
            signal[box][spot_box][spot & mask[spot_box]] *= 0.5
    signal = ndi.gaussian_filter(signal, rng.uniform(1.0, 2.0))
    photons = rng.poisson(signal * 600 + 40).astype(np.float32)
    image = photons + rng.normal(0, 8, shape) + 100
    return np.clip(image, 0, 65535).astype(np.uint16), labels


def generate(root: str | Path, n_frames: int = 8, size: int = 512, seed: int = 0) -> Path:
    """Write ``n_frames`` synthetic frames as ``root/images`` + ``root/masks``; return root."""
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(n_frames):
        image, labels = synthetic_frame(rng, size)
        tifffile.imwrite(root / "images" / f"syn_{index:03d}.tif", image, compression="zlib")
        tifffile.imwrite(
            root / "masks" / f"syn_{index:03d}.tif", labels.astype(np.uint16), compression="zlib"
        )
    return root
