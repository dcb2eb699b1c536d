"""The fast morphology of post-processing against the scipy/skimage calls it replaces."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import disk, h_maxima
from skimage.segmentation import expand_labels, find_boundaries

import cellseg.morphology as morphology
from cellseg.data.synthetic import synthetic_frame
from cellseg.morphology import (
    EIGHT,
    close_disk,
    disk_offsets,
    distance_transform,
    fill_holes,
    inner_boundaries,
    label,
    object_h_maxima,
)


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
    shallow, shallow_own = bumps(CASES["a shallow second peak"])  # a side peak under h deep: one maximum
    assert np.array_equal(object_h_maxima(shallow, shallow_own, 2.0), h_maxima(shallow, 2.0).astype(bool))
    with pytest.raises(AssertionError, match="one peak"):  # two peaks still take skimage's way
        object_h_maxima(*bumps(CASES["two deep peaks"]), 2.0)


@pytest.mark.parametrize("h", [0.5, 1.0, 2.0])
def test_object_h_maxima_equals_skimage_on_random_objects(h, monkeypatch):
    # 1-4 bumps of random heights, values on a 0.1 grid (plateaus, ties with top - h and with
    # side peak - h) or smooth; counted: how many skipped the grey reconstruction
    rng = np.random.default_rng(int(10 * h))
    calls = []

    def counted(image, height):
        calls.append(1)
        return h_maxima(image, height)

    monkeypatch.setattr(morphology, "h_maxima", counted)
    for trial in range(80):
        centres = [(rng.uniform(8, 32), rng.uniform(8, 52), rng.uniform(1.0, 6.0)) for _ in range(rng.integers(1, 5))]
        local, own = bumps(centres)
        if trial % 2:
            local = np.round(local, 1)
            own = local > 0
        expected = h_maxima(local, h).astype(bool)
        assert np.array_equal(object_h_maxima(local, own, h), expected), f"trial {trial}"
    assert 10 < 80 - len(calls) < 80  # many skip it, not all


def blobs(shape: tuple[int, int], seed: int, sigma: float, level: float) -> np.ndarray:
    """Smoothed noise above ``level``: blobs of every shape, many touching the border."""
    return ndi.gaussian_filter(np.random.default_rng(seed).random(shape), sigma) > level


@pytest.mark.parametrize("eight", [False, True])
@pytest.mark.parametrize(
    "shape, sigma, level",
    [((1, 1), 1, 0.5), ((1, 37), 0.5, 0.5), ((97, 130), 1, 0.5), ((1024, 1024), 2, 0.51), ((2100, 700), 0.7, 0.5)],
)
def test_label_equals_scipy_numbering_included(shape, sigma, level, eight):
    # frames large enough for OpenCV to split them between threads must keep scipy's numbering
    mask = blobs(shape, sum(shape), sigma, level)
    expected, count = ndi.label(mask, structure=EIGHT if eight else None)
    got, got_count = label(mask, eight=eight)
    assert got_count == count and got.dtype == np.int32
    assert np.array_equal(got, expected)
    if shape[0] > 100:
        assert count > 50


def test_label_of_views_empty_and_full_frames():
    mask = blobs((300, 200), 3, 1, 0.5)
    view = mask[::2, 1::3]  # not contiguous
    assert np.array_equal(label(view)[0], ndi.label(view)[0])
    assert label(np.zeros((0, 5), bool))[1] == 0
    assert label(np.zeros((4, 5), bool))[1] == 0 and not label(np.zeros((4, 5), bool))[0].any()
    assert label(np.ones((4, 5), bool))[1] == 1


def test_fill_holes_equals_scipy_on_large_frames_and_corners():
    mask = blobs((1024, 1024), 7, 2, 0.49)
    assert np.array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))
    assert fill_holes(mask).sum() > mask.sum()
    ring = np.zeros((7, 7), bool)
    ring[0, 1:] = ring[1:, 0] = ring[6, 1:] = ring[1:, 6] = True  # background (0, 0) reaches (1, 1) only diagonally
    assert np.array_equal(fill_holes(ring), ndi.binary_fill_holes(ring))
    assert fill_holes(ring)[1:6, 1:6].all() and not fill_holes(ring)[0, 0]
    assert fill_holes(np.zeros((0, 3), bool)).shape == (0, 3)


@pytest.mark.parametrize("seed", range(6))
def test_distance_transform_equals_scipy_to_the_last_bit(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(20, 400, 2))
    mask = blobs(shape, seed, rng.uniform(0.7, 8), 0.45)  # blobs cut by the border, a few px to the whole box
    got = distance_transform(mask)
    assert got.dtype == np.float64 and got.max() > 3
    assert np.array_equal(got, ndi.distance_transform_edt(mask))


def test_distance_transform_without_background_is_scipys():
    # scipy then measures from outside the array; OpenCV would return its "infinity"
    mask = np.ones((6, 9), bool)
    assert np.array_equal(distance_transform(mask), ndi.distance_transform_edt(mask))
    one = np.ones((60, 60), bool)
    one[59, 0] = False
    assert np.array_equal(distance_transform(one), ndi.distance_transform_edt(one))
    assert distance_transform(one)[0, 59] == pytest.approx(np.hypot(59, 59))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inner_boundaries_equal_skimage(seed):
    # touching cells (grown into each other), cells cut by the frame border, ids past 2**16
    _, cells = synthetic_frame(np.random.default_rng(seed), 300, touching=0.8)
    labels = expand_labels(cells, 2).astype(np.uint32) * 70001
    labels[100:140, :6] = labels[:5, 200:260] = 99  # cells cut by the frame border
    expected = find_boundaries(labels, mode="inner")
    got = inner_boundaries(labels)
    assert expected.sum() > 500
    assert np.array_equal(got, expected)


def test_inner_boundaries_of_small_and_empty_frames():
    one = np.array([[0, 0, 0, 0], [0, 2, 2, 3], [0, 2, 2, 3]])
    assert np.array_equal(inner_boundaries(one), find_boundaries(one, mode="inner"))
    assert inner_boundaries(one).tolist() == [
        [False, False, False, False],
        [False, True, True, True],
        [False, True, True, True],
    ]
    assert not inner_boundaries(np.zeros((5, 7), np.uint16)).any()
    assert not inner_boundaries(np.ones((1, 1), np.uint16)).any()
