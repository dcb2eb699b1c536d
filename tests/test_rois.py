"""Fiji ROI zips: read back with roifile, each polygon filled the way ImageJ fills it
(the pixels whose centre (c + 0.5, r + 0.5) is inside) must give back the cell's mask, and
each outline must be the one ``find_contours`` traces on the cell's padded crop."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest
from matplotlib.path import Path as PolygonPath
from roifile import roiread
from scipy import ndimage
from skimage.draw import disk
from skimage.measure import find_contours

from cellseg.outputs.rois import RoiZip, cell_polygons


def shapes() -> np.ndarray:
    """Label image: disk, rectangle, L, a cell on the border, cells with holes (one whose hole's
    outline is longer than its own), a cell in two pieces."""
    labels = np.zeros((96, 80), np.uint16)
    labels[disk((14, 14), 8.5, shape=labels.shape)] = 1
    labels[5:15, 40:60] = 2  # rows 5..14, columns 40..59
    labels[30:50, 10:16] = 3
    labels[44:50, 16:30] = 3  # the L's foot
    labels[72:96, 70:80] = 4  # touches the right and bottom borders
    labels[25:45, 40:60] = 7
    labels[31:39, 46:54] = 0  # the hole of label 7
    labels[0:3, 0:3] = 9
    labels[0:2, 5:7] = 9  # a smaller second piece of label 9
    labels[64:94, 0:30] = 5
    labels[67:69, 2:28] = 0  # a comb-shaped hole: its back ...
    labels[69:91, 2:28:2] = 0  # ... and 13 teeth
    return labels


def random_labels(seed: int) -> np.ndarray:
    """A small dense label image: touching cells, diagonal contacts, holes, pieces."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 4, rng.integers(1, 13, 2)).astype(np.uint16)


