"""LightningModule: network + edge-weighted BCE, validated and tested like prediction is judged.

Everything in ``hparams`` is a plain dict (a ``_target_`` and its arguments), built into
objects here, so checkpoints load with ``torch.load(..., weights_only=True)``. The
probability threshold chosen on validation is a buffer, so every checkpoint carries the
threshold that goes with its weights.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Timer
from torchmetrics.classification import BinaryROC

from cellseg import metrics
from cellseg.errors import CellsegError
from cellseg.models.losses import EdgeWeightedBCE
from cellseg.models.registry import build_net, build_optimizer, build_schedule
from cellseg.models.schedules import warmup
from cellseg.postprocess import probabilities_to_labels
from cellseg.utils.subnormals import flush_subnormals_to_zero

ROC_BINS = 200
THRESHOLD_METHODS = ("f1", "youden", "instance")
INSTANCE_THRESHOLDS = tuple(np.round(np.arange(0.2, 0.86, 0.05), 2))  # threshold_method=instance tries these
LR_SCALING = {"none": lambda n: 1.0, "linear": float, "sqrt": math.sqrt}


class CellSegModule(L.LightningModule):
    """Train a segmentation net; validate with pixel ROC, instance AP and CTC SEG.

    Args:
        net: ``_target_`` dict of the network (e.g. ``GoogLeNetFCN``).
        loss: arguments of :class:`EdgeWeightedBCE`.
        optimizer: ``_target_`` dict of a ``torch.optim`` optimizer (without params).
        scheduler: ``_target_`` dict of a schedule in ``cellseg.models.schedules``.
        postprocess: arguments of :func:`probabilities_to_labels` except the threshold.
        data: what prediction must reproduce: ``norm`` percentiles, ``edge_width``.
        threshold_method: how validation picks the threshold: ``f1`` or ``youden`` on the
            pixel ROC, or ``instance``: the best mean of SEG and AP50 among 0.2, 0.25 ... 0.85.
        lr_scaling: ``none``, ``linear`` or ``sqrt`` in the number of processes (DDP).
        lr_warmup: fraction of training over which a scaled learning rate ramps up from the
            single-process one (see :func:`cellseg.models.schedules.warmup`).
    """

    def __init__(
        self,
        net: dict,
        loss: dict,
        optimizer: dict,
        scheduler: dict,
        postprocess: dict,
        data: dict,
        threshold_method: str = "f1",
        lr_scaling: str = "none",
        lr_warmup: float = 0.0,
    ):
        super().__init__()
        if threshold_method not in THRESHOLD_METHODS:
            raise CellsegError(f"threshold_method={threshold_method!r}; use one of {', '.join(THRESHOLD_METHODS)}")
        self.save_hyperparameters()
        self.net = build_net(net)
        self.net.to(memory_format=torch.channels_last)
        self.criterion = EdgeWeightedBCE(**loss)
        self.register_buffer("threshold", torch.tensor(0.5))
        self.register_buffer("roc_curve", torch.zeros(2, ROC_BINS))  # validation (fpr, tpr)
        self.val_roc = BinaryROC(thresholds=ROC_BINS)
        self._val_outputs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.val_example: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._val_sums = torch.zeros(4, dtype=torch.float64)  # loss sum, frames, positive, negative pixels
        self._total_steps = math.inf

    def setup(self, stage: str) -> None:
        """In every process: DDP ranks that Lightning spawns start without the entry point's
        subnormal setting (:mod:`cellseg.utils.subnormals`)."""
        flush_subnormals_to_zero()

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Logits (N, 2, H, W) for a normalized image batch (N, C, H, W)."""
        return self.net(image.contiguous(memory_format=torch.channels_last))

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        loss = self.criterion(logits, batch["target"], batch["border"], batch["valid"])
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._start_evaluation()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step(batch)

    def on_validation_epoch_end(self) -> None:
        self._end_evaluation("val")

    def on_test_epoch_start(self) -> None:
        self._start_evaluation()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluation_step(batch)

    def on_test_epoch_end(self) -> None:
        self._end_evaluation("test")

    def _start_evaluation(self) -> None:
        self._val_outputs = []
        self._val_sums = torch.zeros(4, dtype=torch.float64, device=self.device)

    def _evaluation_step(self, batch: dict[str, Any]) -> None:
        keep = batch["counted"]
        if not keep.any():  # a pad that gives every rank the same number of batches
            return
        batch = {k: v[keep] for k, v in batch.items() if isinstance(v, torch.Tensor)}
        logits = self(batch["image"])
        loss = self.criterion(logits, batch["target"], batch["border"], batch["valid"])
        prob = torch.sigmoid(logits.float())
        truth = batch["target"][:, 0].long()
        self.val_roc.update(prob[:, 0], truth)
        frames, positives = len(truth), int(truth.sum())
        sums = [float(loss) * frames, frames, positives, truth.numel() - positives]
        self._val_sums += torch.tensor(sums, dtype=torch.float64, device=self.device)
        for image, p, labels in zip(
            batch["image"][:, 0].cpu().numpy(), prob.cpu().numpy(), batch["labels"].cpu().numpy()
        ):
            self._val_outputs.append((image, p, labels))

    def _end_evaluation(self, stage: str) -> None:
        """Log ``stage/…`` metrics. Validation chooses the threshold (and stores it with the
        weights); the test uses the stored one and chooses nothing."""
        fpr, tpr, thresholds = self.val_roc.compute()  # summed over ranks by torchmetrics
        self.val_roc.reset()
        loss_sum, frames, positives, negatives = self.trainer.strategy.reduce(self._val_sums, reduce_op="sum").tolist()
        if stage == "val" and self.hparams.threshold_method == "instance":
            self.threshold.fill_(self._instance_threshold())
        elif stage == "val":
            threshold = metrics.choose_threshold(
                fpr, tpr, thresholds, positives, negatives, self.hparams.threshold_method
            )
            self.threshold.fill_(threshold)
        threshold = float(self.threshold)
        counts = metrics.InstanceCounts()
        errors = np.zeros(len(metrics.ERROR_KINDS))
        for index, (image, prob, labels) in enumerate(self._val_outputs):
            pred = probabilities_to_labels(prob, threshold, **self.hparams.postprocess)
            counts = counts + metrics.instance_counts(labels, pred)
            kinds = metrics.error_kinds(labels, pred)
            errors += [kinds[k].size for k in metrics.ERROR_KINDS]
            if index == 0 and stage == "val":  # for the ValidationImages callback
                self.val_example = (image, labels, pred)
        vector = torch.as_tensor(np.concatenate([counts.as_vector(), errors]), dtype=torch.float64, device=self.device)
        vector = self.trainer.strategy.reduce(vector, reduce_op="sum").cpu().numpy()
        n_errors = len(metrics.ERROR_KINDS)
        summary = metrics.InstanceCounts.from_vector(vector[:-n_errors]).summary()
        self.log_dict(
            {
                f"{stage}/loss": loss_sum / max(frames, 1),
                f"{stage}/auc": metrics.roc_auc(fpr, tpr),
                f"{stage}/threshold": threshold,
                **{f"{stage}/{k}": summary[k] for k in ("seg", "ap50", "ap", "f1", "precision", "recall")},
                **{f"{stage}/{k}": float(v) for k, v in zip(metrics.ERROR_KINDS, vector[-n_errors:])},
            },
            sync_dist=False,
        )
        if stage == "val":
            self.roc_curve.copy_(torch.stack([fpr, tpr]).to(self.roc_curve))
        self._val_outputs = []

    def _instance_threshold(self) -> float:
        """The candidate threshold with the best mean of SEG and AP50 over the validation
        frames of all ranks (instances, not pixels: a threshold that merges two nuclei loses)."""
        sums = np.zeros((len(INSTANCE_THRESHOLDS), 5))  # seg sum, n_gt, tp, fp, fn (IoU 0.5)
        for _, prob, labels in self._val_outputs:
            for i, candidate in enumerate(INSTANCE_THRESHOLDS):
                c = metrics.instance_counts(
                    labels, probabilities_to_labels(prob, candidate, **self.hparams.postprocess)
                )
                sums[i] += [c.seg_sum, c.n_gt, c.tp[0], c.fp[0], c.fn[0]]
        total = torch.as_tensor(sums, dtype=torch.float64, device=self.device)
        seg_sum, n_gt, tp, fp, fn = self.trainer.strategy.reduce(total, reduce_op="sum").cpu().numpy().T
        score = seg_sum / np.maximum(n_gt, 1) + tp / np.maximum(tp + fp + fn, 1)
        return float(INSTANCE_THRESHOLDS[int(np.argmax(score))])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Record the number of training processes: the learning rate was scaled for it."""
        checkpoint["processes"] = self.trainer.world_size

    def configure_optimizers(self) -> dict:
        world = self.trainer.world_size if self._trainer is not None else 1
        scale = LR_SCALING[self.hparams.lr_scaling](world)
        optimizer = build_optimizer(self.hparams.optimizer, self.parameters(), self.hparams.optimizer["lr"] * scale)
        schedule = build_schedule(self.hparams.scheduler)
        # max_steps, or the steps max_epochs makes (inf when only max_time bounds the run)
        self._total_steps = self.trainer.estimated_stepping_batches if self._trainer is not None else math.inf

        def factor(_: int) -> float:
            progress = self._progress()
            return schedule(progress) * warmup(progress, self.hparams.lr_warmup, scale)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _progress(self) -> float:
        """Fraction of training done: the further of steps and wall time (both restored on resume:
        ``global_step`` and the Timer's elapsed time come back from the checkpoint)."""
        trainer = self._trainer
        if trainer is None:
            return 0.0
        progress = trainer.global_step / self._total_steps if 0 < self._total_steps < math.inf else 0.0
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        remaining = timer.time_remaining() if timer is not None else None
        if remaining is not None:
            elapsed = timer.time_elapsed()
            progress = max(progress, elapsed / max(elapsed + remaining, 1e-9))
        return min(progress, 1.0)
