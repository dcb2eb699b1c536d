"""``make bench``: how close prediction and training come to this machine's compute bound.

In one process: matmul throughput (fp32, bf16) as the peak, the encoder's FLOPs for a
1024x1024 frame, and from them the compute bound; then per-frame times of a multi-frame
run (network and post-processing separately, and end to end with reading and writing)
for both models, bf16-vs-fp32 agreement, peak memory of a 4096x4096 prediction, and
training throughput. Prints a table and writes ``bench.json``.

Usage: ``python -m cellseg.bench [--ckpt PATH] [--run RUN_DIR] [--frames N] [--quick]``.
Without ``--ckpt``, untrained networks are timed (speed does not depend on the weights;
agreement is then measured on untrained outputs and says less).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
import torch
from rich.console import Console
from rich.table import Table
from torch.utils.flop_counter import FlopCounterMode

from cellseg import metrics
from cellseg.data.synthetic import synthetic_frame
from cellseg.inference.predictor import Predictor, resolve_precision
from cellseg.inference.run import PredictionRun
from cellseg.models.losses import EdgeWeightedBCE
from cellseg.models.module import CellSegModule

MODELS = {
    "googlenet_fcn": "cellseg.models.nets.googlenet_fcn.GoogLeNetFCN",
    "googlenet_skip": "cellseg.models.nets.googlenet_skip.GoogLeNetSkip",
}
GOWT1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "gowt1"


def device_name(device: torch.device) -> str:
    """The CPU model or GPU card."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or "cpu"
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{cpu}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_gflops(device: torch.device, dtype: torch.dtype, size: int = 2048, seconds: float = 2.0) -> float:
    """Sustained dense matmul throughput in GFLOP/s (a small matrix where bf16 is emulated)."""
    if dtype == torch.bfloat16 and device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        size = 256  # emulated bf16 runs below 1 GFLOP/s: a 2048^2 product takes a minute
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)
    _sync(device)
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        runs += 1
    _sync(device)
    return 2 * size**3 * runs / (time.perf_counter() - start) / 1e9


def encoder_gflops(side: int = 1024) -> float:
    """FLOPs of the GoogLeNet encoder on one side x side frame (2 per multiply-add)."""
    from cellseg.models.nets.encoder import GoogLeNetEncoder

    encoder = GoogLeNetEncoder().eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder(torch.zeros(1, 1, side, side))
    return counter.get_total_flops() / 1e9


def untrained_checkpoint(target: str, folder: Path) -> Path:
    """A checkpoint of an untrained model, saved the way training saves them."""
    module = CellSegModule(
        net={"_target_": target, "in_channels": 1, "out_channels": 2},
        loss={},
        optimizer={"_target_": "torch.optim.RMSprop", "lr": 1e-3},
        scheduler={"_target_": "cellseg.models.schedules.Cosine"},
        postprocess={"method": "threshold", "min_size": 15},
        data={"norm": {"low": 1.0, "high": 99.8}, "edge_width": 2, "in_channels": 1},
    )
    path = folder / f"{target.rsplit('.', 1)[-1]}.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def frame_times(predictor: Predictor, frames: list[np.ndarray], device: torch.device) -> dict[str, float]:
    """Median seconds per frame for the network and for post-processing (after a warm-up)."""
    predictor.labels(predictor.probabilities(frames[0]))
    network, post = [], []
    for frame in frames:
        start = time.perf_counter()
        prob = predictor.probabilities(frame)
        _sync(device)
        network.append(time.perf_counter() - start)
        start = time.perf_counter()
        predictor.labels(prob)
        post.append(time.perf_counter() - start)
    return {"network_s": statistics.median(network), "postprocess_s": statistics.median(post)}


