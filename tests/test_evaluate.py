"""Evaluation on demand (predict.py gt=...) and during training, against hand-worked answers."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest
import tifffile

from cellseg import metrics
from cellseg.data.synthetic import synthetic_frame
from cellseg.data.targets import edge_band
from cellseg.errors import CellsegError
from cellseg.evaluate import Evaluator
from cellseg.visualize import ERROR_COLOURS

from .conftest import compose_cfg


def box(labels: np.ndarray, y0: int, y1: int, x0: int, x1: int, value: int) -> None:
    labels[y0:y1, x0:x1] = value


def merge_and_false_positive() -> tuple[np.ndarray, np.ndarray]:
    """Frame 1: cells A (36 px) and B (54 px) side by side, merged by one prediction M that
    also takes a row of background (105 px); cell C found exactly; one false positive F."""
    truth, pred = np.zeros((32, 32), np.int32), np.zeros((32, 32), np.int32)
    box(truth, 2, 8, 2, 8, 1)  # A
    box(truth, 2, 8, 8, 17, 2)  # B
    box(truth, 20, 26, 2, 8, 3)  # C
    box(pred, 2, 9, 2, 17, 1)  # M: IoU 36/105 with A, 54/105 with B
    box(pred, 20, 26, 2, 8, 2)  # C exactly
    box(pred, 20, 26, 20, 26, 3)  # F
    return truth, pred


def split_and_miss() -> tuple[np.ndarray, np.ndarray]:
    """Frame 2: cell D (72 px) predicted as its two halves (IoU 1/2 each, neither covering
    more than half of it); cell E missed."""
    truth, pred = np.zeros((32, 32), np.int32), np.zeros((32, 32), np.int32)
    box(truth, 2, 8, 2, 14, 1)  # D
    box(truth, 20, 26, 20, 26, 2)  # E
    box(pred, 2, 8, 2, 8, 1)
    box(pred, 2, 8, 8, 14, 2)
    return truth, pred


def perfect_probabilities(truth: np.ndarray) -> np.ndarray:
    """Interior probability 1 exactly on the interior the ROC is scored against, else 0."""
    interior = (truth > 0) & ~edge_band(truth, 1)
    return np.stack([interior, np.zeros_like(interior)]).astype(np.float32)


def colour_name(rgb: np.ndarray) -> str:
    """The colour a person would name, from a few thresholds."""
    r, g, b = (int(v) for v in rgb)
    if r == g == b:
        return "grey"
    if g > 150 and r < 100 and b < 100:
        return "green"
    if r > 200 and g < 60 and b < 120:
        return "red"
    if r > 200 and 100 < g < 200 and b < 60:
        return "orange"
    if r > 200 and g < 100 and b > 200:
        return "magenta"
    if b > 200 and r < 60 and g < 160:
        return "blue"
    return f"unnamed {rgb}"


DOCUMENTED = {"correct": "green", "false_positives": "red", "merges": "orange", "splits": "magenta", "misses": "blue"}


def test_error_colours_are_the_documented_ones():
    assert {kind: colour_name(np.array(rgb)) for kind, rgb in ERROR_COLOURS.items()} == DOCUMENTED


@pytest.fixture
def evaluated(tmp_path) -> tuple[dict, Path]:
    """The two hand-made frames through :class:`Evaluator`, on uniform images of 0.5 and 0.8."""
    evaluator = Evaluator(tmp_path, tmp_path, edge_width=1, val_roc=None)
    frames = (("merge", merge_and_false_positive(), 0.5), ("split", split_and_miss(), 0.8))
    for name, (truth, pred), value in frames:
        grey = np.full(truth.shape, value, np.float32)
        evaluator.add(name, grey, truth, perfect_probabilities(truth), pred.astype(np.uint16))
    return evaluator.finish(), tmp_path


def test_overall_metrics_by_hand(evaluated):
    overall, folder = evaluated
    # frame 1 at IoU 0.5: B-M (54/105 > 0.5) and C match, F is a FP, A a FN; above 0.5 only C
    # frame 2 at IoU 0.5: D matches one half, the other half is a FP, E a FN; above 0.5 nothing
    # all frames at 0.5: TP 3, FP 2, FN 2 -> 3/7; at 0.55..0.95: TP 1, FP 4, FN 4 -> 1/9
    assert overall["ap50"] == pytest.approx(3 / 7)
    assert overall["ap75"] == pytest.approx(1 / 9)
    assert overall["ap"] == pytest.approx((3 / 7 + 9 * 1 / 9) / 10)
    assert overall["precision"] == overall["recall"] == overall["f1"] == pytest.approx(3 / 5)
    # SEG: A and B are each covered by more than half by M (J = 36/105, 54/105), C has J = 1;
    # D is covered by exactly half (no match), E not at all: (36/105 + 54/105 + 1) / 5
    assert overall["seg"] == pytest.approx((36 / 105 + 54 / 105 + 1) / 5)
    assert (overall["n_true"], overall["n_pred"]) == (5, 5)
    assert {k: overall[k] for k in metrics.ERROR_KINDS} == {"merges": 1, "splits": 1, "false_positives": 1, "misses": 1}
    assert overall["auc"] == pytest.approx(1.0)  # the probabilities are exactly the interior
    report = json.loads((folder / "metrics.json").read_text())
    assert report["overall"] == pytest.approx(overall)
    first, second = report["per_image"]["merge"], report["per_image"]["split"]
    assert (first["merges"], first["false_positives"], first["splits"], first["misses"]) == (1, 1, 0, 0)
    assert (second["merges"], second["false_positives"], second["splits"], second["misses"]) == (0, 0, 1, 1)
    assert first["seg"] == pytest.approx((36 / 105 + 54 / 105 + 1) / 3) and second["seg"] == 0.0
    assert first["ap50"] == pytest.approx(2 / 4) and second["ap50"] == pytest.approx(1 / 3)
    assert first["ap"] == pytest.approx((2 / 4 + 9 * 1 / 5) / 10) and second["ap"] == pytest.approx(1 / 30)
    assert (folder / "roc.png").stat().st_size > 5000


def test_error_map_pixels_have_the_documented_colours(evaluated):
    _, folder = evaluated
    merge = iio.imread(folder / "merge_errors.png")
    assert merge.shape == (32, 32, 3) and merge.dtype == np.uint8
    expected = {
        (8, 9): "orange", (4, 16): "orange", (2, 5): "orange",  # the merge's outline
        (20, 22): "red", (23, 25): "red",  # the false positive's outline
        (20, 4): "green", (25, 3): "green", (22, 7): "green",  # the cell found
        (5, 8): "grey", (23, 5): "grey", (23, 23): "grey", (14, 28): "grey",  # insides, background
    }  # fmt: skip
    assert {yx: colour_name(merge[yx]) for yx in expected} == expected
    split = iio.imread(folder / "split_errors.png")
    expected = {
        (2, 4): "magenta", (7, 10): "magenta", (4, 13): "magenta",  # the split cell's outline
        (4, 7): "green", (4, 8): "green",  # where the two pieces meet: their own outlines
        (20, 22): "blue", (25, 23): "blue", (23, 20): "blue",  # the missed cell's outline
        (23, 23): "grey", (4, 4): "grey", (14, 28): "grey",
    }  # fmt: skip
    assert {yx: colour_name(split[yx]) for yx in expected} == expected
    for image in (merge, split):  # nothing but grey and the five colours
        names = {colour_name(rgb) for rgb in image.reshape(-1, 3)}
        assert names <= {"grey", *DOCUMENTED.values()}, names
    assert np.all(merge[14, 20] == 127) and np.all(split[14, 20] == 204)  # the images: 0.5 and 0.8 of 255


def test_predict_with_gt_writes_metrics_consistent_with_its_outputs(trained_ckpt, tmp_path):
    from cellseg.inference.predict_task import predict

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    truths = {}
    for seed, name in ((40, "left"), (41, "right")):  # two images, not consecutive frames of a movie
        image, labels = synthetic_frame(np.random.default_rng(seed), 256)
        tifffile.imwrite(tmp_path / "images" / f"{name}.tif", image)
        tifffile.imwrite(tmp_path / "masks" / f"{name}.tif", labels.astype(np.uint16))
        truths[name] = labels
    overrides = [f"ckpt={trained_ckpt}", f"input={tmp_path / 'images'}", f"output={tmp_path / 'out'}"]
    stats = predict(compose_cfg([*overrides, f"gt={tmp_path / 'masks'}"], config_name="predict"))
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(report["per_image"]) == {"left", "right"}
    # recompute from the label files it wrote and the masks, frame by frame
    total, errors = metrics.InstanceCounts(), dict.fromkeys(metrics.ERROR_KINDS, 0)
    for name, truth in truths.items():
        labels = tifffile.imread(tmp_path / "out" / f"{name}_labels.tif")
        assert labels.max() > 0
        counts, kinds = metrics.instance_counts(truth, labels), metrics.error_kinds(truth, labels)
        total = total + counts
        expected = {**counts.summary(), **{k: int(v.size) for k, v in kinds.items()}}
        assert report["per_image"][name] == pytest.approx(expected), name
        for kind in errors:
            errors[kind] += int(kinds[kind].size)
        overlay = iio.imread(tmp_path / "out" / f"{name}_errors.png")
        assert overlay.shape == (*truth.shape, 3)
        assert {colour_name(rgb) for rgb in overlay[labels > 0]} <= {"grey", *DOCUMENTED.values()}
    overall = report["overall"]
    assert overall == pytest.approx({**total.summary(), **errors, "auc": overall["auc"], "auc_frames": 2})
    assert overall["n_true"] == sum(int(t.max()) for t in truths.values())
    assert stats.metrics == pytest.approx(overall)
    assert 0.9 < overall["auc"] <= 1.0  # a trained model separates interiors from the rest
    assert (tmp_path / "out" / "roc.png").stat().st_size > 5000


def test_mask_that_does_not_match_its_image(trained_ckpt, tmp_path):
    from cellseg.inference.predict_task import predict

    image, labels = synthetic_frame(np.random.default_rng(0), 128)
    (tmp_path / "gt").mkdir()
    tifffile.imwrite(tmp_path / "a.tif", image)
    tifffile.imwrite(tmp_path / "gt" / "a.tif", labels[:100].astype(np.uint16))
    cfg = compose_cfg(
        [f"ckpt={trained_ckpt}", f"input={tmp_path / 'a.tif'}", f"output={tmp_path / 'out'}", f"gt={tmp_path / 'gt'}"],
        config_name="predict",
    )
    with pytest.raises(CellsegError, match="does not match image a.tif"):
        predict(cfg)
    assert not (tmp_path / "out" / "a_labels.tif").exists()


def test_training_logs_val_metrics_and_stores_threshold(synthetic_overrides, tmp_path):
    import torch

    from .conftest import train_run

    train_run(synthetic_overrides, tmp_path)
    history = pd.read_csv(tmp_path / "validation.csv")
    for column in ("val/seg", "val/ap50", "val/auc", "val/threshold"):
        assert column in history and history[column].between(0, 1).all()
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    assert float(best["threshold"]) == history["val/threshold"].iloc[history["val/seg"].idxmax()]
    assert best["roc_curve"].shape == (2, 200) and best["roc_curve"][1].max() == 1.0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["best"]["val/seg"] == history["val/seg"].max()
    assert len(list((tmp_path / "val_images").glob("*_errors.png"))) == len(history)
    assert len(list((tmp_path / "val_images").glob("*_roc.png"))) == len(history)


def test_frames_without_probabilities_are_scored_but_left_out_of_the_roc(tmp_path):
    """Labels an earlier run segmented (skip_existing) come without probabilities: they count
    in SEG and AP, not in the pixel ROC; with none in the ROC there is no AUC and no roc.png."""
    truth, pred = merge_and_false_positive()
    grey = np.full(truth.shape, 0.5, np.float32)
    only_labels = Evaluator(tmp_path, tmp_path, edge_width=1, val_roc=None)
    only_labels.add("kept", grey, truth, None, pred.astype(np.uint16))
    overall = only_labels.finish()
    assert "auc" not in overall and not (tmp_path / "roc.png").exists()
    assert overall["seg"] == pytest.approx(metrics.instance_counts(truth, pred).summary()["seg"])
    both = Evaluator(tmp_path, tmp_path / "both", edge_width=1, val_roc=None)
    (tmp_path / "both").mkdir()
    both.add("kept", grey, truth, None, pred.astype(np.uint16))
    both.add("new", grey, truth, perfect_probabilities(truth), pred.astype(np.uint16))
    overall = both.finish()
    assert (overall["auc"], overall["auc_frames"]) == (pytest.approx(1.0), 1)
    assert (tmp_path / "both" / "roc.png").exists()


def test_frames_without_cells_give_no_pixel_roc(tmp_path):
    """Ground truth with no interior pixel (empty frames of a movie) has no ROC: no AUC,
    where torchmetrics' curve of one class would give 0.0."""
    truth = np.zeros((32, 32), np.int32)
    prob = np.stack([np.full(truth.shape, 0.2, np.float32), np.zeros(truth.shape, np.float32)])
    evaluator = Evaluator(tmp_path, tmp_path, edge_width=1, val_roc=None)
    evaluator.add("empty", prob[0], truth, prob, truth.astype(np.uint16))
    overall = evaluator.finish()
    assert "auc" not in overall and not (tmp_path / "roc.png").exists()
    assert "auc" not in json.loads((tmp_path / "metrics.json").read_text())["overall"]


