"""Segmentation metrics: pixel ROC and threshold, instance matching (AP), CTC SEG.

Instance metrics follow Cellpose/StarDist: objects are matched one-to-one by Hungarian
assignment on IoU; at IoU threshold t a match counts when IoU >= t; ``ap`` is
TP / (TP + FP + FN) (the Data Science Bowl "average precision"). SEG is the Cell
Tracking Challenge measure: a reference object is matched by the predicted object
covering more than half of it, SEG is the mean Jaccard index over reference objects,
unmatched ones counting 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchmetrics.utilities.compute import auc as _auc

IOU_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.96, 0.05), 2))


def roc_auc(fpr: torch.Tensor, tpr: torch.Tensor) -> float:
    """Area under a ROC curve."""
    return float(_auc(fpr, tpr, reorder=True))


def choose_threshold(
    fpr: torch.Tensor, tpr: torch.Tensor, thresholds: torch.Tensor, positives: int, negatives: int, method: str = "f1"
) -> float:
    """Probability threshold maximizing pixel F1 (``f1``) or Youden's J (``youden``)."""
    if method == "youden":
        score = tpr - fpr
    elif method == "f1":
        tp, fp = tpr * positives, fpr * negatives
        score = 2 * tp / (2 * tp + fp + (positives - tp)).clamp_min(1e-12)
    else:
        raise ValueError(f"unknown threshold method {method!r}; use 'f1' or 'youden'")
    return float(thresholds[int(torch.argmax(score))])


def _overlaps(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersection table (n_gt+1, n_pred+1) and object areas, labels made sequential."""
    _, gt_idx = np.unique(gt, return_inverse=True)
    _, pred_idx = np.unique(pred, return_inverse=True)
    gt_idx, pred_idx = gt_idx.ravel(), pred_idx.ravel()
    # index 0 is background only when the image has background
    if gt.min() > 0:
        gt_idx = gt_idx + 1
    if pred.min() > 0:
        pred_idx = pred_idx + 1
    n_gt, n_pred = gt_idx.max() + 1, pred_idx.max() + 1
    table = np.bincount(gt_idx * n_pred + pred_idx, minlength=n_gt * n_pred).reshape(n_gt, n_pred)
    return table, table.sum(1), table.sum(0)


@dataclass
class InstanceCounts:
    """Counts that add up over frames: TP/FP/FN per IoU threshold, SEG sum and n_gt."""

    tp: np.ndarray = field(default_factory=lambda: np.zeros(len(IOU_THRESHOLDS)))
    fp: np.ndarray = field(default_factory=lambda: np.zeros(len(IOU_THRESHOLDS)))
    fn: np.ndarray = field(default_factory=lambda: np.zeros(len(IOU_THRESHOLDS)))
    seg_sum: float = 0.0
    n_gt: int = 0
    n_pred: int = 0

    def __add__(self, other: InstanceCounts) -> InstanceCounts:
        return InstanceCounts(
            self.tp + other.tp,
            self.fp + other.fp,
            self.fn + other.fn,
            self.seg_sum + other.seg_sum,
            self.n_gt + other.n_gt,
            self.n_pred + other.n_pred,
        )

    def as_vector(self) -> np.ndarray:
        """Flatten for summing across processes."""
        return np.concatenate([self.tp, self.fp, self.fn, [self.seg_sum, self.n_gt, self.n_pred]])

    @classmethod
    def from_vector(cls, vector: np.ndarray) -> InstanceCounts:
        """Inverse of :meth:`as_vector`."""
        n = len(IOU_THRESHOLDS)
        return cls(
            vector[:n], vector[n : 2 * n], vector[2 * n : 3 * n], float(vector[-3]), int(vector[-2]), int(vector[-1])
        )

    def summary(self) -> dict[str, float]:
        """``ap`` (mean over IoU 0.5:0.95), ``ap50``, ``ap75``, precision/recall/F1 at 0.5, ``seg``."""
        ap = self.tp / np.maximum(self.tp + self.fp + self.fn, 1)
        tp, fp, fn = self.tp[0], self.fp[0], self.fn[0]
        return {
            "ap": float(ap.mean()),
            "ap50": float(ap[0]),
            "ap75": float(ap[IOU_THRESHOLDS.index(0.75)]),
            "precision": float(tp / max(tp + fp, 1)),
            "recall": float(tp / max(tp + fn, 1)),
            "f1": float(2 * tp / max(2 * tp + fp + fn, 1)),
            "seg": self.seg_sum / max(self.n_gt, 1),
            "n_true": float(self.n_gt),
            "n_pred": float(self.n_pred),
        }


def instance_counts(gt: np.ndarray, pred: np.ndarray) -> InstanceCounts:
    """Match predicted to reference objects of one image and count."""
    if gt.shape != pred.shape:
        raise ValueError(f"label images differ in shape: {gt.shape} vs {pred.shape}")
    table, gt_area, pred_area = _overlaps(gt, pred)
    inter = table[1:, 1:].astype(np.float64)
    gt_area, pred_area = gt_area[1:], pred_area[1:]
    n_gt, n_pred = inter.shape
    union = gt_area[:, None] + pred_area[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    counts = InstanceCounts(n_gt=n_gt, n_pred=n_pred)
    for i, threshold in enumerate(IOU_THRESHOLDS):
        score = np.where(iou >= threshold, iou, 0.0)
        rows, cols = linear_sum_assignment(-score) if score.size else (np.array([], int),) * 2
        tp = int((score[rows, cols] > 0).sum())
        counts.tp[i], counts.fp[i], counts.fn[i] = tp, n_pred - tp, n_gt - tp
    covered = inter > 0.5 * gt_area[:, None]
    counts.seg_sum = float(np.where(covered, iou, 0.0).max(axis=1, initial=0.0).sum())
    return counts


ERROR_KINDS = ("false_positives", "misses", "merges", "splits")


def error_kinds(gt: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Label ids of each kind of error, judged at IoU 0.5.

    ``merges``: predicted objects holding more than half of two or more reference cells.
    ``splits``: reference cells holding more than half of two or more predicted objects.
    ``false_positives`` / ``misses``: unmatched predicted / reference objects that are
    not part of a merge or a split.
    """
    gt_ids, pred_ids = np.unique(gt[gt > 0]), np.unique(pred[pred > 0])
    table, gt_area, pred_area = _overlaps(gt, pred)
    inter, gt_area, pred_area = table[1:, 1:], gt_area[1:], pred_area[1:]
    union = gt_area[:, None] + pred_area[None, :] - inter
    matched = inter / np.maximum(union, 1) >= 0.5
    gt_in_pred = inter > 0.5 * gt_area[:, None]  # reference cell mostly inside a prediction
    pred_in_gt = inter > 0.5 * pred_area[None, :]  # prediction mostly inside a reference cell
    merge = gt_in_pred.sum(0) >= 2
    split = pred_in_gt.sum(1) >= 2
    merged_gt = (gt_in_pred & merge[None, :]).any(1)
    split_pred = (pred_in_gt & split[:, None]).any(0)
    return {
        "false_positives": pred_ids[~matched.any(0) & ~merge & ~split_pred],
        "misses": gt_ids[~matched.any(1) & ~split & ~merged_gt],
        "merges": pred_ids[merge],
        "splits": gt_ids[split],
    }


def instance_metrics(gt: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The summary of :func:`instance_counts` for one image."""
    return instance_counts(gt, pred).summary()
