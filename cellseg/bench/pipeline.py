"""Prediction as predict.py runs it: per-frame times, end to end, bf16 agreement, memory."""

from __future__ import annotations

import os
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
from cellseg.data.synthetic import synthetic_frame
from cellseg.inference.predictor import Predictor
from cellseg.inference.run import PredictionRun

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


def end_to_end(predictor: Predictor, frames: list[np.ndarray], folder: Path) -> tuple[float, float]:
    """Seconds of a one-frame warm-up run (which compiles, where the predictor does), and
    seconds per frame of the folder run that follows: read, normalize, network,
    post-process, measure, write labels."""
    inputs = folder / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        tifffile.imwrite(inputs / f"f{index:03d}.tif", frame)
    paths = sorted(inputs.iterdir())
    start = time.perf_counter()
    PredictionRun(predictor, folder / "warmup", save_prob=False, save_overlay=False).run(paths[:1])
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    PredictionRun(predictor, folder / "out", save_prob=False, save_overlay=False).run(paths)
    return warmup, (time.perf_counter() - start) / len(frames)


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


def peak_memory_gb(ckpt: Path, folder: Path, device: str, side: int = 4096) -> float:
    """Peak resident memory (GB) of predict.py on one side x side image, in a fresh process."""
    image, _ = synthetic_frame(np.random.default_rng(0), side)
    tifffile.imwrite(folder / "big.tif", image)
    root = Path(__file__).resolve().parents[2]
    command = [
        sys.executable, str(root / "predict.py"), f"ckpt={ckpt}", f"input={folder / 'big.tif'}",
        f"output={folder / 'big_out'}", f"device={device}", "overwrite=true", f"hydra.run.dir={folder / 'hydra'}",
    ]  # fmt: skip
    with open(folder / "predict.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak, not the largest child's
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise RuntimeError(f"predict.py on the {side}^2 image failed:\n{(folder / 'predict.log').read_text()}")
    return usage.ru_maxrss / 1024**2


def normalized_tensor(predictor: Predictor, frame: np.ndarray) -> torch.Tensor:
    """One raw frame as the (1, 1, H, W) network input."""
    return torch.from_numpy(predictor.normalize(frame))[None, None]