def test_ground_truth_ids_past_int32_are_refused_not_wrapped(tmp_path):
    (tmp_path / "gt").mkdir()
    tifffile.imwrite(tmp_path / "gt" / "a.tif", np.array([[0, 3_000_000_000], [0, 0]], np.uint32))
    evaluator = Evaluator(tmp_path / "gt", tmp_path, edge_width=1, val_roc=None)
    with pytest.raises(CellsegError, match=r"a.tif: label 3000000000 is past 2147483647; renumber the cells 1..N"):
        evaluator.masks_for(tmp_path / "a.tif", 1, (2, 2))


def test_ground_truth_is_read_as_training_reads_masks(tmp_path):
    """Whole-valued float masks, which training accepts, score; fractional or negative ones
    are refused with the same line training gives."""
    (tmp_path / "gt").mkdir()
    evaluator = Evaluator(tmp_path / "gt", tmp_path, edge_width=1, val_roc=None)
    tifffile.imwrite(tmp_path / "gt" / "a.tif", np.array([[[0, 2], [2, 1]], [[1, 0], [0, 0]]], np.float32))
    masks = evaluator.masks_for(tmp_path / "a.tif", 2, (2, 2))
    assert masks.dtype == np.int32 and masks.tolist() == [[[0, 2], [2, 1]], [[1, 0], [0, 0]]]
    for value, message in ((1.5, "fractional values"), (-1.0, "negative values")):
        tifffile.imwrite(tmp_path / "gt" / "a.tif", np.array([[0, value], [0, 0]], np.float32))
        with pytest.raises(CellsegError, match=rf"a.tif: label image has {message}"):
            evaluator.masks_for(tmp_path / "a.tif", 1, (2, 2))
