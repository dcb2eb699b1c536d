"""Pictures: outlines in the colour of their cell."""

from __future__ import annotations

import numpy as np

from cellseg.visualize import PALETTE, outline_overlay


def test_outline_overlay_colours_each_outline_by_its_label():
    labels = np.zeros((20, 30), np.uint16)
    labels[2:8, 2:9], labels[10:18, 12:25] = 1, 14
    rgb = outline_overlay(np.full(labels.shape, 0.5, np.float32), labels)
    assert rgb[2, 5].tolist() == PALETTE[1].tolist() and rgb[10, 20].tolist() == PALETTE[14 % len(PALETTE)].tolist()
    assert rgb[5, 5].tolist() == [127, 127, 127]  # inside a cell: the image
