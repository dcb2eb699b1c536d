"""The benchmark runs end to end and reports consistent numbers (no speed assertions)."""

from __future__ import annotations

import json

import pytest
import torch

from cellseg import bench
from cellseg.bench import ablation
from cellseg.models.nets.googlenet_fcn import GoogLeNetFCN

from .conftest import calibrate_batchnorm


def test_quick_bench_writes_a_consistent_report(tmp_path):
    report = bench.main(["--quick", "--side", "256", "--output", str(tmp_path / "bench.json")])
    assert json.loads((tmp_path / "bench.json").read_text()) == report
    # the encoder's FLOPs scale with the frame area: 59.3 GFLOP at 1024^2 is ~3.7 at 256^2
    assert report["encoder_gflops"] == pytest.approx(59.3 / 16, rel=0.05)
    assert report["frames"] == {"source": "synthetic", "count": 2}
    for times in report["models"].values():
        assert times["network_s"] > 0 and times["postprocess_s"] > 0
        assert times["ratio_to_bound"] == pytest.approx(times["end_to_end_s"] / report["compute_bound_s"])
        assert times["network_gflops"] > report["encoder_gflops"]  # the heads add their own FLOPs
    assert set(report["stages_ms"]) == {"stem", "s4", "s8", "s16", "s32", *ablation.HEADS}
    assert report["bf16_vs_fp32"]["frames"] == 2


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


def test_peak_memory_is_the_prediction_process_own(trained_ckpt, tmp_path):
    import numpy as np

    from cellseg.bench.pipeline import peak_memory_gb

    ballast = np.ones((3 * 1024**3) // 8)  # 3 GB in this process must not show in the child's figure
    peak = peak_memory_gb(trained_ckpt, tmp_path, "cpu", side=256)
    assert ballast.sum() > 0
    assert 0.1 < peak < 3.0
    assert (tmp_path / "big_out" / "big_labels.tif").is_file()
