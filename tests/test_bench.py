"""The benchmark's arithmetic against hand-worked numbers, and its report (no speed assertions)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import types

import numpy as np
import pytest
import tifffile
import torch
from torch import nn

from cellseg import bench
from cellseg.bench import ablation, hardware, movie, training
from cellseg.errors import CellsegError
from cellseg.inference.predictor import resolve_precision
from cellseg.models.nets.encoder import GoogLeNetEncoder
from cellseg.models.nets.googlenet_fcn import GoogLeNetFCN

from .conftest import ROOT, calibrate_batchnorm


class FakeClock:
    """A ``time`` module stand-in whose clock moves only when told to (or along a script)."""

    def __init__(self, script: list[float] | None = None):
        self.now, self.script = 0.0, list(script or [])

    def perf_counter(self) -> float:
        if self.script:
            self.now = self.script.pop(0)
        return self.now


def conv_flops(net: nn.Module, side: int) -> float:
    """FLOPs of every Conv2d of ``net`` on a side x side frame, counted from the output
    shapes: 2 x (input channels per group) x kernel area per output value."""
    total = 0

    def count(module: nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += 2 * output.numel() * (module.in_channels // module.groups) * kh * kw

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        net(torch.zeros(1, 1, side, side))
    for hook in hooks:
        hook.remove()
    return total


# -- FLOP counts ---------------------------------------------------------------------------


def test_gflops_of_a_tiny_net_by_hand():
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1),  # 8x8x4 outputs, 9 multiply-adds each: 2 * 9 * 4 * 64 = 4608
        nn.ReLU(),  # not counted
        nn.Conv2d(4, 2, 1),  # 2 * 4 * 2 * 64 = 1024
        nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1),  # each of 2x8x8 inputs feeds 2x4x4: 2 * 2*64 * 32 = 8192
        nn.MaxPool2d(2),  # not counted
    )
    assert hardware.gflops(net, 8) == pytest.approx((4608 + 1024 + 8192) / 1e9, rel=1e-9)
    assert hardware.gflops(net, 16) == pytest.approx(4 * (4608 + 1024 + 8192) / 1e9, rel=1e-9)  # area


def test_encoder_gflops_are_the_sum_over_its_convolutions():
    encoder = GoogLeNetEncoder().eval()
    for side in (64, 96):
        assert hardware.gflops(encoder, side) == pytest.approx(conv_flops(encoder, side) / 1e9, rel=1e-9), side


def test_faithful_head_adds_one_large_matmul():
    # the head is an (HW/32^2, 1024) @ (1024, 2*64*64) product: 2 * 32^2 * 1024 * 8192 = 17.2 GFLOP at 1024^2
    side = 96
    head = 2 * (side // 32) ** 2 * 1024 * (2 * 64 * 64) / 1e9
    encoder = hardware.gflops(GoogLeNetEncoder().eval(), side)
    assert hardware.gflops(GoogLeNetFCN().eval(), side) - encoder == pytest.approx(head, rel=1e-6)


# -- timing arithmetic on a fake clock ------------------------------------------------------


def test_matmul_peak_is_the_best_rate_over_the_sizes(monkeypatch):
    clock, seen = FakeClock(), []
    cost = {64: 2.0**-10, 128: 2.0**-8, 256: 2.0**-4}  # seconds per product: 0.52, 1.05 and 0.54 GFLOP/s

    def fake_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        seen.append(a.shape[0])
        clock.now += cost[a.shape[0]]
        return a

    monkeypatch.setattr(hardware, "time", clock)
    monkeypatch.setattr(hardware, "MATMUL_SIZES", (64, 128, 256))
    monkeypatch.setattr(torch, "mm", fake_mm)
    best = hardware.matmul_gflops(torch.device("cpu"), torch.float32, seconds=0.5)
    assert best == pytest.approx(2 * 128**3 / 2.0**-8 / 1e9)  # 2 FLOPs per multiply-add, the best size
    assert set(seen) == {64, 128, 256} and seen.count(128) >= 0.5 / cost[128]  # busy for `seconds` per size
    seen.clear()
    monkeypatch.setattr(hardware, "native_bf16", lambda device: False)
    hardware.matmul_gflops(torch.device("cpu"), torch.bfloat16, seconds=2.0)
    assert set(seen) == {256}  # emulated bf16: one small size only


def test_median_seconds_leaves_out_the_warm_up(monkeypatch):
    clock = FakeClock()
    durations = [50.0, 3.0, 1.0, 8.0]  # a warm-up, then steps with median 3 (mean 4)

    def step() -> None:
        clock.now += durations.pop(0)

    monkeypatch.setattr(ablation, "time", clock)
    assert ablation.median_seconds(step, torch.device("cpu"), repeats=3) == 3.0 and not durations


def test_crops_per_s_is_the_batch_over_the_median_step(monkeypatch):
    # two clock readings per step; steps of 10 (warm-up), 1, 2, 3 and 100 s: median 2.5 s
    clock = FakeClock([0, 10, 10, 11, 11, 13, 13, 16, 16, 116])
    built = []

    def tiny_net(spec: dict) -> nn.Module:  # the training step for real, on a one-layer net
        built.append(spec["_target_"])
        return nn.Conv2d(1, 2, 3, padding=1)

    monkeypatch.setattr(training, "time", clock)
    monkeypatch.setattr(training, "instantiate", tiny_net)
    rate = training.crops_per_s("some.Net", torch.device("cpu"), bf16=False, steps=4, crop=16, batch=8)
    assert rate == pytest.approx(8 / 2.5) and not clock.script and built == ["some.Net"]


def test_time_to_best_reads_the_row_of_the_best_val_seg(tmp_path):
    assert training.time_to_best(tmp_path) is None  # no validation.csv
    (tmp_path / "validation.csv").write_text(
        "step,elapsed_s,val/seg,val/ap50\n50,30.5,0.41,0.3\n100,61.0,0.72,0.6\n150,90.2,0.70,0.7\n200,121.9,0.72,0.8\n"
    )
    assert training.time_to_best(tmp_path) == {
        "best_val_seg": 0.72,
        "step": 100,  # the first time it got there
        "elapsed_s": 61.0,
        "last_step": 200,
        "last_elapsed_s": 121.9,
    }


# -- the report ----------------------------------------------------------------------------

PEAK = {torch.float32: 125.0, torch.bfloat16: 500.0}  # GFLOP/s, in place of the measured ones


def test_movie_figures_are_medians_over_alternating_pairs_of_runs(monkeypatch, tmp_path):
    clock, runs = FakeClock(), []
    seconds = {"warmup": [100.0], "short": [2.0, 3.0, 2.0], "movie": [10.0, 9.0, 14.0]}

    class Run:  # a PredictionRun that only takes time: its folder names the movie and the pair
        def __init__(self, predictor, out, options, make_tracker):
            self.name = out.name

        def run(self, sources):
            runs.append(self.name)
            clock.now += seconds[self.name.split("_")[0]].pop(0)

    monkeypatch.setattr(movie, "time", clock)
    monkeypatch.setattr(movie, "PredictionRun", Run)
    frames = np.random.default_rng(0).integers(0, 100, (8, 16, 16)).astype(np.uint16)
    got = movie.default_run(None, frames, tmp_path, repeats=3)
    assert runs == ["warmup_out0", "short_out0", "movie_out0", "short_out1", "movie_out1", "short_out2", "movie_out2"]
    # 8 frames against their first 2: margins (10-2)/6, (9-3)/6, (14-2)/6; whole runs 10/8, 9/8, 14/8
    assert got["movie_margin_runs_s"] == pytest.approx([8 / 6, 1.0, 2.0])
    assert got["movie_margin_s"] == pytest.approx(8 / 6) and got["movie_default_s"] == pytest.approx(10 / 8)


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory) -> tuple[dict, str, float]:
    """``--quick --frames 3`` at 256 px with a known peak; the report, what it printed and the
    encoder's FLOPs counted by hand."""
    patch = pytest.MonkeyPatch()
    patch.setattr(hardware, "matmul_gflops", lambda device, dtype, seconds=1.0: PEAK[dtype])
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    printed = []
    patch.setattr(bench, "Console", lambda **kw: types.SimpleNamespace(print=printed.append))
    try:
        report = bench.main(["--quick", "--frames", "3", "--side", "256", "--output", str(out), "--device", "cpu"])
    finally:
        patch.undo()
    assert json.loads(out.read_text()) == report
    return report, printed, conv_flops(GoogLeNetEncoder().eval(), 256) / 1e9


