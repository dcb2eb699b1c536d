"""Random training crops: a circular-shift ("roll") window, an optional zoom, albumentations'
geometry, then intensity changes (clipped to [0, 1] by default, as albumentations clips them).

A roll by (dy, dx) followed by a crop is the same as cutting the crop out of the frame
with wrap-around indexing, which is what :func:`window` does without copying the frame.
Where the window wraps, content from opposite frame borders meets along a straight
seam that no real image has; the loss mask is zeroed in a band along that seam, so the
network is taught neither a false boundary nor a false merge there.
"""

from __future__ import annotations

import math

import albumentations as A
import cv2
import numpy as np


def _indices(start: int, size: int, length: int, wrap: bool) -> np.ndarray:
    index = start + np.arange(size)
    if wrap:
        return index % length
    period = 2 * (length - 1)  # mirror at the borders (only needed when length < size)
    if period == 0:
        return np.zeros_like(index)
    return (length - 1) - np.abs(index % period - (length - 1))


def window(
    arrays: list[np.ndarray], size: int, rng: np.random.Generator, wrap: bool, seam: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """Cut one random ``size`` x ``size`` window out of each array (all the same shape).

    Returns the windows and a float32 loss mask that is 0 within ``seam`` px of a wrap seam.
    """
    height, width = arrays[0].shape
    valid = np.ones((size, size), np.float32)
    axes = []
    for axis, length in enumerate((height, width)):
        start = int(rng.integers(0, length)) if wrap else int(rng.integers(0, max(length - size, 0) + 1))
        index = _indices(start, size, length, wrap)
        if wrap and seam > 0:
            for cut in np.nonzero(np.diff(index) < 0)[0] + 1:
                band = slice(max(cut - seam, 0), cut + seam)
                if axis == 0:
                    valid[band, :] = 0
                else:
                    valid[:, band] = 0
        axes.append(index)
    rows, cols = np.ix_(axes[0], axes[1])
    return [a[rows, cols] for a in arrays], valid


def window_size(crop_size: int, rotate: bool, min_scale: float = 1.0) -> int:
    """Side of the window to cut so that an arbitrary rotation, and a zoom by ``min_scale``
    (< 1 shrinks the content), still fill the crop."""
    if not rotate and min_scale >= 1:
        return crop_size
    side = crop_size * math.sqrt(2) if rotate else crop_size
    return math.ceil(side / min(min_scale, 1.0)) + 2


def zoom(
    image: np.ndarray,
    maps: list[np.ndarray],
    crop_size: int,
    rng: np.random.Generator,
    scale: tuple[float, float],
    rotate: bool,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The central ``crop_size`` square of a window zoomed by a factor drawn log-uniformly from
    ``scale`` (and turned by a random angle when ``rotate``), so that cells are seen smaller and
    larger than annotated. One warp straight to the crop: the image is interpolated linearly,
    the target ``maps`` nearest. The window must be :func:`window_size` with ``min_scale``."""
    factor = float(np.exp(rng.uniform(math.log(scale[0]), math.log(scale[1]))))
    angle = float(rng.uniform(-180.0, 180.0)) if rotate else 0.0
    centre = ((image.shape[1] - 1) / 2, (image.shape[0] - 1) / 2)
    matrix = cv2.getRotationMatrix2D(centre, angle, factor)
    matrix[:, 2] += (crop_size - 1) / 2 - np.array(centre)
    size = (crop_size, crop_size)

    def warp(array: np.ndarray, flags: int) -> np.ndarray:
        return cv2.warpAffine(array, matrix, size, flags=flags, borderMode=cv2.BORDER_REFLECT_101)

    return warp(image, cv2.INTER_LINEAR), [warp(m, cv2.INTER_NEAREST) for m in maps]


def build_augment(
    crop_size: int,
    flip: bool = True,
    rotate90: bool = True,
    rotate: bool = True,
    seed: int | None = None,
) -> A.Compose:
    """Geometric augmentation for an image and its target maps (as masks); ``seed`` seeds it
    with :func:`seed_augment`. Intensity changes are :func:`jitter_intensity`."""
    steps: list[A.BasicTransform] = []
    if rotate:
        steps += [
            A.Rotate(limit=180, border_mode=cv2.BORDER_REFLECT_101, p=1.0),
            A.CenterCrop(crop_size, crop_size),
        ]
    if flip:
        steps += [A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5)]
    if rotate90:
        steps.append(A.RandomRotate90(p=0.5))
    augment = A.Compose(steps, strict=True)
    if seed is not None:
        seed_augment(augment, np.random.default_rng(seed))
    return augment


def jitter_intensity(
    image: np.ndarray,
    rng: np.random.Generator,
    gain: float = 0.2,
    offset: float = 0.1,
    max_noise: float = 0.04,
    max_blur: float = 1.0,
    clip: bool = True,
) -> np.ndarray:
    """A normalized crop under another exposure and camera: with probability 0.8 a gain of
    1 +- ``gain`` and an offset of +- ``offset``, with 0.5 Gaussian noise of a random standard
    deviation up to ``max_noise``, with 0.2 a Gaussian blur of sigma 0.1 to ``max_blur`` px.

    ``clip``: each change that fires clips the crop to [0, 1], as albumentations' brightness,
    noise and blur do with float images (92 % of crops then end in [0, 1]), although
    percentile normalization leaves bright nuclei above 1 and background noise below 0 at
    prediction. On GOWT1 02 (README, "Clipped or unclipped intensity augmentation"), networks
    trained on clipped crops missed fewer small and dim nuclei (20 against 26 markers a run,
    three seeds each) and scored the same SEG.
    """
    def bounded(changed: np.ndarray) -> np.ndarray:  # each step's result is a new array
        return np.clip(changed, 0.0, 1.0, out=changed) if clip else changed

    image = np.asarray(image, np.float32)
    if rng.random() < 0.8:
        image = bounded(image * np.float32(1 + rng.uniform(-gain, gain)) + np.float32(rng.uniform(-offset, offset)))
    if rng.random() < 0.5:
        image = bounded(image + rng.normal(0.0, rng.uniform(0.0, max_noise), size=image.shape).astype(np.float32))
    if rng.random() < 0.2:
        sigma = float(rng.uniform(0.1, max_blur))
        image = bounded(cv2.GaussianBlur(image, (0, 0), sigma, borderType=cv2.BORDER_REFLECT_101))
    return image


def dim_like_bleaching(
    image: np.ndarray, rng: np.random.Generator, min_gain: float = 0.3, max_noise: float = 0.1
) -> np.ndarray:
    """A normalized crop as a later, bleached frame of the movie would show it: every
    part of it dimmed by a smooth random gain (down to ``min_gain``, so neighbouring nuclei
    dim unequally, with the background level kept), plus camera noise of a random standard
    deviation up to ``max_noise`` (in units of the normalized range)."""
    coarse = rng.uniform(min_gain, 1.0, size=(4, 4)).astype(np.float32)
    gain = cv2.resize(coarse, image.shape[::-1], interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0.0, rng.uniform(0.0, max_noise), size=image.shape).astype(np.float32)
    return image * np.clip(gain, min_gain, 1.0) + noise


def seed_augment(augment: A.Compose, rng: np.random.Generator) -> None:
    """Give every transform of ``augment`` its own random stream, drawn from ``rng``.

    albumentations' ``Compose(seed=...)``/``set_random_seed`` hands the *same* seed to every
    transform, so their coin flips coincide: horizontal and vertical flips always fire
    together (a 180 degree turn, never a mirror image) and the intensity changes come in lockstep.
    """
    for transform, seed in zip(augment.transforms, rng.integers(2**32, size=len(augment.transforms))):
        transform.set_random_seed(int(seed))
