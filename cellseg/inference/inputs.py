"""What ``input=`` names, as sources of 2-D frames read one at a time.

A source is one image, one stack (a multi-page TIFF or a 3-D NPY) or one movie made of a
folder of numbered frames (``t000.tif``, ``t001.tif``, ...). Axes are decided explicitly:

- TIFF with OME or ImageJ metadata: its axes. ``T`` (or generic pages ``I``/``Q``) is time;
  ``C``/``S`` are channels (refused unless ``channel=`` picks one); ``Z`` is refused (a
  Z-stack is not a movie).
- No axis metadata (plain TIFF, NPY, PNG), singleton axes dropped: 2-D is one frame; 3-D
  whose last axis has 2-4 entries is (Y, X, channels); other 3-D shapes are (T, Y, X);
  4-D is (T, Y, X, channels) when its last axis has 2-4 entries.

A folder is a movie when every image in it is ``PREFIX<number>.<ext>`` with one prefix
and the numbers are consecutive (frames are ordered by number, so ``t9`` comes before
``t10``); otherwise its images are unrelated and each is its own source.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from cellseg.data.io import check_dtype, is_image_file, is_page_per_frame, read_image, unreadable
from cellseg.data.layouts import MASKS_SUFFIX
from cellseg.errors import CellsegError

FRAME_NAME = re.compile(r"^(?P<prefix>.*?)(?P<number>\d+)$")
TIME_AXES = "TIQ"
CHANNEL_AXES = "CS"


class BadFrame(Exception):
    """One frame of a stack that cannot be segmented (blank, constant, NaN, unreadable)."""


def is_annotation(path: Path) -> bool:
    """``NAME_masks.tif``: the labels of ``NAME.tif`` (Cellpose's naming, the napari plugin's
    corrections), not an image to segment."""
    return path.stem.endswith(MASKS_SUFFIX)


def find_inputs(spec: str) -> list[Path]:
    """Image files named by ``spec``: one file, every image in a folder (masks beside their
    images left out), or a glob."""
    path = Path(spec).expanduser()
    if path.is_dir():
        found = [
            p
            for p in path.iterdir()
            if p.is_file() and is_image_file(p) and not p.name.startswith(".") and not is_annotation(p)
        ]
        if not found:
            raise CellsegError(f"{path}: no supported images (.tif, .tiff, .png, .npy) in this folder")
        return sorted(found, key=natural_key)
    if path.is_file():
        return [path]
    if glob.has_magic(spec):
        matches = (Path(p) for p in glob.glob(str(path)))
        found = sorted((p for p in matches if is_image_file(p) and not is_annotation(p)), key=natural_key)
        if found:
            return found
        raise CellsegError(f"{spec}: no supported images match this pattern")
    raise CellsegError(f"{spec}: input not found; pass input=FILE, FOLDER or a quoted glob")


def natural_key(path: Path) -> tuple:
    """Sort key that orders ``t9`` before ``t10``."""
    parts = re.split(r"(\d+)", str(path))
    return tuple(int(p) if p.isdigit() else p for p in parts)


def frame_numbers(paths: list[Path]) -> list[int] | None:
    """The frame numbers of ``paths`` if they are ``PREFIX<n>`` with one prefix and suffix, else None."""
    matches = [FRAME_NAME.match(p.stem) for p in paths]
    if len(paths) < 2 or not all(matches):
        return None
    if len({m["prefix"] for m in matches}) != 1 or len({p.suffix.lower() for p in paths}) != 1:
        return None
    return [int(m["number"]) for m in matches]


def is_movie_folder(paths: list[Path]) -> bool:
    """Whether a folder's images are the consecutive frames of one movie."""
    numbers = frame_numbers(paths)
    return numbers is not None and sorted(numbers) == list(range(min(numbers), min(numbers) + len(numbers)))


