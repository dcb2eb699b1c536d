"""Post-processing and measurements: against the library functions they replace, and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.filters import gaussian
from skimage.measure import regionprops_table
from skimage.morphology import disk, h_maxima
from skimage.segmentation import expand_labels, watershed

from cellseg.data.synthetic import synthetic_frame
from cellseg.measure import COLUMNS, measure
from cellseg.morphology import fill_holes
from cellseg.postprocess import grow_into, probabilities_to_labels, split_object, watershed_split


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return synthetic_frame(np.random.default_rng(5), 256)[1]


def test_fill_holes_equals_scipy():
    rng = np.random.default_rng(0)
    mask = ndi.binary_opening(rng.random((120, 90)) > 0.45)
    assert np.array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))
    assert fill_holes(mask).sum() > mask.sum()


def test_grow_into_equals_expand_labels_up_to_ties(truth):
    seeds, _ = ndi.label(ndi.binary_erosion(truth > 0, iterations=3))
    region = truth > 0
    expected = np.where(region | (seeds > 0), expand_labels(seeds, distance=2), 0)
    got = grow_into(seeds, region, 2)
    differ = np.argwhere(got != expected)
    assert (got > 0).sum() == (expected > 0).sum() and (got > 0).sum() > (seeds > 0).sum()
    assert len(differ) < 0.01 * (got > 0).sum()
    # where they differ, both labels are seeds equally near the pixel: a tie
    near = {}
    for label in np.unique(seeds)[1:]:
        near[label] = ndi.distance_transform_edt(seeds != label)
    for y, x in differ:
        assert near[got[y, x]][y, x] == pytest.approx(near[expected[y, x]][y, x])


def whole_frame_watershed(prob: np.ndarray, threshold: float, h: float) -> np.ndarray:
    """The watershed split on the whole frame at once, with the library calls it replaces."""
    interior = ndi.binary_fill_holes(prob[0] > threshold)
    closed = ndi.binary_closing(interior, structure=disk(2), border_value=0)
    bridged = interior | (closed & (prob[1] < 0.5))
    distance = gaussian(ndi.distance_transform_edt(bridged), sigma=1.0)
    markers, _ = ndi.label(h_maxima(distance, h) & bridged)
    return watershed(-distance, markers, mask=bridged)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_watershed_object_by_object_equals_the_whole_frame(seed):
    # touching nuclei, cells cut by the frame border, blurred and noisy probabilities
    _, cells = synthetic_frame(np.random.default_rng(seed), 512, touching=0.8)
    rng = np.random.default_rng(seed + 10)
    interior = ndi.gaussian_filter(ndi.binary_erosion(cells > 0, iterations=1).astype(float), 1.5)
    edge = ndi.gaussian_filter((expand_labels(cells, 1) != ndi.grey_erosion(expand_labels(cells, 1), 3)) * 1.0, 1)
    prob = np.clip(np.stack([interior, edge]) + rng.normal(0, 0.05, (2, 512, 512)), 0, 1)
    expected = whole_frame_watershed(prob, 0.5, 2.0)
    got = watershed_split(prob, 0.5, 2.0)
    assert expected.max() > 10 and (expected[:, 0] > 0).any()  # many objects, some on the border
    assert np.array_equal(got, expected)


def test_speckles_of_a_barely_trained_network_are_dropped_as_the_whole_frame_drops_them():
    """Thousands of specks a frame, some beside cells: the objects that cannot reach ``h`` are
    skipped unsmoothed; the result must not change."""
    _, cells = synthetic_frame(np.random.default_rng(3), 512, touching=0.8)
    rng = np.random.default_rng(4)
    interior = ndi.gaussian_filter(ndi.binary_erosion(cells > 0, iterations=1).astype(float), 1.5)
    specks = (rng.random((512, 512)) < 0.01) | ndi.binary_dilation(rng.random((512, 512)) < 0.002)  # 1 px and crosses
    prob = np.clip(np.stack([np.maximum(interior, 0.9 * specks), np.zeros((512, 512))]), 0, 1)
    expected = whole_frame_watershed(prob, 0.5, 2.0)
    assert ndi.label(prob[0] > 0.5)[1] > 1000 and expected.max() > 10
    assert np.array_equal(watershed_split(prob, 0.5, 2.0), expected)


def test_cells_under_2h_across_are_kept_by_threshold_and_dropped_by_watershed():
    """A round cell of radius 4 and a rod 2 px wide: their smoothed distance never reaches the
    default h=2, so watershed gives them no marker (a shape prior that drops faint slivers; the
    README says to use the threshold method or a lower h for cells this small)."""
    yy, xx = np.mgrid[:40, :80]
    prob = np.zeros((2, 40, 80), np.float32)
    ring = np.hypot(yy - 20, xx - 12)
    prob[0][ring <= 2], prob[1][(ring > 2) & (ring <= 4)] = 1, 1
    prob[1, 16:24, 28:74] = 1
    prob[1, 18:20, 30:72], prob[0, 18:20, 30:72] = 0, 1
    for method in ("threshold", "hysteresis"):
        labels = probabilities_to_labels(prob, method=method)
        assert labels.max() == 2 and labels[20, 12] != labels[19, 50] and labels[20, 12] * labels[19, 50] > 0
    assert probabilities_to_labels(prob, method="watershed").max() == 0
    assert probabilities_to_labels(prob, method="watershed", h=0.5).max() == 2


def test_measure_equals_regionprops(truth):
    raw = np.random.default_rng(1).integers(0, 4000, truth.shape).astype(np.uint16)
    labels = np.where(truth == 2, 0, truth).astype(np.uint16)  # a gap in the label numbers
    table = measure(labels, raw, "img.tif", 3)
    expected = regionprops_table(
        labels, intensity_image=raw, properties=("label", "area", "centroid", "bbox", "eccentricity", "intensity_mean")
    )
    assert list(table["label"]) == list(expected["label"]) and 2 not in set(table["label"])
    pairs = {"area": "area", "centroid_y": "centroid-0", "centroid_x": "centroid-1", "bbox_y0": "bbox-0",
             "bbox_x0": "bbox-1", "bbox_y1": "bbox-2", "bbox_x1": "bbox-3", "eccentricity": "eccentricity",
             "mean_intensity": "intensity_mean"}  # fmt: skip
    for ours, theirs in pairs.items():
        assert np.allclose(table[ours], expected[theirs], rtol=1e-9, atol=1e-9), ours
    assert np.allclose(table["total_intensity"], expected["intensity_mean"] * expected["area"])
    assert (table["image"] == "img.tif").all() and (table["frame"] == 3).all()


def test_measure_of_an_empty_frame_has_the_columns():
    table = measure(np.zeros((8, 8), np.uint16), np.ones((8, 8), np.uint8), "x.tif", 0)
    assert table.empty and list(table.columns) == COLUMNS


# -- probabilities to labels, by hand ------------------------------------------------------


def dot_grid(side: int, drop: int = 0) -> np.ndarray:
    """(2, side, side) probabilities of 1-px cells on every other row and column (side/2
    squared cells, none touching, background connected to the border), less the last ``drop``."""
    interior = np.zeros((side, side), np.float32)
    interior[::2, ::2] = 1.0
    ys, xs = np.nonzero(interior)
    interior[ys[len(ys) - drop :], xs[len(xs) - drop :]] = 0.0
    return np.stack([interior, np.zeros_like(interior)])


@pytest.mark.parametrize(("side", "drop", "dtype"), [(512, 1, np.uint16), (512, 0, np.uint32), (520, 0, np.uint32)])
def test_labels_beyond_65535_cells_are_uint32_and_distinct(side, drop, dtype):
    prob = dot_grid(side, drop)
    labels = probabilities_to_labels(prob, 0.5, "threshold", min_size=1)
    count = (side // 2) ** 2 - drop  # 65535, 65536, 67600
    assert labels.dtype == dtype
    assert labels.max() == count
    cells = labels[prob[0] > 0.5]
    assert cells.min() == 1 and np.unique(cells).size == count  # no label wrapped round onto another
    assert (labels[prob[0] <= 0.5] == 0).all()
    assert np.array_equal(labels[0, :6:2], [1, 2, 3])  # numbered in raster order


def test_threshold_labels_by_hand():
    interior = np.zeros((20, 20), np.float32)
    edge = np.zeros_like(interior)
    interior[3:6, 3:6] = 0.9  # a 3x3 interior ...
    edge[2:7, 2:7] = 0.8  # ... in a 1-px edge ring (foreground: interior + edge > 0.5)
    edge[3:6, 3:6] = 0.0
    interior[12:15, 12:16] = 0.9  # a 3x4 cell without edge evidence
    interior[1, 15] = 0.9  # a 1-px speck
    interior[12, 2] = 0.4  # below the threshold
    labels = probabilities_to_labels(np.stack([interior, edge]), 0.5, "threshold", min_size=5, expand=2)
    expected = np.zeros((20, 20), np.uint16)
    expected[2:7, 2:7] = 1  # grown over its ring
    expected[12:15, 12:16] = 2  # kept as it is; the speck is under min_size; labels stay 1..N
    assert labels.dtype == np.uint16 and np.array_equal(labels, expected)


def two_touching_nuclei_and_a_dim_one() -> np.ndarray:
    """Interior probability of two discs joined by a hesitant bridge (0.6), and a dim disc (0.7)."""
    yy, xx = np.mgrid[:40, :60]
    interior = np.zeros((40, 60), np.float32)
    interior[(yy - 20) ** 2 + (xx - 12) ** 2 <= 36] = 0.95
    interior[(yy - 20) ** 2 + (xx - 26) ** 2 <= 36] = 0.95
    interior[18:23, 17:22] = np.maximum(interior[18:23, 17:22], 0.6)  # the neck between them
    interior[(yy - 20) ** 2 + (xx - 48) ** 2 <= 25] = 0.7
    return np.stack([interior, np.zeros_like(interior)])


def test_hysteresis_splits_nuclei_joined_where_the_network_hesitated():
    prob = two_touching_nuclei_and_a_dim_one()
    merged = probabilities_to_labels(prob, 0.5, "threshold", min_size=5, expand=0)
    split = probabilities_to_labels(prob, 0.5, "hysteresis", min_size=5, expand=0, seed_threshold=0.9)
    assert merged.max() == 2  # the two touching nuclei are one object, the dim one another
    assert split.max() == 3
    assert split[20, 12] != split[20, 26]  # each touching nucleus has its own label ...
    assert split[20, 48] > 0 and split[20, 48] not in (split[20, 12], split[20, 26])  # ... the dim one is kept
    assert np.array_equal(split > 0, merged > 0)  # same pixels, only divided differently


@pytest.mark.parametrize("method", ["threshold", "watershed", "hysteresis"])
def test_min_prob_drops_faint_objects_and_keeps_sure_ones(method):
    yy, xx = np.mgrid[:40, :60]
    interior = np.zeros((40, 60), np.float32)
    interior[(yy - 20) ** 2 + (xx - 12) ** 2 <= 36] = 0.95  # a nucleus
    interior[(yy - 20) ** 2 + (xx - 40) ** 2 <= 36] = 0.4  # faint background, just over the threshold
    prob = np.stack([interior, np.zeros_like(interior)])
    both = probabilities_to_labels(prob, 0.3, method, min_size=5, expand=0)
    sure = probabilities_to_labels(prob, 0.3, method, min_size=5, expand=0, min_prob=0.5)
    assert both.max() == 2 and both[20, 40] > 0
    assert sure.max() == 1 and sure[20, 12] == 1 and sure[20, 40] == 0
    assert np.array_equal(sure > 0, both == both[20, 12])  # the nucleus keeps every pixel


@pytest.mark.parametrize("markers_at", [[(2, 2)], [(2, 2), (7, 7)], []])
def test_split_object_equals_the_watershed(markers_at):
    # two squares that touch at a corner: one 8-connected object, two 4-connected pieces
    own = np.zeros((10, 10), bool)
    own[1:5, 1:5] = own[5:9, 5:9] = True
    local = np.where(own, ndi.distance_transform_edt(own), 0.0)
    markers = np.zeros(own.shape, np.int32)
    for label, (y, x) in enumerate(markers_at, start=3):
        markers[y, x] = label
    expected = watershed(-local, markers, mask=own)
    assert np.array_equal(split_object(local, own, markers), expected)
    one_piece = own.copy()
    one_piece[4, 5] = True  # now 4-connected: one marker takes the whole object without flooding
    assert np.array_equal(split_object(local, one_piece, markers), watershed(-local, markers, mask=one_piece))
