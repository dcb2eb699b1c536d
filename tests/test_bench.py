"""The benchmark runs end to end and reports consistent numbers (no speed assertions)."""

from __future__ import annotations

import json

import pytest

from cellseg import bench


def test_quick_bench_writes_a_consistent_report(tmp_path):
    report = bench.main(["--quick", "--side", "256", "--output", str(tmp_path / "bench.json")])
    assert json.loads((tmp_path / "bench.json").read_text()) == report
    # the encoder's FLOPs scale with the frame area: 62.6 GFLOP at 1024^2 is ~3.9 at 256^2
    assert report["encoder_gflops"] == pytest.approx(62.6 / 16, rel=0.1)
    for times in report["models"].values():
        assert times["network_s"] > 0 and times["postprocess_s"] > 0
        assert times["ratio_to_bound"] == pytest.approx(times["end_to_end_s"] / report["compute_bound_s"])
    assert report["bf16_vs_fp32"]["frames"] == 2
