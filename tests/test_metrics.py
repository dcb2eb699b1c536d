"""Metrics against answers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_roc

from cellseg import metrics


def squares(*boxes) -> np.ndarray:
    labels = np.zeros((20, 20), np.int32)
    for index, (y0, y1, x0, x1) in enumerate(boxes, start=1):
        labels[y0:y1, x0:x1] = index
    return labels


def test_perfect_prediction():
    gt = squares((0, 4, 0, 4), (10, 14, 10, 14))
    result = metrics.instance_metrics(gt, gt * 3)  # label values do not matter
    assert result["ap"] == result["seg"] == result["f1"] == 1.0


def test_partial_overlap_by_hand():
    gt = squares((0, 4, 0, 4), (10, 14, 10, 14))  # two 16-px cells
    pred = squares((0, 4, 0, 3), (10, 14, 0, 3))  # 12 px inside cell 1; a false positive
    result = metrics.instance_metrics(gt, pred)
    # IoU(cell 1) = 12/16 = 0.75: a match at thresholds 0.50..0.75 (6 of 10)
    assert result["ap50"] == pytest.approx(1 / 3)  # TP 1, FP 1, FN 1
    assert result["ap"] == pytest.approx(6 / 10 * 1 / 3)
    assert result["precision"] == result["recall"] == pytest.approx(0.5)
    # SEG: cell 1 covered > 50% -> J = 0.75; cell 2 unmatched -> 0
    assert result["seg"] == pytest.approx(0.375)


def test_seg_needs_more_than_half_covered():
    gt = squares((0, 4, 0, 4))
    pred = squares((0, 2, 0, 4))  # exactly half: not a match
    assert metrics.instance_metrics(gt, pred)["seg"] == 0.0


def test_merge_is_one_match_and_one_miss():
    gt = squares((0, 4, 0, 4), (0, 4, 4, 8))
    pred = squares((0, 4, 0, 8))  # both cells merged
    result = metrics.instance_metrics(gt, pred)
    # IoU of the merge with each cell is 0.5: Hungarian gives one match at 0.5
    assert result["ap50"] == pytest.approx(1 / 2)
    assert result["seg"] == pytest.approx(0.5)  # (0.5 + 0.5) / 2


def test_counts_add_over_frames():
    gt = squares((0, 4, 0, 4))
    total = metrics.instance_counts(gt, gt) + metrics.instance_counts(gt, np.zeros_like(gt))
    assert total.summary()["seg"] == pytest.approx(0.5)
    assert metrics.InstanceCounts.from_vector(total.as_vector()).summary() == total.summary()


def test_roc_and_thresholds():
    scores = torch.tensor([0.1, 0.2, 0.35, 0.8, 0.9, 0.95])
    truth = torch.tensor([0, 0, 0, 1, 1, 1])
    fpr, tpr, thresholds = binary_roc(scores, truth, thresholds=101)
    assert metrics.roc_auc(fpr, tpr) == pytest.approx(1.0)
    for method in ("f1", "youden"):
        threshold = metrics.choose_threshold(fpr, tpr, thresholds, 3, 3, method)
        assert 0.35 < threshold <= 0.8 + 1e-6


def test_auc_of_uninformative_scores_is_half():
    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.random(20000))
    truth = torch.from_numpy(rng.integers(0, 2, 20000))
    fpr, tpr, _ = binary_roc(scores, truth, thresholds=200)
    assert metrics.roc_auc(fpr, tpr) == pytest.approx(0.5, abs=0.02)
