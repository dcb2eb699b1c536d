"""The fast morphology of post-processing against the scipy/skimage calls it replaces."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import disk, h_maxima

import cellseg.morphology as morphology
from cellseg.morphology import close_disk, disk_offsets, object_h_maxima


@pytest.mark.parametrize("radius", [1, 2, 3, 4])
def test_close_disk_equals_scipy_closing(radius):
    rng = np.random.default_rng(radius)
    mask = ndi.binary_opening(rng.random((97, 130)) > 0.55)  # blobs with gaps, some at the border
    mask[:, 0] = True  # a full border column: border_value=0 erodes next to it
    expected = ndi.binary_closing(mask, structure=disk(radius), border_value=0)
    got = close_disk(mask, radius)
    assert len(disk_offsets(radius)) == disk(radius).sum()
    assert (got != mask).any()  # the closing did bridge something
    assert np.array_equal(got, expected)


def bumps(centres: list[tuple[int, int, float]], shape=(40, 60)) -> tuple[np.ndarray, np.ndarray]:
    """An object (the pixels above 0.5) whose values are Gaussian bumps (y, x, height), and the
    object mask; 0 outside it, as the watershed hands an object's box to h-maxima."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = sum(top * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / 60.0) for y, x, top in centres)
    own = image > 0.5
    return np.where(own, image, 0.0), own


CASES = {
    "one peak": [(20, 30, 6.0)],
    "two deep peaks": [(20, 16, 6.0), (20, 44, 6.0)],
    "a shallow second peak": [(20, 20, 6.0), (20, 32, 5.5)],
    "a peak lower than h": [(20, 30, 1.5)],
    "a plateau": [],
}


@pytest.mark.parametrize("case", CASES)
def test_object_h_maxima_equals_skimage(case):
    if case == "a plateau":
        local, own = np.zeros((30, 30)), np.zeros((30, 30), bool)
        own[5:25, 8:20] = True
        local[own] = 3.0
    else:
        local, own = bumps(CASES[case])
    expected = h_maxima(local, 2.0).astype(bool)
    got = object_h_maxima(local, own, 2.0)
    assert np.array_equal(got, expected)
    count = ndi.label(expected, structure=np.ones((3, 3)))[1]
    assert count == {"two deep peaks": 2, "a peak lower than h": 0}.get(case, 1)


def test_one_peak_skips_the_grey_reconstruction(monkeypatch):
    local, own = bumps(CASES["one peak"])
    expected = h_maxima(local, 2.0).astype(bool)

    def refuse(*args):
        raise AssertionError("h_maxima called for an object with one peak")

    monkeypatch.setattr(morphology, "h_maxima", refuse)
    assert np.array_equal(object_h_maxima(local, own, 2.0), expected)
    with pytest.raises(AssertionError, match="one peak"):  # two peaks still take skimage's way
        object_h_maxima(*bumps(CASES["two deep peaks"]), 2.0)