def end_to_end(predictor: Predictor, frames: list[np.ndarray], folder: Path) -> float:
    """Seconds per frame of a folder run: read, normalize, network, post-process, write labels."""
    inputs = folder / "inputs"
    inputs.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        tifffile.imwrite(inputs / f"f{index:03d}.tif", frame)
    run = PredictionRun(predictor, folder / "out", save_prob=False, save_overlay=False, overwrite=True)
    start = time.perf_counter()
    run.run(sorted(inputs.iterdir()))
    return (time.perf_counter() - start) / len(frames)


def agreement(ckpt: Path, frames: list[np.ndarray], device: str) -> dict[str, float]:
    """bf16 vs fp32: cell counts and mean IoU of matched cells between the two label images."""
    fp32 = Predictor(ckpt, device=device, precision="fp32")
    bf16 = Predictor(ckpt, device=device, precision="bf16")
    same_count, ious = 0, []
    for frame in frames:
        a, b = fp32.labels(fp32.probabilities(frame)), bf16.labels(bf16.probabilities(frame))
        same_count += int(a.max() == b.max())
        ious.append(metrics.instance_metrics(a, b)["seg"])
    return {"frames": len(frames), "same_cell_count": same_count, "mean_iou": float(np.mean(ious))}


def peak_memory_4096(ckpt: Path, folder: Path, device: str) -> float:
    """Peak resident memory (GB) of predict.py on one 4096 x 4096 image, in a fresh process."""
    image, _ = synthetic_frame(np.random.default_rng(0), 4096)
    tifffile.imwrite(folder / "big.tif", image)
    root = Path(__file__).resolve().parents[1]
    command = [
        sys.executable, str(root / "predict.py"), f"ckpt={ckpt}", f"input={folder / 'big.tif'}",
        f"output={folder / 'big_out'}", f"device={device}", "overwrite=true", f"hydra.run.dir={folder / 'hydra'}",
    ]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    subprocess.run(command, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(after, before) / 1024**2


def training_crops_per_s(target: str, device: torch.device, dtype: torch.dtype | None, steps: int = 4) -> float:
    """Training throughput (crops/s) at crop 256, batch 8, fp32 or bf16-mixed."""
    from hydra.utils import instantiate

    net = instantiate({"_target_": target}).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.RMSprop(net.parameters(), lr=1e-4)
    criterion = EdgeWeightedBCE()
    x = torch.randn(8, 1, 256, 256, device=device).contiguous(memory_format=torch.channels_last)
    target_maps = torch.rand(8, 2, 256, 256, device=device).round()
    zeros, ones = torch.zeros(8, 256, 256, device=device), torch.ones(8, 256, 256, device=device)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = criterion(net(x), target_maps, zeros, ones)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return 8 / statistics.median(times[1:])


def time_to_best(run_dir: Path) -> dict[str, float] | None:
    """From a training run's validation.csv: when it reached its best val/seg."""
    history = run_dir / "validation.csv"
    if not history.is_file():
        return None
    rows = pd.read_csv(history)
    best = rows.loc[rows["val/seg"].idxmax()]
    return {"best_val_seg": float(best["val/seg"]), "step": int(best["step"]), "elapsed_s": float(best["elapsed_s"])}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, help="a trained googlenet_fcn checkpoint (for agreement and memory)")
    parser.add_argument("--run", type=Path, help="a mes_edge_weight run folder (time to best val/seg)")
    parser.add_argument("--frames", type=int, default=5, help="frames per timing (median)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--side", type=int, default=1024, help="frame side in px")
    parser.add_argument("--quick", action="store_true", help="2 synthetic frames; skip the 4096 and training parts")
    parser.add_argument("--output", type=Path, default=Path("bench.json"))
    args = parser.parse_args(argv)

    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))  # fmt: skip
    report: dict = {"device": device_name(device), "torch": torch.__version__}
    report["matmul_gflops"] = {"fp32": matmul_gflops(device, torch.float32),
                               "bf16": matmul_gflops(device, torch.bfloat16)}  # fmt: skip
    report["side"] = args.side
    report["encoder_gflops"] = encoder_gflops(args.side)
    auto_dtype = resolve_precision("auto", device)
    peak = report["matmul_gflops"]["bf16" if auto_dtype == torch.bfloat16 else "fp32"]
    report["precision_auto"] = str(auto_dtype or torch.float32).replace("torch.", "")
    report["compute_bound_s"] = report["encoder_gflops"] / peak

    n_frames = 2 if args.quick else args.frames
    rng = np.random.default_rng(0)
    frames = [synthetic_frame(rng, args.side)[0] for _ in range(n_frames + 1)]
    report["models"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, target in MODELS.items():
            ckpt = args.ckpt if (args.ckpt and name == "googlenet_fcn") else untrained_checkpoint(target, folder)
            predictor = Predictor(ckpt, device=str(device.type))
            times = frame_times(predictor, frames, device)
            times["end_to_end_s"] = end_to_end(predictor, frames[1:], folder / name)
            times["ratio_to_bound"] = times["end_to_end_s"] / report["compute_bound_s"]
            report["models"][name] = times
        fcn_ckpt = args.ckpt or untrained_checkpoint(MODELS["googlenet_fcn"], folder)
        use_real = GOWT1.is_dir() and not args.quick
        real = [tifffile.imread(p) for p in sorted((GOWT1 / "images").glob("*.tif"))] if use_real else []
        report["bf16_vs_fp32"] = agreement(fcn_ckpt, (real or frames)[: 2 if args.quick else 4], device.type)
        report["bf16_vs_fp32"]["data"] = "gowt1" if real else "synthetic"
        if not args.quick:
            report["peak_rss_gb_4096"] = peak_memory_4096(fcn_ckpt, folder, device.type)
            report["training_crops_per_s"] = {
                name: {
                    "fp32": training_crops_per_s(t, device, None),
                    "bf16_mixed": training_crops_per_s(t, device, torch.bfloat16, steps=2),
                }  # fmt: skip
                for name, t in MODELS.items()
            }
    if args.run:
        report["time_to_best"] = time_to_best(args.run)
    args.output.write_text(json.dumps(report, indent=2))
    print_table(report)
    return report


def print_table(report: dict) -> None:
    """The headline numbers as a table."""
    table = Table(title=f"cellseg bench on {report['device']} (precision auto = {report['precision_auto']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    mm = report["matmul_gflops"]
    table.add_row("matmul fp32 / bf16 (GFLOP/s)", f"{mm['fp32']:.0f} / {mm['bf16']:.0f}")
    table.add_row(f"encoder FLOPs, {report['side']}^2 frame (GFLOP)", f"{report['encoder_gflops']:.1f}")
    table.add_row("compute bound per frame (s)", f"{report['compute_bound_s']:.3f}")
    for name, t in report["models"].items():
        table.add_row(
            f"{name}: network / post-process / end to end (s)",
            f"{t['network_s']:.3f} / {t['postprocess_s']:.3f} / {t['end_to_end_s']:.3f}",
        )
        table.add_row(f"{name}: end to end / compute bound", f"{t['ratio_to_bound']:.2f}x")
    agree = report["bf16_vs_fp32"]
    table.add_row(
        f"bf16 vs fp32 ({agree['data']}, {agree['frames']} frames)",
        f"same count {agree['same_cell_count']}/{agree['frames']}, mean IoU {agree['mean_iou']:.4f}",
    )
    if "peak_rss_gb_4096" in report:
        table.add_row("peak memory, 4096^2 prediction (GB)", f"{report['peak_rss_gb_4096']:.2f}")
    for name, t in report.get("training_crops_per_s", {}).items():
        table.add_row(f"{name}: training crops/s fp32 / bf16-mixed", f"{t['fp32']:.1f} / {t['bf16_mixed']:.1f}")
    if report.get("time_to_best"):
        best = report["time_to_best"]
        table.add_row(
            "mes_edge_weight: time to best val/seg", f"{best['elapsed_s']:.0f} s ({best['best_val_seg']:.3f})"
        )
    Console(width=140).print(table)


if __name__ == "__main__":
    main()
