"""The first run's demo: unseen synthetic frames and a movie, segmented as predict.py does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from cellseg import demo
from cellseg.data.synthetic import generate
from cellseg.errors import CellsegError

from .conftest import compose_cfg


def test_demo_segments_unseen_frames_and_a_movie_with_scores_and_reports(trained_ckpt, tmp_path, capsys):
    scores = demo.run_demo(trained_ckpt, tmp_path, seed=0)
    out = tmp_path / "demo"
    for folder in ("frames", "movie"):
        assert (out / folder / "report.html").is_file() and (out / folder / "measurements.csv").is_file()
    overlays = sorted(p.name for p in (out / "frames").glob("*_overlay.png"))
    assert overlays == [f"syn_00{i}_overlay.png" for i in range(3)]
    frames = json.loads((out / "frames" / "metrics.json").read_text())["overall"]
    assert scores["frames"]["seg"] == pytest.approx(frames["seg"]) and 0 < frames["seg"] <= 1
    movie = json.loads((out / "movie" / "metrics.json").read_text())["movies"]
    (tracked,) = movie.values()
    assert scores["movie"]["TRA"] == pytest.approx(tracked["TRA"]) and 0 < tracked["TRA"] <= 1
    printed = capsys.readouterr().out
    assert "Demo: the model on data it never saw" in printed and "vs tracking ground truth" in printed


def test_demo_frames_are_not_the_training_frames(tmp_path):
    training = generate(tmp_path / "train", n_frames=8, size=512, seed=0)  # data.synthetic's defaults
    frames, sequence = demo.write_demo_data(tmp_path / "demo", seed=42)
    shown = [tifffile.imread(p) for p in sorted((frames / "images").iterdir())]
    trained = [tifffile.imread(p) for p in sorted((training / "images").iterdir())]
    assert len(shown) == 3 and not any(np.array_equal(a, b) for a in shown for b in trained)
    assert len(list(sequence.glob("t*.tif"))) == 20 and (sequence.parent / "01_GT" / "TRA" / "man_track.txt").is_file()


def test_demo_runs_after_training_on_the_built_in_data_only(tmp_path):
    assert demo.wanted(compose_cfg([], tmp_path))  # the default data: paths.data_dir/synthetic
    assert not demo.wanted(compose_cfg([f"data.root={tmp_path}"], tmp_path))
    assert not demo.wanted(compose_cfg(["data=gowt1"], tmp_path))
    assert demo.wanted(compose_cfg(["data=gowt1", "demo=true"], tmp_path))
    with pytest.raises(CellsegError, match="demo='sometimes'"):
        demo.wanted(compose_cfg(["demo=sometimes"], tmp_path))
