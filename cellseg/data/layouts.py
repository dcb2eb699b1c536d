"""Find annotated image/mask pairs in the three folder layouts cellseg reads.

1. ``instance``: ``images/NAME.ext`` + ``masks/NAME.ext`` instance labels (0 = background).
2. ``npy_masks``: ``images/X.tif`` + ``masks/*_mask_cells.npy``, ``*_mask_edges.npy``
   (and ``*_mask_other.npy``) binary masks, the original author's format.
3. ``ctc``: the Cell Tracking Challenge tree ``01/tNNN.tif`` + ``01_GT/SEG/man_segNNN.tif``.
4. ``masks_suffix``: ``NAME.ext`` + ``NAME_masks.ext`` side by side in one folder, as Cellpose
   saves them and as cellseg's napari plugin saves corrections.

A (T, Y, X) mask stack beside a stack of T frames gives one frame per annotated page
(``NAME_t002``): every page, or those the napari plugin recorded as corrected.

Every layout ends as :class:`AnnotatedFrame` objects that load an image and its instance
labels, so training, validation and evaluation share one code path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import expand_labels

from cellseg.data.io import annotated_pages, as_2d, is_image_file, read_image, read_labels, read_page
from cellseg.errors import CellsegError

LAYOUTS = ("auto", "instance", "npy_masks", "ctc", "masks_suffix")
MASKS_SUFFIX = "_masks"
_CTC_SEG = re.compile(r"man_seg_?(\d+)$")


@dataclass(frozen=True)
class AnnotatedFrame:
    """One annotated frame: where its image is and how to get its instance labels."""

    name: str
    image_path: Path
    mask_path: Path
    edges_path: Path | None = None  # npy_masks layout only
    page: int | None = None  # a frame of a (T, Y, X) image stack and its mask stack

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(image, labels)``: the raw 2-D image and int32 instance labels."""
        image = read_image(self.image_path) if self.page is None else read_page(self.image_path, self.page)
        image = as_2d(image, self.image_path)
        if self.edges_path is None:
            labels = read_labels(self.mask_path, self.page)
        else:
            labels = labels_from_binary_masks(
                as_2d(read_image(self.mask_path), self.mask_path),
                as_2d(read_image(self.edges_path), self.edges_path),
            )
        if labels.shape != image.shape:
            raise CellsegError(
                f"{self.mask_path}: mask shape {labels.shape} does not match image "
                f"{self.image_path.name} shape {image.shape}; pair each image with its own mask"
            )
        return image, labels