def decide_axes(shape: tuple[int, ...], axes: str | None, path: Path, channel: int | None) -> tuple[str, int]:
    """The axes of an image as a string over ``TYXC`` (singletons dropped), and its frame count."""
    if axes is None or set(axes) <= set("Q") or set(axes) - set("TZCSYXIQ"):
        axes = None
    kept = [(n, a) for n, a in zip(shape, axes or "?" * len(shape)) if n != 1]
    if len(kept) < 2:
        raise CellsegError(f"{path}: shape {shape} is not an image (y and x need 2 px or more); is it the right file?")
    if axes is None or any(a in "IQ" for _, a in kept if a not in "YX"):
        dims = [n for n, _ in kept]
        rules = {2: "YX", 3: "YXC" if dims[-1:] and dims[-1] <= 4 else "TYX", 4: "TYXC"}
        guessed = rules.get(len(dims))
        if guessed is None or (len(dims) == 4 and dims[-1] > 4):
            raise CellsegError(f"{path}: cannot tell the axes of shape {shape}; save it as (T, Y, X) or (Y, X) frames")
        kept = list(zip(dims, guessed))
    names = "".join("C" if a in CHANNEL_AXES else "T" if a in TIME_AXES else a for _, a in kept)
    sizes = dict(zip(names, (n for n, _ in kept)))
    if "Z" in names:
        raise CellsegError(
            f"{path}: Z-stack (axes {names}, {sizes['Z']} planes); cellseg segments 2-D frames: save a "
            "projection or one file per plane"
        )
    if names.count("T") > 1 or names.count("C") > 1 or names.replace("T", "").replace("C", "") != "YX":
        raise CellsegError(f"{path}: unsupported axes {names} (shape {shape}); save it as (T, Y, X) or (Y, X)")
    if "C" in names:
        if channel is None:
            raise CellsegError(
                f"{path}: {sizes['C']} channels (axes {names}); cellseg models take one: pass channel=K "
                f"(0..{sizes['C'] - 1}) to choose the fluorescence or phase channel"
            )
        if not 0 <= channel < sizes["C"]:
            raise CellsegError(f"{path}: channel={channel} but the image has channels 0..{sizes['C'] - 1}")
    elif channel:
        raise CellsegError(f"{path}: channel={channel} but the image has one channel; drop channel= (or pass 0)")
    return names, sizes.get("T", 1)


def frame_yx(shape: tuple[int, ...], axes: str) -> tuple[int, ...]:
    """(Y, X) of a frame of an image of ``shape`` whose axes :func:`decide_axes` named ``axes``
    (over the dimensions longer than 1)."""
    return tuple(n for n, a in zip([n for n in shape if n != 1], axes) if a in "YX")