def filled(coords: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """ImageJ's fill of a polygon given in pixel-corner coordinates."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    centres = np.column_stack([cols.ravel() + 0.5, rows.ravel() + 0.5])
    return PolygonPath(coords).contains_points(centres).reshape(shape)


def largest_pieces(labels: np.ndarray, label: int) -> list[np.ndarray]:
    """The pieces of a cell (diagonal neighbours joined) with the most pixels, holes filled."""
    pieces, n = ndimage.label(labels == label, np.ones((3, 3)))
    filled_pieces = [ndimage.binary_fill_holes(pieces == k) for k in range(1, n + 1)]
    most = max(piece.sum() for piece in filled_pieces)
    return [piece for piece in filled_pieces if piece.sum() == most]


def reference_outline(labels: np.ndarray, label: int) -> np.ndarray:
    """find_contours on the cell's padded crop, the contour enclosing most, straight runs
    reduced to their ends, shifted to pixel corners."""
    box = ndimage.find_objects((labels == label).astype(np.uint8))[0]
    contours = find_contours(np.pad(labels[box] == label, 1), 0.5, fully_connected="high")
    area = [abs(np.cross(c[:-1], c[1:]).sum()) for c in contours]
    ring = contours[int(np.argmax(area))][:-1, ::-1] + [box[1].start - 0.5, box[0].start - 0.5]
    incoming, outgoing = ring - np.roll(ring, 1, 0), np.roll(ring, -1, 0) - ring
    return ring[np.cross(incoming, outgoing) != 0]


def same_ring(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two closed polygons have the same vertex cycle (any start, either direction)."""
    if a.shape != b.shape:
        return False
    for ring in (b, b[::-1]):
        for start in np.flatnonzero((ring == a[0]).all(axis=1)):
            if np.array_equal(np.roll(ring, -start, axis=0), a):
                return True
    return False


def write(tmp_path, frames: list[np.ndarray], stack: bool):
    path = tmp_path / "rois.zip"
    rois = RoiZip(path)
    for index, labels in enumerate(frames):
        rois.add_frame(labels, index if stack else None)
    rois.close()
    return path


def test_image_rois_reproduce_the_masks(tmp_path):
    labels = shapes()
    path = write(tmp_path, [labels], stack=False)
    rois = roiread(path)
    present = sorted(int(v) for v in np.unique(labels) if v)
    assert [roi.name for roi in rois] == [str(label) for label in present]
    assert zipfile.ZipFile(path).namelist() == [f"{label:04d}.roi" for label in present]
    for roi in rois:
        label = int(roi.name)
        assert roi.position == 0 and roi.subpixelresolution
        (expected,) = largest_pieces(labels, label)
        np.testing.assert_array_equal(filled(roi.coordinates(), labels.shape), expected, err_msg=f"label {label}")


@pytest.mark.parametrize("seed", range(40))
def test_outlines_are_find_contours_outlines(seed):
    labels = random_labels(seed)
    polygons = dict(cell_polygons(labels))
    assert sorted(polygons) == sorted(int(v) for v in np.unique(labels) if v)
    for label, ring in polygons.items():
        mask, pieces = filled(ring, labels.shape), largest_pieces(labels, label)
        assert any(np.array_equal(mask, piece) for piece in pieces), f"label {label}"
        if ndimage.label(labels == label, np.ones((3, 3)))[1] == 1:
            assert same_ring(ring, reference_outline(labels, label)), f"label {label}"


def test_rectangle_outline_lies_on_pixel_corners(tmp_path):
    rois = {roi.name: roi for roi in roiread(write(tmp_path, [shapes()], stack=False))}
    coords = rois["2"].coordinates()
    # rows 5..14 and columns 40..59 cover x in [40, 60] and y in [5, 15] in ImageJ's convention
    np.testing.assert_array_equal(coords.min(axis=0), [40, 5])
    np.testing.assert_array_equal(coords.max(axis=0), [60, 15])
    assert len(coords) == 8  # straight runs collapsed: four sides, four cut corners


def test_border_cell_outline_runs_along_the_image_edge():
    polygons = dict(cell_polygons(shapes()))
    np.testing.assert_array_equal(polygons[4].min(axis=0), [70, 72])
    np.testing.assert_array_equal(polygons[4].max(axis=0), [80, 96])  # the image's right and bottom edges


def test_stack_positions_and_unique_entries(tmp_path):
    frames = []
    for t in range(3):
        labels = np.zeros((40, 40), np.uint16)
        labels[5 + t : 15 + t, 5:15] = 3  # one cell moving down
        if t:
            labels[25:35, 20 + 4 * t : 28 + 4 * t] = 11 + t  # a new cell id in frames 1 and 2
        frames.append(labels)
    path = write(tmp_path, frames, stack=True)
    rois = roiread(path)
    names = zipfile.ZipFile(path).namelist()
    assert names == ["t0000-0003.roi", "t0001-0003.roi", "t0001-0012.roi", "t0002-0003.roi", "t0002-0013.roi"]
    assert [(roi.position, roi.name) for roi in rois] == [(1, "3"), (2, "3"), (2, "12"), (3, "3"), (3, "13")]
    assert all(roi.t_position == 0 for roi in rois)
    for roi, entry in zip(rois, names):
        mask = frames[int(entry[1:5])] == int(roi.name)
        np.testing.assert_array_equal(filled(roi.coordinates(), mask.shape), mask)


def test_empty_frames_write_no_entries(tmp_path):
    path = write(tmp_path, [np.zeros((16, 16), np.uint16), shapes()[:16, :16]], stack=True)
    assert zipfile.ZipFile(path).namelist() == ["t0001-0001.roi", "t0001-0009.roi"]


@pytest.mark.parametrize("frames", [[0, 0], [None, 0], [0, None], [None, None]])
def test_a_frame_is_written_once(tmp_path, frames):
    rois = RoiZip(tmp_path / "rois.zip")
    rois.add_frame(shapes(), frames[0])
    with pytest.raises(ValueError, match="written already"):
        rois.add_frame(shapes(), frames[1])
    rois.close()