def labels_from_binary_masks(cells: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Instance labels from interior and edge masks: interior components grown over edges."""
    interior, _ = ndi.label(cells > 0)
    cell_area = (cells > 0) | (edges > 0)
    grown = expand_labels(interior, distance=3)
    return np.where(cell_area, grown, 0).astype(np.int32)


FOLDERS = {"instance": ("images", "masks"), "npy_masks": ("images", "masks")}  # what each layout reads


def detect_layout(root: Path) -> str:
    """Guess the layout of ``root`` from its folder names."""
    if (root / "masks").is_dir() and any((root / "masks").glob("*_mask_cells.npy")):
        return "npy_masks"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "instance"
    if any(p.is_dir() and (root / f"{p.name}_GT" / "SEG").is_dir() for p in root.iterdir()):
        return "ctc"
    if _masks_suffix_frames(root):
        return "masks_suffix"
    raise CellsegError(
        f"{root}: no known layout (images/+masks/, *_mask_cells.npy, CTC 01/+01_GT/SEG/, "
        f"or NAME.tif + NAME{MASKS_SUFFIX}.tif); "
        "see README 'Data layouts'"
    )


def find_frames(root: str | Path, layout: str = "auto") -> list[AnnotatedFrame]:
    """All annotated frames under ``root``, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise CellsegError(f"{root}: data folder not found; set data.root=PATH")
    if layout not in LAYOUTS:
        raise CellsegError(f"unknown data.layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if layout == "auto":
        layout = detect_layout(root)
    missing = [name for name in FOLDERS.get(layout, ()) if not (root / name).is_dir()]
    if missing:
        raise CellsegError(
            f"{root}: data.layout={layout} reads {'/ and '.join(FOLDERS[layout])}/, and {missing[0]}/ is not "
            "there; set data.layout=auto to detect the folder's layout (README 'Data layouts')"
        )
    finder = {
        "instance": _instance_frames,
        "npy_masks": _npy_frames,
        "ctc": _ctc_frames,
        "masks_suffix": _masks_suffix_frames,
    }[layout]
    frames = sorted((page for frame in finder(root) for page in stack_pages(frame)), key=lambda f: f.name)
    for first, second in zip(frames, frames[1:]):
        if first.name == second.name:  # a.tif beside a.png, or a_masks.tif beside a_masks.png
            raise CellsegError(
                f"{root}: frame {first.name!r} is annotated twice ({first.image_path.name} + {first.mask_path.name}, "
                f"{second.image_path.name} + {second.mask_path.name}); keep one pair"
            )
    if not frames:
        raise CellsegError(
            f"{root}: no image/mask pairs found for layout {layout!r}; "
            "masks must share their image's name"
        )
    return frames


def stack_pages(frame: AnnotatedFrame) -> list[AnnotatedFrame]:
    """A mask stack beside an image stack as one frame per annotated page, named
    ``NAME_tNNN`` (so ``data.test_gap`` sees their time); a 2-D mask as itself."""
    stack = annotated_pages(frame.mask_path) if frame.edges_path is None else None
    if stack is None:
        return [frame]
    from cellseg.inference.inputs import decide_axes, header  # inputs imports this module

    axes, n_frames = decide_axes(*header(frame.image_path), frame.image_path, None)  # refuses Z-stacks, channels
    if axes != "TYX" or n_frames != stack[0]:
        movie = f"{n_frames} frames" if axes == "TYX" else f"axes {axes}"
        raise CellsegError(
            f"{frame.mask_path}: a mask stack of {stack[0]} frames beside {frame.image_path.name} of {movie}; "
            "pair a (T, Y, X) movie with a mask stack of its frames, or a 2-D image with a 2-D mask"
        )
    digits = max(3, len(str(stack[0] - 1)))
    return [replace(frame, name=f"{frame.name}_t{t:0{digits}d}", page=t) for t in stack[1]]


def _images_in(folder: Path) -> list[Path]:
    """Image files of ``folder``, hidden ones (macOS ``._NAME.tif`` copies) left out."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_file(p))


def _instance_frames(root: Path) -> list[AnnotatedFrame]:
    masks: dict[str, list[Path]] = {}
    for path in _images_in(root / "masks"):
        masks.setdefault(path.stem, []).append(path)
    return [  # masks/a.tif beside masks/a.png: two frames of one name, refused
        AnnotatedFrame(p.stem, p, mask) for p in _images_in(root / "images") for mask in masks.get(p.stem, [])
    ]


def _masks_suffix_frames(root: Path) -> list[AnnotatedFrame]:
    files = _images_in(root)
    images: dict[str, list[Path]] = {}
    for path in files:
        if not path.stem.endswith(MASKS_SUFFIX):
            images.setdefault(path.stem, []).append(path)
    return [
        AnnotatedFrame(image.stem, image, mask)  # NAME.tif beside NAME.png: two frames of one name, refused
        for mask in files
        if mask.stem.endswith(MASKS_SUFFIX)
        for image in images.get(mask.stem.removesuffix(MASKS_SUFFIX), [])
    ]


def _npy_frames(root: Path) -> list[AnnotatedFrame]:
    images = _images_in(root / "images")
    frames = []
    for cells in sorted(p for p in (root / "masks").glob("*_mask_cells.npy") if not p.name.startswith(".")):
        prefix = cells.name.removesuffix("_mask_cells.npy")
        edges = cells.with_name(f"{prefix}_mask_edges.npy")
        image = next((p for p in images if _same_id(p.stem, prefix)), None)
        if image is None:
            continue
        if not edges.is_file():
            raise CellsegError(f"{edges}: missing; the npy layout needs *_mask_edges.npy too")
        frames.append(AnnotatedFrame(image.stem, image, cells, edges))
    return frames


def _same_id(stem: str, prefix: str) -> bool:
    """``phase_027`` matches ``image_027``: same name, or same part after the first '_'."""
    return stem == prefix or stem.split("_", 1)[-1] == prefix.split("_", 1)[-1]


def _ctc_frames(root: Path) -> list[AnnotatedFrame]:
    frames = []
    for seq in sorted(p for p in root.iterdir() if (root / f"{p.name}_GT" / "SEG").is_dir()):
        for mask in _images_in(root / f"{seq.name}_GT" / "SEG"):
            match = _CTC_SEG.match(mask.stem)
            if match is None:
                continue
            image = seq / f"t{match.group(1)}{mask.suffix}"
            if image.is_file():
                frames.append(AnnotatedFrame(f"{seq.name}_t{match.group(1)}", image, mask))
    return frames
