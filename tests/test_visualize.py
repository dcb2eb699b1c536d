"""Pictures: the fast outlines against the skimage call they replace."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import expand_labels, find_boundaries

from cellseg.data.synthetic import synthetic_frame
from cellseg.visualize import PALETTE, inner_boundaries, outline_overlay


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


def test_outline_overlay_colours_each_outline_by_its_label():
    labels = np.zeros((20, 30), np.uint16)
    labels[2:8, 2:9], labels[10:18, 12:25] = 1, 14
    rgb = outline_overlay(np.full(labels.shape, 0.5, np.float32), labels)
    assert rgb[2, 5].tolist() == PALETTE[1].tolist() and rgb[10, 20].tolist() == PALETTE[14 % len(PALETTE)].tolist()
    assert rgb[5, 5].tolist() == [127, 127, 127]  # inside a cell: the image