def header(path: Path) -> tuple[tuple[int, ...], str | None]:
    """Shape and metadata axes of an image file, reading no pixels where the format allows."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                check_dtype(series.dtype, path)
                if is_page_per_frame(tif):
                    return (len(tif.series), *series.shape), None
                known = tif.is_ome or tif.is_imagej or bool(tif.is_shaped and "Q" not in series.axes)
                return tuple(series.shape), series.axes if known else None
        if suffix == ".npy":
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            check_dtype(array.dtype, path)
            return tuple(array.shape), None
    except CellsegError:
        raise
    except Exception as err:  # corrupt files raise many types; reading reports them the same way
        raise unreadable(path, err) from err
    image = read_image(path)
    return image.shape, None


@dataclass
class Source:
    """One image, stack or movie, with its output name and a frame reader."""

    name: str  # output stem, unique within the run
    paths: list[Path]  # one file, or the frames of a movie folder
    n_frames: int  # frames in time order (1: a single image)
    axes: str = "YX"
    channel: int | None = None
    error: str | None = None  # why the file cannot be read at all (reported when its turn comes)
    frame_shape: tuple[int, ...] = ()  # (Y, X) from the header, where it was read

    @property
    def label(self) -> str:
        """How messages name this source."""
        return str(self.paths[0].parent) if len(self.paths) > 1 else str(self.paths[0])

    def frames(self) -> Iterator[tuple[int, np.ndarray | BadFrame]]:
        """Each (index, raw 2-D frame), or the problem with a frame that cannot be read."""
        if len(self.paths) > 1:
            for index, path in enumerate(self.paths):
                try:
                    image = read_image(path)
                    axes, n = decide_axes(image.shape, None, path, self.channel)
                    if n != 1:
                        raise CellsegError(f"{path}: a frame of a movie folder holds {n} frames")
                    yield index, select(image, axes, 0, self.channel)
                except CellsegError as err:
                    yield index, BadFrame(str(err))
            return
        path = self.paths[0]
        if self.n_frames > 1 and path.suffix.lower() in (".tif", ".tiff") and self.axes == "TYX":
            yield from self._tiff_pages(path)
            return
        image = read_image(path)
        for index in range(self.n_frames):
            yield index, select(image, self.axes, index, self.channel)

    def _tiff_pages(self, path: Path) -> Iterator[tuple[int, np.ndarray | BadFrame]]:
        """Frames of a (T, Y, X) TIFF one page at a time, so memory does not grow with T."""
        with tifffile.TiffFile(path) as tif:
            pages = tif.pages if is_page_per_frame(tif) else tif.series[0].pages
            if len(pages) != self.n_frames:  # frames as samples of one page (a 3-4 frame uint8 stack)
                image = read_image(path)
                for index in range(self.n_frames):
                    yield index, select(image, self.axes, index, self.channel)
                return
            for index in range(self.n_frames):
                try:
                    yield index, np.squeeze(pages[index].asarray())
                except Exception as err:  # a corrupt page: the other frames go on
                    yield index, BadFrame(f"{path} frame {index}: page cannot be read ({type(err).__name__})")


def select(image: np.ndarray, axes: str, index: int, channel: int | None) -> np.ndarray:
    """Frame ``index`` (channel ``channel``) of an image with ``axes`` (singletons dropped)."""
    image = np.squeeze(image)
    if "T" in axes:
        image = np.take(image, index, axis=axes.index("T"))
        axes = axes.replace("T", "")
    if "C" in axes:
        image = np.take(image, channel, axis=axes.index("C"))
    return image


def unique_names(paths: list[Path]) -> list[str]:
    """Output stems: the file stem, made unique by folder and suffix where stems collide."""
    stems = [p.stem for p in paths]
    names = []
    for path, stem in zip(paths, stems):
        if stems.count(stem) == 1:
            names.append(stem)
            continue
        same = [p for p, s in zip(paths, stems) if s == stem]
        folders = {p.parent for p in same}
        name = f"{path.parent.name}_{stem}" if len(folders) == len(same) else stem
        if len({(p.parent, p.stem) for p in same}) < len(same):  # x.tif beside x.png
            name = f"{name}_{path.suffix.lstrip('.').lower()}"
        names.append(name)
    if len(set(names)) < len(names):
        raise CellsegError(f"{paths[0]}: input names collide ({', '.join(names)}); rename the files or run them apart")
    return names


def check_movie_frames(paths: list[Path], channel: int | None) -> tuple[int, ...]:
    """(Y, X) of the first readable frame of a movie folder; refuse a folder none of whose frames
    is a readable 2-D image (with ``channel``). A damaged frame among good ones, the first
    included, is a bad frame of the movie instead."""
    first_error = None
    for path in paths:  # headers only; usually the first frame settles it
        try:
            shape, axes = header(path)
            return frame_yx(shape, decide_axes(shape, axes, path, channel)[0])
        except CellsegError as err:
            first_error = first_error or err
    raise first_error


def plan_sources(spec: str, track: bool | str, channel: int | None) -> list[Source]:
    """The sources of ``input=``: a movie folder is one source with ``track=auto`` (frames
    numbered consecutively) or ``track=true``; each other file is its own source."""
    paths = find_inputs(spec)
    folder = Path(spec).expanduser()
    if folder.is_dir() and len(paths) > 1 and (track is True or (track == "auto" and is_movie_folder(paths))):
        yx = check_movie_frames(paths, channel)
        return [Source(folder.name, paths, len(paths), "YX", channel, frame_shape=yx)]
    sources = []
    for path, name in zip(paths, unique_names(paths)):
        try:
            shape, meta_axes = header(path)
            axes, n_frames = decide_axes(shape, meta_axes, path, channel)
        except CellsegError as err:
            sources.append(Source(name, [path], 0, "", channel, str(err)))
            continue
        sources.append(Source(name, [path], n_frames, axes, channel, frame_shape=frame_yx(shape, axes)))
    return sources
