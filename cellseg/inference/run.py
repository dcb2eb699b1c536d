"""Run a predictor over files, folders, globs and stacks; write labels, probabilities,
overlays and one measurements table. The next file is read while the current one is
segmented."""

from __future__ import annotations

import glob
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import tifffile
from rich.progress import Progress

from cellseg.data.io import as_2d, is_image_file, read_image
from cellseg.errors import CellsegError
from cellseg.evaluate import Evaluator
from cellseg.inference.predictor import Predictor
from cellseg.measure import COLUMNS, measure
from cellseg.visualize import outline_overlay


def find_inputs(spec: str) -> list[Path]:
    """Files named by ``spec``: one file, every image in a folder, or a glob."""
    path = Path(spec)
    if path.is_dir():
        found = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
        if not found:
            raise CellsegError(f"{path}: no supported images (.tif, .tiff, .png, .npy) in this folder")
        return found
    if path.is_file():
        return [path]
    if glob.has_magic(spec):
        found = sorted(Path(p) for p in glob.glob(spec) if is_image_file(Path(p)))
        if found:
            return found
        raise CellsegError(f"{spec}: no supported images match this pattern")
    raise CellsegError(f"{spec}: input not found; pass input=FILE, FOLDER or a quoted glob")


def default_output(spec: str, inputs: list[Path]) -> Path:
    """``cellseg_out/`` inside an input folder, else beside the input files."""
    path = Path(spec)
    return (path if path.is_dir() else inputs[0].parent) / "cellseg_out"


def stack_length(shape: tuple[int, ...]) -> int:
    """Frames in an image of ``shape``: T for a (T, Y, X) stack (singleton axes aside), else 1."""
    squeezed = [n for n in shape if n != 1]
    return squeezed[0] if len(squeezed) == 3 and squeezed[-1] not in (3, 4) else 1


def as_frames(image: np.ndarray, path: Path) -> np.ndarray:
    """(T, Y, X) frames of a single image or a multi-page stack."""
    if stack_length(image.shape) > 1:
        return np.squeeze(image)
    return as_2d(image, path)[None]


def count_frames(paths: list[Path]) -> int:
    """Frames in all ``paths``, from TIFF and NPY headers (no pixels read); 1 per other file
    and per file whose header cannot be read (reading it will report why)."""
    total = 0
    for path in paths:
        try:
            if path.suffix.lower() in (".tif", ".tiff"):
                with tifffile.TiffFile(path) as tif:
                    shape = tif.series[0].shape
            elif path.suffix.lower() == ".npy":
                shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
            else:
                shape = ()
        except Exception:  # a broken file counts as one frame here; reading it reports why
            shape = ()
        total += stack_length(shape)
    return total


@dataclass
class Outputs:
    """Where one input's results go."""

    labels: Path
    prob: Path
    overlays: list[Path] = field(default_factory=list)

    @classmethod
    def for_input(cls, out_dir: Path, stem: str, n_frames: int) -> Outputs:
        overlays = (
            [out_dir / f"{stem}_overlay.png"]
            if n_frames == 1
            else [out_dir / f"{stem}_t{t:03d}_overlay.png" for t in range(n_frames)]
        )
        return cls(out_dir / f"{stem}_labels.tif", out_dir / f"{stem}_prob.tif", overlays)


def _commit(tmp: Path, final: Path) -> None:
    os.replace(tmp, final)


def _write_tif(path: Path, array: np.ndarray) -> None:
    """Write a (T,)Y,X array as one compressed TIFF series, under its final name only when done."""
    tmp = path.with_suffix(".tmp")
    tifffile.imwrite(tmp, array, compression="zlib", photometric="minisblack")
    _commit(tmp, path)