def test_compute_bound_is_the_encoder_flops_over_the_peak_of_the_auto_precision(quick_report):
    report, _, encoder_gflops = quick_report
    auto = resolve_precision("auto", torch.device("cpu")) or torch.float32
    assert report["precision_auto"] == {torch.float32: "float32", torch.bfloat16: "bfloat16"}[auto]
    assert report["matmul_gflops"] == {"fp32": 125.0, "bf16": 500.0}
    assert report["encoder_gflops"] == pytest.approx(encoder_gflops, rel=1e-9)
    assert report["encoder_gflops"] == pytest.approx(59.3 / 16, rel=0.01)  # README: 59.3 GFLOP at 1024^2
    assert report["compute_bound_s"] == pytest.approx(encoder_gflops / PEAK[auto], rel=1e-9)
    for name, times in report["models"].items():
        assert times["ratio_to_bound"] * report["compute_bound_s"] == pytest.approx(times["end_to_end_s"]), name


def test_quick_report_holds_the_measured_figures(quick_report):
    report, printed, encoder_gflops = quick_report
    assert report["frames"] == {"source": "synthetic", "count": 3} and report["side"] == 256  # --frames 3
    assert set(report["models"]) == {"googlenet_fcn", "googlenet_skip"}
    for name, times in report["models"].items():
        assert times["trained"] is False, name
        for key in ("network_s", "postprocess_s", "end_to_end_s"):
            assert np.isfinite(times[key]) and times[key] > 0, (name, key)
    head = 2 * (256 // 32) ** 2 * 1024 * (2 * 64 * 64) / 1e9
    assert report["models"]["googlenet_fcn"]["network_gflops"] == pytest.approx(encoder_gflops + head, rel=1e-6)
    assert report["models"]["googlenet_skip"]["network_gflops"] > encoder_gflops  # its decoder adds FLOPs
    precisions = {"fp32", "bf16"} if report["precision_auto"] == "bfloat16" else {"fp32"}
    assert set(report["stages_ms"]) == {"stem", "s4", "s8", "s16", "s32", *ablation.HEADS}
    for stage, times in report["stages_ms"].items():
        assert set(times) == precisions and all(ms > 0 for ms in times.values()), stage
    agree = report["bf16_vs_fp32"]
    assert agree["frames"] == 2 and 0 <= agree["same_cell_count"] <= 2 and agree["data"] == "synthetic"
    assert not {"ablation", "peak_rss_gb_4096", "training_crops_per_s", "time_to_best"} & set(report)  # quick
    # the printed table shows the bound and each model's ratio to it
    rows = [cell for table in printed if hasattr(table, "columns") for cell in table.columns[1]._cells]
    assert f"{report['compute_bound_s']:.3f}" in rows
    # the movie: 4 frames against the first 2, per frame in all and at the margin
    fcn = report["models"]["googlenet_fcn"]
    assert report["movie"] == {"source": "synthetic", "frames": 4}
    assert np.isfinite(fcn["movie_margin_s"]) and fcn["movie_default_s"] > 0
    for key, ratio in (("movie_default_s", "movie_ratio_to_bound"), ("movie_margin_s", "movie_margin_ratio_to_bound")):
        assert fcn[ratio] * report["compute_bound_s"] == pytest.approx(fcn[key]), key
        assert f"{fcn[key]:.3f} = " in " ".join(map(str, rows)), key
    for times in report["models"].values():
        assert f"[bold]{times['ratio_to_bound']:.2f}x[/bold]" in rows


def test_every_ablation_variant_computes_the_same_logits():
    torch.manual_seed(0)
    net = calibrate_batchnorm(GoogLeNetFCN())
    frame = torch.randn(1, 1, 64, 96)
    with torch.no_grad():
        expected = net(frame)
    assert expected.std() > 0.1
    for variant in ablation.VARIANTS:
        if variant.bf16 or variant.compiled:
            continue  # bf16 rounds differently; compiling takes a minute
        model = ablation.build_variant(net, variant, torch.device("cpu"))
        with torch.no_grad():
            got = model(frame.contiguous(memory_format=torch.channels_last) if variant.channels_last else frame)
        assert torch.allclose(got, expected, rtol=0, atol=1e-4 * expected.abs().max().item()), variant.name


def test_peak_memory_is_the_prediction_process_own(tmp_path):
    from cellseg.bench.pipeline import peak_memory_gb

    folder = tmp_path / "my models é"  # predict.py's options are quoted for Hydra's lexer
    folder.mkdir()
    ckpt = bench.untrained_checkpoint(bench.MODELS["googlenet_skip"], folder)
    ballast = np.ones((3 * 1024**3) // 8)  # 3 GB in this process must not show in the child's figure
    peak = peak_memory_gb(ckpt, folder, "cpu", side=256)
    assert ballast.sum() > 0
    assert 0.1 < peak < 3.0
    assert (folder / "big_out" / "big_labels.tif").is_file()


def test_long_movie_peak_memory_runs_predict_on_each_length(tmp_path):
    from cellseg.bench.movie import movie_peak_gb
    from cellseg.data.synthetic_movie import generate_movie

    ckpt = bench.untrained_checkpoint(bench.MODELS["googlenet_fcn"], tmp_path)
    frames, _, _ = generate_movie(n_frames=2, shape=(128, 128), n_cells=2, seed=0)
    folder = tmp_path / "long movie é"  # predict.py's options are quoted for Hydra's lexer
    peaks = movie_peak_gb(ckpt, frames, (2, 5), folder, "cpu")
    assert sorted(peaks) == [2, 5] and all(0.05 < gb < 3.0 for gb in peaks.values())
    labels = tifffile.imread(folder / "out_5" / "movie_5_labels.tif")
    assert labels.shape == (5, 128, 128)  # the whole movie went through predict.py
    assert not list(folder.glob("movie_*.tif"))  # the inputs are removed after use


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--side", "33"], "--side 33: must be a multiple of 32 from 32"),
        (["--frames", "0"], "--frames 0: must be at least 1"),
        (["--device", "bogus"], "--device bogus: use auto, cpu or cuda"),
        (["--long-movie", "5"], "--long-movie 5: 0 (skip) or at least 10 frames"),
        (["--ckpt", "{tmp}/missing.ckpt"], "missing.ckpt: checkpoint not found"),
        (["--ckpt", "{skip}"], "holds a GoogLeNetSkip, not a googlenet_fcn checkpoint"),
        (["--run", "{tmp}"], "no validation.csv there; give a train.py run folder"),
        (["--output", "{tmp}/kept.json"], "kept.json: exists already; pass --overwrite"),
        (["--output", "{tmp}/kept.json/bench.json"], "its folder does not exist"),
        (["--output", "{tmp}"], "is a folder; give the report's file name"),
        (["--run", "{tmp}/norows"], "no validation row with a val/seg"),
        (["--ckpt", "{tmp}/crafted.ckpt"], "crafted.ckpt: the model spec is not a dict with a _target_ name"),
        (["--skip-ckpt", "{tmp}/short.ckpt"], "short.ckpt: weights do not fit"),
    ],
)
def test_bad_arguments_are_refused_before_any_measuring(args, message, trained_ckpt, tmp_path):
    (tmp_path / "kept.json").write_text("an earlier report")
    (tmp_path / "norows").mkdir()
    (tmp_path / "norows" / "validation.csv").write_text("step,elapsed_s,val/seg\n")
    crafted = torch.load(trained_ckpt, weights_only=True)
    crafted["hyper_parameters"]["net"] = "abc"  # passes the checkpoint's own checks, not the model spec's
    torch.save(crafted, tmp_path / "crafted.ckpt")
    short = torch.load(trained_ckpt, weights_only=True)
    short["state_dict"].pop("net.encoder.stages.stem.0.conv.weight")  # a tensor missing
    torch.save(short, tmp_path / "short.ckpt")
    with pytest.raises(CellsegError, match=re.escape(message)):
        bench.check_args(bench.parse_args([a.format(tmp=tmp_path, skip=trained_ckpt) for a in args]))
    assert (tmp_path / "kept.json").read_text() == "an earlier report"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frames", "abc"], "argument --frames: invalid int value: 'abc'"),
        (["--foo"], "unrecognized arguments: --foo"),
    ],
)
def test_argparse_errors_are_one_line(args, message):
    with pytest.raises(CellsegError, match=re.escape(f"{message}; python -m cellseg.bench --help lists the options")):
        bench.parse_args(args)


def test_a_bad_argument_is_one_line_and_exit_2():
    result = subprocess.run(
        [sys.executable, "-m", "cellseg.bench", "--quick", "--side", "33"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "cellseg: error: --side 33: must be a multiple of 32 from 32"
