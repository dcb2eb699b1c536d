"""Evaluation against ground truth on demand: ``predict.py ... gt=MASKS``.

Writes ``metrics.json`` (per image and overall), ``roc.png`` (the pixel ROC on these
images next to the validation ROC stored in the checkpoint, as in the seed's figure) and
``<stem>_errors.png`` (false positives, misses, merges and splits in their own colours).
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from torchmetrics.classification import BinaryROC

from cellseg import metrics
from cellseg.data.io import as_labels, is_image_file, read_image
from cellseg.data.targets import edge_band
from cellseg.errors import CellsegError
from cellseg.outputs.atomic import write_json, write_with
from cellseg.visualize import error_overlay, roc_figure

MASK_SUFFIXES = ("", "_masks", "_mask", "_labels", "_gt")


def find_mask(image: Path, gt_dir: Path) -> Path:
    """The ground-truth mask of ``image`` in ``gt_dir``: same stem (or ``_masks`` etc.)."""
    candidates = [p for p in gt_dir.iterdir() if p.is_file() and is_image_file(p)]
    for suffix in MASK_SUFFIXES:
        for path in candidates:
            if path.stem == f"{image.stem}{suffix}":
                return path
    raise CellsegError(f"{image}: no ground-truth mask named {image.stem}.* in {gt_dir}; masks must share its name")


class Evaluator:
    """Collects metrics, error maps and the pixel ROC of a prediction run."""

    def __init__(self, gt_dir: str | Path, out_dir: Path, edge_width: int, val_roc: np.ndarray | None):
        self.gt_dir = Path(gt_dir)
        if not self.gt_dir.is_dir():
            raise CellsegError(f"{self.gt_dir}: ground-truth folder not found; pass gt=FOLDER of masks")
        self.out_dir = out_dir
        self.edge_width = edge_width
        self.val_roc = val_roc
        self.roc = BinaryROC(thresholds=200)
        self.per_image: dict[str, dict] = {}
        self.counts = metrics.InstanceCounts()
        self.errors = {key: 0 for key in metrics.ERROR_KINDS}
        self.roc_frames = 0  # frames in the pixel ROC
        self.roc_classes = np.zeros(2, np.int64)  # its background and interior pixels

    def masks_for(self, image: Path, n_frames: int, shape: tuple[int, int]) -> np.ndarray:
        """Ground-truth labels (T, Y, X) of an input, checked against its frames."""
        path = find_mask(image, self.gt_dir)
        masks = np.squeeze(read_image(path))
        masks = masks[None] if masks.ndim == 2 else masks
        if masks.shape != (n_frames, *shape):
            raise CellsegError(
                f"{path}: mask shape {masks.shape} does not match image {image.name} "
                f"({n_frames} frame(s) of {shape}); pair each image with its own mask"
            )
        return as_labels(masks, path)  # the checks training applies to its masks

    def add(
        self, name: str, normalized: np.ndarray, truth: np.ndarray, prob: np.ndarray | None, labels: np.ndarray
    ) -> None:
        """Score one frame and write its error overlay (drawn on the normalized frame). Without
        ``prob`` (labels segmented by an earlier run) the frame counts in every score but the pixel ROC."""
        if prob is not None:
            interior = (truth > 0) & ~edge_band(truth, self.edge_width)
            self.roc.update(torch.from_numpy(prob[0]), torch.from_numpy(interior.astype(np.int64)))
            self.roc_frames += 1
            self.roc_classes += np.bincount(interior.ravel(), minlength=2)
        counts = metrics.instance_counts(truth, labels)
        errors = metrics.error_kinds(truth, labels)
        self.counts = self.counts + counts
        for key in self.errors:
            self.errors[key] += int(errors[key].size)
        self.per_image[name] = {**counts.summary(), **{k: int(v.size) for k, v in errors.items()}}
        overlay = error_overlay(normalized, truth, labels, errors)
        write_with(self.out_dir / f"{name}_errors.png", lambda tmp: iio.imwrite(tmp, overlay, extension=".png"))

    def finish(self) -> dict:
        """Write ``metrics.json`` and ``roc.png`` (when some frame was segmented in this run:
        ``auc`` and the ROC need its probabilities, and its masks both interior and background
        pixels); return the overall metrics."""
        overall = {**self.counts.summary(), **self.errors}
        report = {"overall": overall, "per_image": self.per_image}
        if not self.roc_classes.all():  # no ROC without both interior and background pixels
            write_json(self.out_dir / "metrics.json", report)
            return overall
        fpr, tpr, _ = self.roc.compute()
        overall["auc"] = metrics.roc_auc(fpr, tpr)
        overall["auc_frames"] = self.roc_frames  # fewer than per_image when skip_existing kept some
        write_json(self.out_dir / "metrics.json", report)
        curves = {} if self.val_roc is None else {"validation (training run)": tuple(self.val_roc)}
        curves[f"these images (AUC {overall['auc']:.3f})"] = (fpr.numpy(), tpr.numpy())
        write_with(self.out_dir / "roc.png", lambda tmp: roc_figure(curves, tmp))
        return overall
