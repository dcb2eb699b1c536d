"""Read microscopy images and label images, keeping their dtype.

TIFF (8/16-bit, LZW and other codecs through imagecodecs) goes through tifffile, PNG
through imageio (palette PNGs through Pillow, as their indices), NPY through numpy. Every
failure is a :class:`CellsegError` whose message names the file and says what to do.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
from PIL import Image

from cellseg.errors import CellsegError

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".npy")


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has a suffix cellseg can read."""
    return path.suffix.lower() in IMAGE_SUFFIXES


def read_image(path: str | Path) -> np.ndarray:
    """Read an image or label file as stored (dtype and all pages kept)."""
    path = Path(path)
    if not path.is_file():
        raise CellsegError(f"{path}: file not found; check the path")
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:  # a stack saved a page per frame is several series
                array = np.stack([s.asarray() for s in tif.series]) if is_page_per_frame(tif) else tif.asarray()
        elif suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".png":
            with Image.open(path) as png:  # palette PNGs (label masks, ImageJ LUTs) hold indices, not colours
                array = np.asarray(png) if png.mode == "P" else iio.imread(path)
        else:
            raise CellsegError(
                f"{path}: unsupported file type {suffix!r}; use one of {', '.join(IMAGE_SUFFIXES)}"
            )
    except CellsegError:
        raise
    except Exception as err:  # corrupt files raise many different types
        raise unreadable(path, err) from err
    array = np.asarray(array)
    if array.size == 0:
        raise CellsegError(f"{path}: image is empty (shape {array.shape}); remove or replace it")
    check_dtype(array.dtype, path)
    return array


def unreadable(path: str | Path, err: Exception) -> CellsegError:
    """The one line for a file a reader failed on (corrupt files raise many different types)."""
    return CellsegError(f"{path}: cannot be read ({type(err).__name__}: {err}); is the file complete?")


def is_page_per_frame(tif: tifffile.TiffFile) -> bool:
    """Whether a TIFF without axis metadata holds its frames as one-page series of one shape
    and dtype (what ``TiffWriter.write`` called once per frame saves): a (T, Y, X) stack,
    of which ``tif.series[0]`` is only the first frame."""
    first = tif.series[0]
    return (
        len(tif.series) > 1
        and not (tif.is_ome or tif.is_imagej)
        and all(len(s.pages) == 1 and s.shape == first.shape and s.dtype == first.dtype for s in tif.series)
        and len(first.shape) == 2
    )


def check_dtype(dtype: np.dtype, path: str | Path) -> None:
    """Refuse pixel types that are not intensities (bool, complex, strings, objects)."""
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise CellsegError(f"{path}: unsupported dtype {dtype}; save it as an integer or float image")


def as_2d(image: np.ndarray, path: str | Path) -> np.ndarray:
    """Return a single-channel (Y, X) view of ``image``, or say why it is not one.

    A trailing or leading singleton axis is dropped. Colour images are refused rather
    than silently averaged: the network was trained on one channel.
    """
    squeezed = np.squeeze(image)
    if squeezed.ndim == 2:
        return squeezed
    if squeezed.ndim == 3 and squeezed.shape[-1] in (3, 4):
        raise CellsegError(
            f"{path}: colour image of shape {image.shape}; cellseg models take one channel, "
            "save the fluorescence or phase channel alone"
        )
    raise CellsegError(
        f"{path}: expected a 2-D image, got shape {image.shape}; split stacks into frames"
    )


def stack_page(array: np.ndarray, page: int, path: str | Path) -> np.ndarray:
    """Frame ``page`` of a (T, Y, X) stack as read from ``path``."""
    stack = np.squeeze(array)
    if stack.ndim != 3 or not 0 <= page < len(stack):
        raise CellsegError(
            f"{path}: expected a stack of more than {page} frames (T, Y, X) to pair with its mask stack, "
            f"got shape {array.shape}; pair each stack with a mask stack of its own frames"
        )
    return stack[page]


def stack_length(tif: tifffile.TiffFile) -> int | None:
    """Frames of a (T, Y, X) stack; None for a 2-D image, and for colour (Y, X, 3) or an
    RGB-saved (3, Y, X), which stay :func:`as_2d`'s to refuse."""
    if is_page_per_frame(tif):
        return len(tif.series)
    series = tif.series[0]
    kept = [n for n in series.shape if n > 1]
    return kept[0] if len(kept) == 3 and kept[-1] > 4 and "S" not in series.axes else None


def read_page(path: str | Path, page: int) -> np.ndarray:
    """Frame ``page`` of a (T, Y, X) stack: that TIFF page alone where every page is one frame
    (a stack's every frame would otherwise be read once per frame), else the whole file."""
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        try:
            with tifffile.TiffFile(path) as tif:
                frames = stack_length(tif)
                one_each = frames == len(tif.pages) and page < frames and tif.pages[page].ndim == 2
                array = tif.pages[page].asarray() if one_each else None
        except Exception as err:
            raise unreadable(path, err) from err
        if array is not None:
            check_dtype(array.dtype, path)
            return array
    return stack_page(read_image(path), page, path)


def annotated_pages(path: Path) -> tuple[int, list[int]] | None:
    """``(frames, annotated frames)`` of a mask stack: every page, or the ``corrected_frames``
    that cellseg's napari plugin records in the stack's description; None for a 2-D mask."""
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        with tifffile.TiffFile(path) as tif:
            pages = stack_length(tif)
            described = (tif.shaped_metadata or [{}])[0] if tif.is_shaped else {}
    except Exception as err:
        raise unreadable(path, err) from err
    if pages is None:
        return None
    chosen = described.get("corrected_frames", list(range(pages)))
    if not isinstance(chosen, list) or not all(isinstance(t, int) and 0 <= t < pages for t in chosen):
        raise CellsegError(f"{path}: corrected_frames {chosen!r} are not frames of its {pages}; save the masks again")
    return pages, sorted(set(chosen))


def read_labels(path: str | Path, page: int | None = None) -> np.ndarray:
    """Read an instance-label image (0 = background, 1..N = cells) as int32; ``page``: that
    frame of a mask stack."""
    return as_labels(as_2d(read_image(path) if page is None else read_page(path, page), path), path)


def as_labels(labels: np.ndarray, path: str | Path) -> np.ndarray:
    """Instance labels as int32, refused in one line naming ``path`` when they are not whole
    numbers in 0..2147483647 (whole-valued float masks, as some tools save them, are accepted)."""
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.equal(np.mod(labels, 1), 0)):
            raise CellsegError(
                f"{path}: label image has fractional values; save instance labels as integers"
            )
    if labels.size and labels.min() < 0:
        raise CellsegError(f"{path}: label image has negative values; 0 must be background")
    if labels.size and labels.max() > np.iinfo(np.int32).max:  # would wrap negative
        raise CellsegError(f"{path}: label {int(labels.max())} is past 2147483647; renumber the cells 1..N")
    return labels.astype(np.int32)

