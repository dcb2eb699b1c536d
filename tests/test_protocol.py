"""The test protocol: a test split that chooses nothing, whole-sequence tests, cross-validation."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch

from cellseg import metrics
from cellseg.crossval import annotated_frames, finished, folds, parse
from cellseg.data.datamodule import CellDataModule, near
from cellseg.data.synthetic import generate
from cellseg.data.synthetic_movie import generate_movie
from cellseg.errors import CellsegError
from cellseg.inference.predictor import Predictor
from cellseg.sequence_test import score_sequence, unseen_reference
from cellseg.tracking.ctc import score_ctc

from .conftest import FAST, ROOT, shared, train_run
from .test_tracking import write_ctc_gt, write_masks


def movie_named_folder(tmp_path: Path, names: list[str]) -> Path:
    """Synthetic annotated frames saved under the given names (``images/`` + ``masks/``)."""
    source = generate(tmp_path / "source", n_frames=len(names), size=128, seed=4)
    root = tmp_path / "named"
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
        for i, name in enumerate(names):
            shutil.copy(source / sub / f"syn_{i:03d}.tif", root / sub / f"{name}.tif")
    return root


def test_test_frames_and_their_neighbours_are_neither_trained_nor_validated_on(tmp_path):
    names = ["mov_t010", "mov_t012", "mov_t020", "mov_t030", "other_t011"]
    root = movie_named_folder(tmp_path, names)
    data = CellDataModule(str(root), crop_size=64, val_frames=["mov_t030"], test_frames=["mov_t010"], test_gap=3)
    data.setup()
    assert [f.name for f in data.test_frames_data] == ["mov_t010"]
    assert sorted(f.name for f in data.train_frames) == ["mov_t020", "other_t011"]  # t012 is 2 frames away
    assert [f.name for f in data.val_frames_data] == ["mov_t030"]
    assert data.seen_frames == ["mov_t020", "mov_t030", "other_t011"]
    loader = data.test_dataloader()
    (batch,) = list(loader)
    assert np.array_equal(batch["labels"][0].numpy(), data.test_frames_data[0].labels)


def test_frames_are_near_only_within_their_own_sequence():
    assert near("02_t052", ["02_t055"], 3) and not near("02_t052", ["02_t056"], 3)
    assert not near("02_t052", ["01_t052"], 3) and near("a", ["a"], 3) and not near("a", ["b"], 3)
    assert not near("02_t052", ["02_t053"], 0)


def test_test_region_is_the_top_rows_and_validation_the_bottom_of_the_rest(synthetic_root):
    data = CellDataModule(str(synthetic_root), crop_size=64, val_region=0.25, test_region=0.2)
    data.setup()
    whole = CellDataModule(str(synthetic_root), crop_size=64, val_region=0.25)
    whole.setup()
    frame = np.concatenate([whole.train_frames[0].image, whole.val_frames_data[0].image])  # the whole 256 rows
    test, train, val = data.test_frames_data[0], data.train_frames[0], data.val_frames_data[0]
    assert test.image.shape[0] == 51 and val.image.shape[0] == 51 and train.image.shape[0] == 256 - 102
    assert np.array_equal(np.concatenate([test.image, train.image, val.image]), frame)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"test_frames": ["syn_009"]}, "data.test_frames names 'syn_009'"),
        ({"test_frames": ["syn_000"], "test_region": 0.2}, "both set"),
        ({"val_region": 0.5, "test_region": 0.5}, "nothing to train on"),
        ({"test_frames": ["syn_000", "syn_001", "syn_002", "syn_003"]}, "no frame to train on"),
    ],
)
def test_bad_test_splits_are_refused(synthetic_root, options, message):
    with pytest.raises(CellsegError, match=message):
        CellDataModule(str(synthetic_root), crop_size=64, **options).setup()


def test_test_stage_scores_the_best_checkpoint_with_its_own_threshold(synthetic_root, tmp_path, capsys):
    overrides = [f"data.root={synthetic_root}", "data.val_frames=[syn_003]", "data.test_frames=[syn_002]", *FAST]
    overrides = [o for o in overrides if not o.startswith("trainer.max_steps")] + ["trainer.max_steps=6"]
    overrides.append("hardware.precision=32-true")  # the prediction path below runs in fp32 too
    train_run(overrides, tmp_path)
    result = json.loads((tmp_path / "result.json").read_text())
    test = result["test"]
    checkpoint = torch.load(tmp_path / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    assert test["frames"] == ["syn_002"]
    assert test["threshold"] == pytest.approx(float(checkpoint["state_dict"]["threshold"]))
    # the same frame through the prediction path: the best checkpoint, its threshold and options
    data = CellDataModule(str(synthetic_root), crop_size=128, val_frames=["syn_003"], test_frames=["syn_002"])
    data.setup()
    frame = data.test_frames_data[0]
    predictor = Predictor(tmp_path / "checkpoints" / "best.ckpt", precision="fp32")
    labels = predictor.labels(predictor.predict_normalized(frame.image))
    again = metrics.instance_counts(frame.labels, labels).summary()
    assert test["seg"] == pytest.approx(again["seg"], abs=1e-3)
    assert test["merges"] == metrics.error_kinds(frame.labels, labels)["merges"].size
    assert "syn_002" not in [f.name for f in data.train_frames + data.val_frames_data]
    assert f"SEG {test['seg']:.3f}" in capsys.readouterr().out


def ctc_sequence(tmp_path: Path) -> tuple[Path, np.ndarray, list]:
    """A synthetic movie in the CTC layout: ``01/tNNN.tif`` and ``01_GT``."""
    frames, labels, tracks = generate_movie(n_frames=8, shape=(160, 160), seed=5, n_cells=3, divide_at=None)
    seq = tmp_path / "ctc" / "01"
    seq.mkdir(parents=True)
    for t, frame in enumerate(frames):
        tifffile.imwrite(seq / f"t{t:03d}.tif", frame)
    write_ctc_gt(tmp_path / "ctc" / "01_GT", labels, tracks)
    return seq, labels, tracks


def test_sequence_test_scores_segmentation_only_on_unseen_frames(trained_ckpt, tmp_path):
    seq, _, _ = ctc_sequence(tmp_path)
    scores = score_sequence(trained_ckpt, seq, ["01_t003", "other_t000"], 1, tmp_path / "out")
    assert scores["seg_frames"] == [0, 1, 5, 6, 7]
    assert sorted(p.name for p in (tmp_path / "out" / "unseen_GT" / "SEG").iterdir()) == [
        f"man_seg{t:03d}.tif" for t in (0, 1, 5, 6, 7)
    ]
    assert scores["frames"] == 8
    assert {"TRA", "DET", "SEG"} <= set(scores) and all(0 <= scores[k] <= 1 for k in ("TRA", "DET", "SEG"))
    res = next((tmp_path / "out").glob("*_RES"))
    again = score_ctc(tmp_path / "out" / "unseen_GT", res)
    assert again["SEG"] == pytest.approx(scores["SEG"])
    assert score_ctc(tmp_path / "ctc" / "01_GT", res)["DET"] == pytest.approx(scores["DET"])  # DET: all frames


def test_partial_annotations_count_only_their_reference_nuclei(tmp_path):
    _, labels, tracks = ctc_sequence(tmp_path)
    gt = tmp_path / "ctc" / "01_GT"
    annotated = int(labels[0][labels[0] > 0].min())  # one nucleus annotated per frame, as in 02_GT/SEG
    for path in (gt / "SEG").iterdir():
        frame = tifffile.imread(path)
        tifffile.imwrite(path, np.where(frame == annotated, frame, 0).astype(np.uint16))
    perfect = write_masks(tmp_path / "perfect_RES", labels, tracks)
    assert score_ctc(gt, perfect)["SEG"] == pytest.approx(1.0)  # the other nuclei are not false positives
    missing = write_masks(tmp_path / "missing_RES", np.where(labels == annotated, 0, labels),
                          [t for t in tracks if t[0] != annotated])  # fmt: skip
    assert score_ctc(gt, missing)["SEG"] < 0.5


def test_gowt1_sequence_test_leaves_out_the_frames_that_trained_or_validated(tmp_path):
    gt = shared("ctc/Fluo-N2DH-GOWT1") / "02_GT"
    seen = ["02_t001", "02_t052", "02_t055", "02_t072"]  # conf/data/gowt1.yaml's training and validation
    out, kept = unseen_reference(gt, "02", seen, 3, tmp_path / "unseen_GT")
    assert kept == [22, 25, 27, 28, 29, 30, 35, 39, 46, 47, 60, 65, 76, 80, 82, 91]
    assert (out / "TRA" / "man_track.txt").is_file()


def test_leave_one_frame_out_folds_keep_test_neighbours_out():
    names = ["02_t001", "02_t052", "02_t055", "02_t072"]
    assert folds(names, ["02_t001"], 3) == [
        ("02_t001", ["02_t072"]),  # the configured validation frame is the test frame: the farthest one
        ("02_t052", ["02_t001"]),
        ("02_t055", ["02_t001"]),
        ("02_t072", ["02_t001"]),
    ]
    with pytest.raises(CellsegError, match="leaves 1 frame"):
        folds(["02_t001", "02_t003", "02_t050"], [], 3)


def test_crossval_options_are_checked():
    assert parse(["seeds=[4,5]", "folds=none", "data.x=1"]) == (
        {"folds": "none", "seeds": [4, 5], "out": None},
        ["data.x=1"],
    )
    for bad in (["folds=kfold"], ["seeds=[a]"], ["seeds=[]"], ["seeds=[1,1]"], ["seeds=[-1]"], ["--cfg", "job"]):
        with pytest.raises(CellsegError):
            parse(bad)


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("{", "result.json: unreadable .JSONDecodeError"),
        ("{}", "result.json: unreadable .KeyError"),
        ('{"overrides": "seed=1", "best": {}}', "result.json: unreadable .TypeError"),
        ('{"overrides": ["seed=1"], "best": {}, "test": {"seg": 0.6}}', "TypeError: its test numbers lack one of"),
        ('{"overrides": ["seed=1"], "best": {}, "test": "n/a"}', "result.json: unreadable .TypeError"),
        ('{"overrides": ["+experiment=sim_edge_weight", "seed=1"], "best": {}}', "holds a run of other options"),
    ],
)
def test_crossval_counts_only_its_own_finished_runs(tmp_path, record, message):
    assert not finished(tmp_path, ["seed=1"])  # nothing there yet: to be run
    (tmp_path / "result.json").write_text('{"overrides": ["seed=1", "+experiment=mes_edge_weight"], "best": {}}')
    assert finished(tmp_path, ["+experiment=mes_edge_weight", "seed=1"])
    (tmp_path / "result.json").write_text(record)
    with pytest.raises(CellsegError, match=message):
        finished(tmp_path, ["+experiment=mes_edge_weight", "seed=1"])


def test_crossval_refuses_frames_it_cannot_find(tmp_path):
    root = generate(tmp_path / "data", n_frames=3, size=192, seed=2)
    assert annotated_frames([f"data.root={root}", "data.val_frames=null"])[0] == ["syn_000", "syn_001", "syn_002"]
    with pytest.raises(CellsegError, match="data.use_frames names 'nope', which is not an annotated frame"):
        annotated_frames([f"data.root={root}", "data.use_frames=[nope]"])


def test_crossval_runs_every_fold_and_summarizes_its_test_numbers(tmp_path):
    root = generate(tmp_path / "data", n_frames=3, size=192, seed=2)
    out = tmp_path / "cross val é's"  # the runs' hydra.run.dir must be quoted for Hydra's lexer
    result = subprocess.run(
        [sys.executable, "-m", "cellseg.crossval", f"out={out}", "seeds=[7]", f"data.root={root}",
         "data.val_frames=null", "data.test_frames=null", *FAST],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(out / "crossval.csv")
    assert table["run"].tolist() == [f"test_syn_00{i}/seed_7" for i in range(3)]
    for i, row in table.iterrows():
        saved = json.loads((out / row["run"] / "result.json").read_text())
        assert saved["test"]["frames"] == [f"syn_00{i}"]
        assert row["test/seg"] == pytest.approx(saved["test"]["seg"])
        assert row["val/seg"] == pytest.approx(saved["best"]["val/seg"])
    summary = json.loads((out / "crossval.json").read_text())["summary"]
    assert summary["test/seg"]["mean"] == pytest.approx(table["test/seg"].mean())
    assert summary["test/seg"]["n"] == 3
    assert "test/seg:" in result.stdout


@pytest.mark.parametrize(
    ("arg", "line"),
    [
        ("folds=kfold", "folds=kfold: use leave_one_out or none"),
        ("model=nonexistent", "model=nonexistent: no such model config; use one of googlenet_fcn"),  # train.py's words
        ("data=folder", "data.root is not set"),
        ("data.test_gap=abc", "data.test_gap is 'abc', not a finite integer"),
        ("out={tmp}/file.txt", "out={tmp}/file.txt: is a file; give a folder"),
    ],
)
def test_crossval_refuses_bad_options_with_one_line(arg, line, tmp_path):
    (tmp_path / "file.txt").write_text("kept")
    arg, line = arg.format(tmp=tmp_path), line.format(tmp=tmp_path)
    result = subprocess.run([sys.executable, "-m", "cellseg.crossval", arg], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"cellseg: error: {line}")
    assert len(result.stderr.strip().splitlines()) == 1
