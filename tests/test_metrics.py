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


# -- error kinds: merges, splits, false positives, misses, worked out by hand ------------


def kinds(gt: np.ndarray, pred: np.ndarray) -> dict[str, list[int]]:
    """:func:`metrics.error_kinds` as plain lists of label ids."""
    return {kind: sorted(int(i) for i in ids) for kind, ids in metrics.error_kinds(gt, pred).items()}


NONE = {"false_positives": [], "misses": [], "merges": [], "splits": []}


def test_correct_prediction_has_no_errors():
    gt = squares((0, 4, 0, 4), (10, 14, 10, 14))
    assert kinds(gt, squares((0, 4, 0, 4), (10, 14, 10, 15))) == NONE  # IoU 16/20 = 0.8


def test_one_merge():
    gt = squares((0, 4, 0, 4), (0, 4, 4, 10))  # 16 px and 24 px side by side
    pred = squares((0, 5, 0, 10))  # both whole plus a row of background: IoU 16/50 and 24/50
    # neither cell is matched at IoU 0.5, yet they are merged, not missed; the merge is no FP
    assert kinds(gt, pred) == {**NONE, "merges": [1]}


def test_merge_of_three_cells_is_one_merge():
    gt = squares((0, 4, 0, 4), (0, 4, 4, 8), (0, 4, 8, 12))
    pred = squares((0, 4, 0, 12))
    assert kinds(gt, pred) == {**NONE, "merges": [1]}


def test_one_split():
    gt = squares((0, 4, 0, 12))  # one 48-px cell
    pred = squares((0, 4, 0, 4), (0, 4, 4, 8), (0, 4, 8, 12))  # in three pieces, IoU 1/3 each
    # no piece is matched, yet none is a false positive and the cell is split, not missed
    assert kinds(gt, pred) == {**NONE, "splits": [1]}


def test_split_in_two_halves():
    gt = squares((0, 4, 0, 8))
    pred = squares((0, 4, 0, 4), (0, 4, 4, 8))  # IoU 0.5 each: one of them is even matched
    assert kinds(gt, pred) == {**NONE, "splits": [1]}


def test_one_false_positive():
    gt = squares((0, 4, 0, 4))
    pred = squares((0, 4, 0, 4), (10, 14, 10, 14))
    assert kinds(gt, pred) == {**NONE, "false_positives": [2]}


def test_one_miss():
    gt = squares((0, 4, 0, 4), (10, 14, 10, 14))
    pred = squares((0, 4, 0, 4))
    assert kinds(gt, pred) == {**NONE, "misses": [2]}


def test_undersized_prediction_is_a_miss_and_a_false_positive():
    gt = squares((0, 6, 0, 6))  # 36 px
    pred = squares((0, 2, 0, 2))  # 4 px inside it: IoU 1/9, covers 1/9 of the cell
    assert kinds(gt, pred) == {**NONE, "false_positives": [1], "misses": [1]}


def test_prediction_half_over_a_cell_is_not_part_of_it():
    gt = squares((0, 4, 0, 4))
    pred = squares((0, 4, 2, 6))  # 8 of its 16 px inside the cell: exactly half, IoU 8/24
    assert kinds(gt, pred) == {**NONE, "false_positives": [1], "misses": [1]}


def test_all_four_kinds_at_once_with_their_own_ids():
    gt = np.zeros((30, 30), np.int32)
    gt[0:4, 0:4], gt[0:4, 4:8] = 3, 5  # merged pair
    gt[10:14, 0:8] = 7  # split
    gt[20:24, 20:24] = 9  # missed
    gt[20:24, 0:4] = 11  # found
    pred = np.zeros_like(gt)
    pred[0:4, 0:8] = 40  # the merge
    pred[10:14, 0:4], pred[10:14, 4:8] = 21, 22  # the split
    pred[26:30, 26:30] = 60  # false positive
    pred[20:24, 0:4] = 2  # correct
    assert kinds(gt, pred) == {"false_positives": [60], "misses": [9], "merges": [40], "splits": [7]}


def test_empty_prediction_misses_every_cell():
    gt = squares((0, 4, 0, 4), (10, 14, 10, 14))
    assert kinds(gt, np.zeros_like(gt)) == {**NONE, "misses": [1, 2]}


def test_empty_ground_truth_makes_every_prediction_a_false_positive():
    pred = squares((0, 4, 0, 4), (10, 14, 10, 14))
    assert kinds(np.zeros_like(pred), pred) == {**NONE, "false_positives": [1, 2]}
    assert kinds(np.zeros_like(pred), np.zeros_like(pred)) == NONE


def test_cells_without_background():
    gt = np.ones((8, 8), np.int32)
    gt[:, 4:] = 2  # two cells filling the whole frame
    pred = np.full_like(gt, 5)  # one prediction filling it too
    assert kinds(gt, pred) == {**NONE, "merges": [5]}
    assert kinds(gt, gt + 10) == NONE


def test_iou_of_exactly_one_half_is_a_match():
    gt = squares((0, 4, 0, 4))
    pred = squares((0, 4, 0, 8))  # the cell and as much background: IoU 16/32
    assert kinds(gt, pred) == NONE


def test_a_piece_only_half_inside_a_cell_does_not_split_it():
    gt = squares((0, 4, 0, 8))
    pred = squares((0, 4, 0, 4), (0, 4, 6, 10))  # the left half; a piece with 8 of its 16 px inside
    assert kinds(gt, pred) == {**NONE, "false_positives": [2]}


def test_a_prediction_over_exactly_half_of_two_cells_does_not_merge_them():
    gt = squares((0, 4, 0, 4), (0, 4, 4, 8))
    pred = squares((0, 4, 2, 6))  # half of each: IoU 8/24 with either
    assert kinds(gt, pred) == {**NONE, "false_positives": [1], "misses": [1, 2]}


def test_oversized_prediction_is_a_miss_and_a_false_positive():
    gt = squares((0, 4, 0, 4))
    pred = squares((0, 4, 0, 10))  # holds the whole cell, but IoU 16/40
    assert kinds(gt, pred) == {**NONE, "false_positives": [1], "misses": [1]}
