"""``make bench``: how close prediction and training come to this machine's compute bound.

In one process: the best fp32 and bf16 matmul throughput as the peak, the encoder's FLOPs
per frame and from them the compute bound; then, per model, network and post-processing
times per frame (median after warm-up) and end-to-end time per frame of a multi-frame
folder run on real GOWT1 frames where ``../shared/data`` has them; for the faithful model
the time of each encoder stage and of the head in fp32 and bf16, and its network time as
each optimisation is added (torch.compile included, with its compile time); bf16-vs-fp32
agreement; a movie with ``predict.py``'s default outputs and tracking, per frame in all and
at the margin (one more frame); tracking time for 30 cells, and time and memory for 4096
packed cells; peak memory of a long movie against one a tenth as long and of a 4096x4096
prediction; training throughput. Prints a table
and writes ``bench.json``. Runs on a GPU when one is present and names the card.

Usage: ``python -m cellseg.bench [--ckpt FCN.ckpt] [--skip-ckpt SKIP.ckpt] [--run RUN_DIR]
[--frames N] [--quick]``. Without checkpoints, untrained networks are timed (speed does
not depend on the weights, but post-processing time depends on what is found, and
agreement is then measured on untrained outputs and says less).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import NoReturn

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from cellseg.bench import ablation, hardware, movie, pipeline, training
from cellseg.checkpoint import load_checkpoint
from cellseg.errors import CellsegError
from cellseg.inference.malloc import keep_freed_memory
from cellseg.inference.predictor import Predictor, load_net, resolve_precision, saved_threshold
from cellseg.models.module import CellSegModule
from cellseg.models.nets.encoder import GoogLeNetEncoder
from cellseg.models.registry import build_net
from cellseg.outputs.atomic import write_json
from cellseg.utils.subnormals import flush_subnormals_to_zero

MODELS = {
    "googlenet_fcn": "cellseg.models.nets.googlenet_fcn.GoogLeNetFCN",
    "googlenet_skip": "cellseg.models.nets.googlenet_skip.GoogLeNetSkip",
}


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


def compiled_run(ckpt: Path, device: torch.device, paths: list[Path], folder: Path, warmup: float, eager: dict) -> dict:
    """End to end with the encoder compiled (``compile=true``): seconds per frame, the
    compile time (the compiled warm-up run less the eager one) and the run length from
    which compiling pays for itself."""
    predictor = Predictor(ckpt, device=device.type, compile_encoder=True)
    compiled_warmup, per_frame = pipeline.end_to_end(predictor, paths, folder)
    compile_s = compiled_warmup - warmup
    gain = eager["end_to_end_s"] - per_frame
    return {
        "end_to_end_compiled_s": per_frame,
        "compile_s": compile_s,
        "compile_break_even_frames": compile_s / gain if gain > 0 else None,
    }


class OneLineParser(argparse.ArgumentParser):
    """argparse with its errors as one :class:`CellsegError` line instead of usage text."""

    def error(self, message: str) -> NoReturn:
        raise CellsegError(f"{message}; python -m cellseg.bench --help lists the options")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, help="a trained googlenet_fcn checkpoint")
    parser.add_argument("--skip-ckpt", type=Path, help="a trained googlenet_skip checkpoint")
    parser.add_argument("--run", type=Path, help="a mes_edge_weight run folder (time to best val/seg)")
    parser.add_argument(
        "--frames", type=int, help="frames per timing (median / end-to-end mean; default 8, 2 with --quick)"
    )
    parser.add_argument(
        "--movie-frames", type=int, default=16, help="frames of the default-options movie (and a quarter: the margin)"
    )
    parser.add_argument("--long-movie", type=int, default=1000, help="peak memory: N frames vs N/10 (0: skip)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--side", type=int, default=1024, help="frame side in px")
    parser.add_argument("--quick", action="store_true", help="synthetic frames; no ablation, 4096^2 or training")
    parser.add_argument("--output", type=Path, default=Path("bench.json"))
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --output")
    args = parser.parse_args(argv)
    if args.frames is None:
        args.frames = 2 if args.quick else 8
    return args


def check_args(args: argparse.Namespace) -> None:
    """Refuse, before minutes of measuring, what would fail later or lose an earlier report."""
    for name, value, low in (
        ("side", args.side, 32),
        ("frames", args.frames, 1),
        ("movie-frames", args.movie_frames, 4),
    ):
        if value < low or (name == "side" and value % 32):
            kind = "a multiple of 32 from 32" if name == "side" else f"at least {low}"
            raise CellsegError(f"--{name} {value}: must be {kind}")
    if args.long_movie and args.long_movie < 10:
        raise CellsegError(f"--long-movie {args.long_movie}: 0 (skip) or at least 10 frames")
    if args.device not in ("auto", "cpu", "cuda"):
        raise CellsegError(f"--device {args.device}: use auto, cpu or cuda")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise CellsegError("--device cuda: no CUDA GPU is visible; use --device cpu or auto")
    for flag, path, name in (("--ckpt", args.ckpt, "googlenet_fcn"), ("--skip-ckpt", args.skip_ckpt, "googlenet_skip")):
        if path is not None:
            checkpoint = load_checkpoint(path)
            load_net(checkpoint, path)  # its spec and every weight, before any measuring
            saved_threshold(checkpoint, path)
            target = checkpoint["hyper_parameters"]["net"]["_target_"]
            if target != MODELS[name]:
                raise CellsegError(f"{flag} {path}: holds a {target.rsplit('.', 1)[-1]}, not a {name} checkpoint")
    if args.run is not None:
        history = args.run / "validation.csv"
        if not history.is_file():
            raise CellsegError(f"--run {args.run}: no validation.csv there; give a train.py run folder")
        try:
            rows = pd.read_csv(history)
        except (ValueError, UnicodeDecodeError) as err:  # pandas' EmptyDataError and ParserError included
            raise CellsegError(f"{history}: cannot be read ({type(err).__name__}); give a train.py run folder") from err
        if not {"step", "elapsed_s", "val/seg"} <= set(rows.columns):
            raise CellsegError(f"{history}: no step, elapsed_s and val/seg columns; give a train.py run folder")
        if pd.to_numeric(rows["val/seg"], errors="coerce").isna().all():
            raise CellsegError(f"{history}: no validation row with a val/seg; give a run that validated")
    if not args.output.parent.is_dir():
        raise CellsegError(f"--output {args.output}: its folder does not exist")
    if args.output.is_dir():
        raise CellsegError(f"--output {args.output}: is a folder; give the report's file name, e.g. bench.json")
    if args.output.exists() and not args.overwrite:
        raise CellsegError(
            f"--output {args.output}: exists already; pass --overwrite to replace it or another --output"
        )


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    flush_subnormals_to_zero()  # as predict.py does, before PyTorch starts its threads
    check_args(args)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    report: dict = {"device": hardware.device_name(device), "torch": torch.__version__, "side": args.side}
    report["matmul_gflops"] = {
        "fp32": hardware.matmul_gflops(device, torch.float32),
        "bf16": hardware.matmul_gflops(device, torch.bfloat16),
    }
    report["encoder_gflops"] = hardware.gflops(GoogLeNetEncoder().eval(), args.side)
    auto = resolve_precision("auto", device)
    report["precision_auto"] = str(auto or torch.float32).removeprefix("torch.")
    peak = report["matmul_gflops"]["bf16" if auto == torch.bfloat16 else "fp32"]
    report["compute_bound_s"] = report["encoder_gflops"] / peak

    frames, source = pipeline.bench_frames(args.side, args.frames, real=not args.quick)
    report["frames"] = {"source": source, "count": len(frames)}
    report["models"] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        given = {"googlenet_fcn": args.ckpt, "googlenet_skip": args.skip_ckpt}
        ckpts = {name: given[name] or untrained_checkpoint(target, folder) for name, target in MODELS.items()}
        fcn_checkpoint = load_checkpoint(ckpts["googlenet_fcn"])
        fcn_net = load_net(fcn_checkpoint, ckpts["googlenet_fcn"])
        frame = pipeline.normalized_tensor(fcn_checkpoint, frames[0])
        paths = pipeline.write_frames(frames, folder / "inputs")
        if not args.quick:  # first: predictors change malloc's settings for the whole process
            report["ablation"] = ablation.ablation(fcn_net, frame, device)
            for row in report["ablation"]:
                row["ratio_to_bound"] = row["network_s"] / report["compute_bound_s"]
        report["stages_ms"] = ablation.stage_times(fcn_net, frame, device)
        if device.type == "cpu":
            keep_freed_memory()  # as predict.py does
        for name, ckpt in ckpts.items():
            predictor = Predictor(ckpt, device=device.type)
            times = pipeline.frame_times(predictor, frames)
            warmup, times["end_to_end_s"] = pipeline.end_to_end(predictor, paths, folder / name)
            times["ratio_to_bound"] = times["end_to_end_s"] / report["compute_bound_s"]
            if name == "googlenet_fcn" and not args.quick:
                times.update(compiled_run(ckpt, device, paths, folder / f"{name}_compiled", warmup, times))
            if name == "googlenet_fcn":
                movie_frames, movie_source = movie.movie_frames(4 if args.quick else args.movie_frames, args.side)
                repeats = 1 if args.quick else 3
                times.update(movie.default_run(predictor, movie_frames, folder / f"{name}_movie", repeats))
                times["movie_ratio_to_bound"] = times["movie_default_s"] / report["compute_bound_s"]
                times["movie_margin_ratio_to_bound"] = times["movie_margin_s"] / report["compute_bound_s"]
                report["movie"] = {"source": movie_source, "frames": len(movie_frames)}
            times["network_gflops"] = hardware.gflops(build_net({"_target_": MODELS[name]}).eval(), args.side)
            times["trained"] = given[name] is not None
            report["models"][name] = times
        agree_frames = frames[:2] if args.quick else frames[:4]
        report["bf16_vs_fp32"] = pipeline.agreement(ckpts["googlenet_fcn"], agree_frames, device.type)
        report["bf16_vs_fp32"]["data"] = source
        report["tracking_ms_30_cells"] = movie.tracking_ms(side=args.side)
        report["tracking_dense"] = movie.dense_tracking()
        if not args.quick and args.long_movie:
            counts = (args.long_movie // 10, args.long_movie)
            report["movie_peak_rss_gb"] = movie.movie_peak_gb(
                ckpts["googlenet_fcn"], movie_frames, counts, folder / "long", device.type
            )
        if not args.quick:
            report["peak_rss_gb_4096"] = pipeline.peak_memory_gb(ckpts["googlenet_fcn"], folder, device.type)
            report["training_crops_per_s"] = {
                name: {"fp32": training.crops_per_s(target, device, bf16=False),
                       "bf16_mixed": training.crops_per_s(target, device, bf16=True)}
                for name, target in MODELS.items()
            }  # fmt: skip
    if args.run:
        report["time_to_best"] = training.time_to_best(args.run)
    write_json(args.output, report)  # by rename: an interrupted write keeps the earlier report
    print_report(report)
    return report


def print_report(report: dict) -> None:
    """The headline numbers, the per-stage times and the ablation as tables."""
    console = Console(width=150)
    table = Table(title=f"cellseg bench on {report['device']} (precision auto = {report['precision_auto']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    mm = report["matmul_gflops"]
    table.add_row("matmul peak fp32 / bf16 (GFLOP/s)", f"{mm['fp32']:.0f} / {mm['bf16']:.0f}")
    table.add_row(f"encoder FLOPs, {report['side']}^2 frame (GFLOP)", f"{report['encoder_gflops']:.1f}")
    table.add_row("compute bound per frame (s)", f"{report['compute_bound_s']:.3f}")
    frames = report["frames"]
    for name, t in report["models"].items():
        table.add_row(
            f"{name}{'' if t['trained'] else ' (untrained)'}: network / post-process / end to end (s), "
            f"{frames['count']} {frames['source']} frames",
            f"{t['network_s']:.3f} / {t['postprocess_s']:.3f} / {t['end_to_end_s']:.3f}",
        )
        table.add_row(f"{name}: end to end / compute bound", f"[bold]{t['ratio_to_bound']:.2f}x[/bold]")
        if "end_to_end_compiled_s" in t:
            even = t["compile_break_even_frames"]
            table.add_row(
                f"{name} compile=true: end to end (s) / compile time (s) / pays off after",
                f"{t['end_to_end_compiled_s']:.3f} / {t['compile_s']:.0f} / "
                + (f"{even:.0f} frames" if even is not None else "never"),
            )
    agree = report["bf16_vs_fp32"]
    table.add_row(
        f"bf16 vs fp32 ({agree['data']}, {agree['frames']} frames)",
        f"same count {agree['same_cell_count']}/{agree['frames']}, mean IoU {agree['mean_iou']:.4f}",
    )
    for name, t in report["models"].items():
        if "movie_default_s" in t:
            source = report["movie"]
            table.add_row(
                f"{name}: movie, default outputs + tracking (s/frame), {source['frames']} {source['source']} frames",
                f"{t['movie_default_s']:.3f} = {t['movie_ratio_to_bound']:.2f}x the bound",
            )
            runs = t["movie_margin_runs_s"]
            spread = f" (runs {min(runs):.3f}-{max(runs):.3f})" if len(runs) > 1 else ""
            table.add_row(
                f"{name}: movie, one more frame at the margin (s), median of {len(runs)}",
                f"{t['movie_margin_s']:.3f} = [bold]{t['movie_margin_ratio_to_bound']:.2f}x[/bold] the bound{spread}",
            )
    side = report["side"]
    table.add_row(
        f"tracking, {movie.cells_for(side)} cells on a {side}^2 frame (ms per frame)",
        f"{report['tracking_ms_30_cells']:.1f}",
    )
    dense = report["tracking_dense"]
    table.add_row(
        f"tracking, {dense['cells']} packed cells on a {dense['side']}^2 frame: ms per frame / peak MB",
        f"{dense['ms']:.0f} / {dense['peak_mb']:.0f}",
    )
    for count, gb in report.get("movie_peak_rss_gb", {}).items():
        table.add_row(f"peak memory, {count}-frame movie, default outputs (GB)", f"{gb:.2f}")
    if "peak_rss_gb_4096" in report:
        table.add_row("peak memory, 4096^2 prediction (GB)", f"{report['peak_rss_gb_4096']:.2f}")
    for name, t in report.get("training_crops_per_s", {}).items():
        table.add_row(f"{name}: training crops/s fp32 / bf16-mixed", f"{t['fp32']:.1f} / {t['bf16_mixed']:.1f}")
    if report.get("time_to_best"):
        best = report["time_to_best"]
        table.add_row(
            "mes_edge_weight: time to best val/seg",
            f"{best['elapsed_s']:.0f} s, step {best['step']} ({best['best_val_seg']:.3f})",
        )
    console.print(table)

    stages = Table(title="googlenet_fcn per stage (ms per frame, as predict.py runs it)")
    stages.add_column("stage")
    for precision in ("fp32", "bf16"):
        stages.add_column(precision, justify="right")
    for name, times in report["stages_ms"].items():
        stages.add_row(name, *(f"{times[p]:.1f}" if p in times else "-" for p in ("fp32", "bf16")))
    console.print(stages)

    if "ablation" in report:
        steps = Table(title="googlenet_fcn network time per frame as each optimisation is added")
        steps.add_column("variant")
        steps.add_column("network (s)", justify="right")
        steps.add_column("/ compute bound", justify="right")
        for row in report["ablation"]:
            note = f" (compiled in {row['compile_s']:.0f} s)" if "compile_s" in row else ""
            steps.add_row(row["variant"] + note, f"{row['network_s']:.3f}", f"{row['ratio_to_bound']:.2f}x")
        console.print(steps)