def prefetch(paths: list[Path]) -> Iterator[tuple[Path, Future]]:
    """Yield each path with its image being read in the background, the next one ahead."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(read_image, paths[0]) if paths else None
        for index, path in enumerate(paths):
            current = ahead
            ahead = pool.submit(read_image, paths[index + 1]) if index + 1 < len(paths) else None
            yield path, current


@dataclass
class RunStats:
    """What the summary line reports."""

    images: int = 0
    frames: int = 0
    cells: int = 0
    seconds: float = 0.0
    failed: list[str] = field(default_factory=list)
    metrics: dict | None = None  # with ground truth: the overall evaluation


class PredictionRun:
    """Segment every input with one predictor; files appear only when complete."""

    def __init__(
        self,
        predictor: Predictor,
        out_dir: Path,
        save_prob: bool = True,
        save_overlay: bool = True,
        overwrite: bool = False,
        evaluator: Evaluator | None = None,
    ):
        self.predictor = predictor
        self.evaluator = evaluator
        self.out_dir = out_dir
        self.save_prob = save_prob
        self.save_overlay = save_overlay
        self.overwrite = overwrite
        self.stats = RunStats()
        self.tables: list[pd.DataFrame] = []

    def prepare(self) -> Path:
        """Create the output folder, check it is writable; return the measurements path."""
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / ".cellseg_write_test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise CellsegError(
                f"{self.out_dir}: output folder cannot be written ({err.strerror}); set output=DIR"
            ) from err
        table = self.out_dir / "measurements.csv"
        if table.exists() and not self.overwrite:
            raise CellsegError(f"{table}: exists already; pass overwrite=true or choose another output=DIR")
        return table

    def run(self, inputs: list[Path]) -> RunStats:
        """Process all inputs; one that fails is reported on stderr and skipped."""
        table = self.prepare()
        with Progress(transient=True) as progress:
            task = progress.add_task("images", total=len(inputs), visible=len(inputs) > 1)
            for path, image in prefetch(inputs):
                try:
                    self.process(path, image.result(), progress)
                except CellsegError as err:
                    print(f"cellseg: error: {err}", file=sys.stderr)
                    self.stats.failed.append(str(path))
                progress.advance(task)
        frame = pd.concat(self.tables) if self.tables else pd.DataFrame(columns=COLUMNS)
        tmp = table.with_suffix(".csv.tmp")
        frame.to_csv(tmp, index=False)
        _commit(tmp, table)
        if self.evaluator is not None and self.stats.images:
            self.stats.metrics = self.evaluator.finish()
        return self.stats

    def process(self, path: Path, image: np.ndarray, progress: Progress | None = None) -> None:
        """Segment one file (all its frames), with a progress bar over the frames of a stack."""
        frames = as_frames(image, path)
        truth = self.evaluator.masks_for(path, len(frames), frames.shape[1:]) if self.evaluator else None
        outputs = Outputs.for_input(self.out_dir, path.stem, len(frames))
        planned = [outputs.labels, *(outputs.overlays if self.save_overlay else [])]
        planned += [outputs.prob] if self.save_prob else []
        existing = [p for p in planned if p.exists()]
        if existing and not self.overwrite:
            raise CellsegError(f"{existing[0]}: exists already; pass overwrite=true to replace it")
        start = time.perf_counter()
        all_labels, all_probs = [], []
        frame_task = progress.add_task(path.name, total=len(frames)) if progress and len(frames) > 1 else None
        for index, raw in enumerate(frames):
            name = f"{path}" if len(frames) == 1 else f"{path} frame {index}"
            normalized = self.predictor.normalize(raw, name)
            prob = self.predictor.predict_normalized(normalized)
            labels = self.predictor.labels(prob)
            all_labels.append(labels)
            if self.save_prob:
                all_probs.append(np.clip(prob[0] + prob[1], 0, 1).astype(np.float16))
            if self.save_overlay:
                iio.imwrite(outputs.overlays[index], outline_overlay(normalized, labels))
            self.tables.append(measure(labels, raw, path.name, index))
            self.stats.cells += int(labels.max())
            if truth is not None:
                stem = path.stem if len(frames) == 1 else f"{path.stem}_t{index:03d}"
                self.evaluator.add(stem, normalized, truth[index], prob, labels)
            if frame_task is not None:
                progress.advance(frame_task)
        if frame_task is not None:
            progress.remove_task(frame_task)
        dtype = np.uint32 if max(int(lab.max()) for lab in all_labels) >= 2**16 else np.uint16
        _write_tif(outputs.labels, np.squeeze(np.stack(all_labels).astype(dtype), axis=0 if len(frames) == 1 else ()))
        if self.save_prob:
            _write_tif(outputs.prob, np.squeeze(np.stack(all_probs), axis=0 if len(frames) == 1 else ()))
        self.stats.images += 1
        self.stats.frames += len(frames)
        self.stats.seconds += time.perf_counter() - start
