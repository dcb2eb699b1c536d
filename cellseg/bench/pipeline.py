"""Prediction as predict.py runs it: per-frame times, end to end, bf16 agreement, memory."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from cellseg import metrics
from cellseg.bench.hardware import sync
from cellseg.data.io import read_image
from cellseg.data.normalize import percentile_normalize
from cellseg.data.synthetic import synthetic_frame
from cellseg.inference.inputs import plan_sources
from cellseg.inference.predictor import Predictor
from cellseg.inference.run import OutputOptions, PredictionRun
from cellseg.utils.task import path_override

GOWT1 = Path(__file__).resolve().parents[3] / "shared" / "data" / "gowt1"


def bench_frames(side: int, count: int, real: bool) -> tuple[list[np.ndarray], str]:
    """``count`` raw frames: the GOWT1 frames in turn where present (and side is 1024),
    else synthetic ones; and the name of their source."""
    paths = sorted((GOWT1 / "images").glob("*.tif")) if real and side == 1024 and GOWT1.is_dir() else []
    if paths:
        images = [read_image(p) for p in paths]
        return [images[i % len(images)] for i in range(count)], "gowt1"
    rng = np.random.default_rng(0)
    return [synthetic_frame(rng, side)[0] for _ in range(count)], "synthetic"


def frame_times(predictor: Predictor, frames: list[np.ndarray]) -> dict[str, float]:
    """Median seconds per frame for the network and for post-processing (after a warm-up)."""
    predictor.labels(predictor.probabilities(frames[0]))
    network, post = [], []
    for frame in frames:
        start = time.perf_counter()
        prob = predictor.probabilities(frame)
        sync(predictor.device)
        network.append(time.perf_counter() - start)
        start = time.perf_counter()
        predictor.labels(prob)
        post.append(time.perf_counter() - start)
    return {"network_s": statistics.median(network), "postprocess_s": statistics.median(post)}


def write_frames(frames: list[np.ndarray], folder: Path) -> list[Path]:
    """The frames as one TIFF each in ``folder``, the input of the end-to-end runs."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"f{index:03d}.tif" for index in range(len(frames))]
    for path, frame in zip(paths, frames):
        tifffile.imwrite(path, frame)
    return paths


def end_to_end(predictor: Predictor, paths: list[Path], folder: Path) -> tuple[float, float]:
    """Seconds of a one-frame warm-up run (which compiles, where the predictor does), and
    seconds per frame of the folder run of ``paths`` that follows: read, normalize,
    network, post-process, measure, write labels (results go to ``folder``)."""
    labels_only = OutputOptions(save_prob=False, save_overlay=False)
    start = time.perf_counter()
    PredictionRun(predictor, folder / "warmup", labels_only).run(plan_sources(str(paths[0]), False, None))
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    sources = [source for path in paths for source in plan_sources(str(path), False, None)]
    PredictionRun(predictor, folder / "out", labels_only).run(sources)
    return warmup, (time.perf_counter() - start) / len(paths)


def agreement(ckpt: Path, frames: list[np.ndarray], device: str) -> dict[str, float]:
    """bf16 vs fp32: cell counts, and the mean IoU of the fp32 cells with their bf16 match
    (CTC SEG of the bf16 labels against the fp32 ones)."""
    fp32 = Predictor(ckpt, device=device, precision="fp32")
    bf16 = Predictor(ckpt, device=device, precision="bf16")
    same_count, ious = 0, []
    for frame in frames:
        a, b = fp32.labels(fp32.probabilities(frame)), bf16.labels(bf16.probabilities(frame))
        same_count += int(a.max() == b.max())
        ious.append(metrics.instance_metrics(a, b)["seg"])
    return {"frames": len(frames), "same_cell_count": same_count, "mean_iou": float(np.mean(ious))}


# Runs a script and then prints its peak resident memory. VmHWM belongs to the process's
# own address space; ru_maxrss would also count the pages of the (large) benchmark process
# it was forked from, which Linux carries over at exec.
PEAK_RSS_RUNNER = """
import runpy, sys
script, sys.argv = sys.argv[1], sys.argv[1:]
try:
    runpy.run_path(script, run_name="__main__")
finally:
    with open("/proc/self/status") as status:
        print(next(line for line in status if line.startswith("VmHWM")), flush=True)
"""


def peak_memory_gb(ckpt: Path, folder: Path, device: str, side: int = 4096) -> float | None:
    """Peak resident memory (GB) of predict.py on one side x side image, in a fresh process
    (None where /proc is missing)."""
    if not Path("/proc/self/status").is_file():
        return None
    image, _ = synthetic_frame(np.random.default_rng(0), side)
    tifffile.imwrite(folder / "big.tif", image)
    root = Path(__file__).resolve().parents[2]
    command = [
        sys.executable, "-c", PEAK_RSS_RUNNER, str(root / "predict.py"), path_override("ckpt", ckpt),
        path_override("input", folder / "big.tif"), path_override("output", folder / "big_out"), f"device={device}",
        "overwrite=true", path_override("hydra.run.dir", folder / "hydra"),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    peak = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("VmHWM")]
    if result.returncode or not peak:
        raise RuntimeError(f"predict.py on the {side}^2 image failed:\n{result.stdout}\n{result.stderr}")
    return int(peak[0]) * 1024 / 1e9


def normalized_tensor(checkpoint: dict, frame: np.ndarray) -> torch.Tensor:
    """One raw frame as the (1, 1, H, W) input of the network of ``checkpoint``."""
    norm = checkpoint["hyper_parameters"]["data"]["norm"]
    return torch.from_numpy(percentile_normalize(frame, norm["low"], norm["high"]))[None, None]
