"""Movies as a user runs them: default outputs with tracking, tracking time, and peak memory
that must not grow with the movie's length."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import tifffile

from cellseg.bench.pipeline import PEAK_RSS_RUNNER
from cellseg.data.io import read_image
from cellseg.data.synthetic_movie import generate_movie
from cellseg.inference.inputs import plan_sources
from cellseg.inference.predictor import Predictor
from cellseg.inference.run import OutputOptions, PredictionRun
from cellseg.tracking.tracker import OverlapTracker
from cellseg.utils.task import path_override

GOWT1_MOVIE = Path(__file__).resolve().parents[3] / "shared" / "data" / "ctc" / "Fluo-N2DH-GOWT1" / "02"


def cells_for(side: int) -> int:
    """Nuclei of a synthetic side x side movie: 30 on a 1024^2 frame, as many per area on
    smaller ones (30 do not fit a 256^2 frame)."""
    return max(2, round(30 * side**2 / 1024**2))


def movie_frames(count: int, side: int) -> tuple[np.ndarray, str]:
    """``count`` consecutive frames: GOWT1 sequence 02 where present (1024 px), else a synthetic movie."""
    paths = sorted(GOWT1_MOVIE.glob("t*.tif"))[:count] if side == 1024 and GOWT1_MOVIE.is_dir() else []
    if len(paths) == count:
        return np.stack([read_image(p) for p in paths]), "gowt1 02"
    frames, _, _ = generate_movie(n_frames=count, shape=(side, side), n_cells=min(30, cells_for(side)), seed=0)
    return frames, "synthetic"


def default_run(predictor: Predictor, frames: np.ndarray, folder: Path, repeats: int = 3) -> dict:
    """Seconds per frame of ``predict.py``'s default outputs on a movie: labels, probabilities,
    overlays every 10th frame, tracking, tracks tables, CTC folder and plots, after a
    two-frame warm-up run. ``movie_default_s``: the whole run over its frames, the fixed costs
    of a movie (the plots, the tracks tables) included; ``movie_margin_s``: what one more frame
    adds, from the difference with a run of the first quarter of the frames (at least 2).
    The short and whole runs alternate ``repeats`` times and each figure is the median: one
    pair of runs on a 2-core VM put the margin anywhere in +-10 % (``movie_margin_runs_s``
    keeps every pair's)."""
    folder.mkdir(parents=True, exist_ok=True)
    short = max(2, len(frames) // 4)
    if len(frames) <= short:
        raise ValueError(f"a movie of {len(frames)} frames: at least {short + 1} are needed")
    movies = {"warmup": frames[:2], "short": frames[:short], "movie": frames}
    for name, pages in movies.items():
        tifffile.imwrite(folder / f"{name}.tif", pages, photometric="minisblack")

    def seconds(name: str, run: int) -> float:
        start = time.perf_counter()
        sources = plan_sources(str(folder / f"{name}.tif"), "auto", None)
        out = folder / f"{name}_out{run}"
        PredictionRun(predictor, out, OutputOptions(), make_tracker=OverlapTracker).run(sources)
        return time.perf_counter() - start

    seconds("warmup", 0)
    pairs = [(seconds("short", run), seconds("movie", run)) for run in range(repeats)]
    margins = [(whole - part) / (len(frames) - short) for part, whole in pairs]
    return {
        "movie_default_s": statistics.median(whole / len(frames) for _, whole in pairs),
        "movie_margin_s": statistics.median(margins),
        "movie_margin_runs_s": margins,
    }


def tracking_ms(n_cells: int | None = None, side: int = 1024, n_frames: int = 20) -> float:
    """Median milliseconds of one tracker update for ``n_cells`` cells (default
    :func:`cells_for`: 30 at 1024^2) on a ``side``^2 frame."""
    n_cells = n_cells or cells_for(side)
    _, labels, _ = generate_movie(n_frames=n_frames, shape=(side, side), n_cells=n_cells, divide_at=None, seed=8)
    tracker = OverlapTracker()
    times = []
    for frame in labels:
        start = time.perf_counter()
        tracker.update(frame)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times[1:])


def packed_frames(side: int, pitch: int, n_frames: int) -> list[np.ndarray]:
    """Frames packed with a grid of (side / pitch)^2 round cells a few px apart, moving 2 px a
    frame: a dense colony, or a whole-slide frame of bacteria."""
    centre = np.arange(side) % pitch - pitch / 2
    inside = centre[:, None] ** 2 + centre[None, :] ** 2 <= (pitch / 2 - 3) ** 2
    cell = np.arange(side) // pitch
    labels = np.where(inside, cell[:, None] * (side // pitch) + cell[None, :] + 1, 0).astype(np.uint32)
    return [np.roll(labels, 2 * t, axis=(0, 1)) for t in range(n_frames)]


def dense_tracking(side: int = 4096, pitch: int = 64) -> dict:
    """One tracker update on :func:`packed_frames` ((side / pitch)^2 cells): milliseconds, and
    the peak memory numpy allocated for it (MB, tracemalloc)."""
    first, second = packed_frames(side, pitch, 2)
    tracker = OverlapTracker()
    tracker.update(first)
    tracemalloc.start()
    start = time.perf_counter()
    tracker.update(second)
    seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"cells": (side // pitch) ** 2, "side": side, "ms": 1000 * seconds, "peak_mb": peak / 2**20}


def write_long_movie(path: Path, frames: np.ndarray, count: int) -> None:
    """A ``count``-frame TIFF made of ``frames`` in turn, written page by page."""
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        pages = (frames[i % len(frames)] for i in range(count))
        tif.write(pages, shape=(count, *frames.shape[1:]), dtype=frames.dtype, photometric="minisblack")


def movie_peak_gb(ckpt: Path, frames: np.ndarray, counts: tuple[int, ...], folder: Path, device: str) -> dict:
    """Peak resident memory (GB) of ``predict.py`` with default options on movies of each
    length in ``counts``, each in a fresh process."""
    peaks = {}
    folder.mkdir(parents=True, exist_ok=True)
    for count in counts:
        movie = folder / f"movie_{count}.tif"
        write_long_movie(movie, frames, count)
        command = [
            sys.executable, "-c", PEAK_RSS_RUNNER, str(Path(__file__).resolve().parents[2] / "predict.py"),
            path_override("ckpt", ckpt), path_override("input", movie),
            path_override("output", folder / f"out_{count}"), f"device={device}",
            path_override("hydra.run.dir", folder / "hydra"),
            "compile=false",  # compiling is a constant, not a length cost
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        peak = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("VmHWM")]
        if result.returncode or not peak:
            raise RuntimeError(f"predict.py on the {count}-frame movie failed:\n{result.stdout}\n{result.stderr}")
        peaks[count] = int(peak[0]) * 1024 / 1e9
        movie.unlink()
    return peaks
