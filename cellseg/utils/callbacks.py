"""Training callbacks of cellseg's own, and the checkpoint writer."""

from __future__ import annotations

import os
import time
from collections import deque
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, EMAWeightAveraging, RichProgressBar
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn

from cellseg import metrics
from cellseg.outputs.atomic import write_with
from cellseg.visualize import error_overlay, roc_figure


class ValidateOnStop(Callback):
    """Stop through ``trainer.should_stop`` at ``max_steps`` so a last validation runs.

    Lightning validates when a run is stopped early (``should_stop``) but not when it hits
    ``max_steps`` in the middle of an epoch; this makes the last steps count for
    ``best.ckpt`` and guarantees that even a very short run leaves one.
    """

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar, labelled with the limit that actually bounds the run.

    Lightning labels it ``Epoch {epoch}/{max_epochs - 1}``, which reads ``Epoch 3/-2`` when
    ``max_steps`` or ``max_time`` bounds the run (``max_epochs=-1``). This one reads
    ``Epoch 3/9`` under ``max_epochs=10`` and ``Epoch 3, step 120/200`` otherwise (no ``/200``
    when only ``max_time`` bounds the run).
    """

    @staticmethod
    def train_description(trainer: L.Trainer) -> str:
        """The label of the training bar."""
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            return f"Epoch {trainer.current_epoch}/{trainer.max_epochs - 1}"
        limit = f"/{trainer.max_steps}" if trainer.max_steps > 0 else ""
        return f"Epoch {trainer.current_epoch}, step {trainer.global_step}{limit}"

    def _get_train_description(self, current_epoch: int) -> str:  # where RichProgressBar takes the label
        return self.train_description(self.trainer)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.progress is not None and self.train_progress_bar_id is not None:
            self.progress.update(self.train_progress_bar_id, description=self.train_description(trainer))
        super().on_train_batch_end(trainer, pl_module, *args)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write a checkpoint beside its destination, flush it to disk, then rename it into place.

    A process killed while saving (``kill -9``, out of memory, a lost node) leaves the previous
    ``last.ckpt`` whole. Lightning's own writer stages the file in ``$TMPDIR`` and moves it,
    which is a plain, interruptible copy when ``$TMPDIR`` is another file system (often tmpfs).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        with open(partial, "wb") as file:
            torch.save(checkpoint, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(partial, path)


class ValidationHistory(Callback):
    """Write every validation's metrics, with step and elapsed seconds, to ``validation.csv``.

    The run's summary (``result.json``) and sweep tables are read from this file, so they
    do not depend on which logger was chosen.
    """

    def __init__(self, path: str):
        self.path = Path(path)
        self.start = time.monotonic()
        self.rows: list[dict] = []

    def state_dict(self) -> dict:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict) -> None:
        self.rows = list(state_dict["rows"])

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        already = self.rows[-1]["elapsed_s"] if self.rows else 0.0
        self.start = time.monotonic() - already

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        row = {"step": trainer.global_step, "epoch": trainer.current_epoch,
               "elapsed_s": round(time.monotonic() - self.start, 1), **metrics}  # fmt: skip
        self.rows.append(row)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rows = pd.DataFrame(self.rows)
        write_with(self.path, lambda tmp: rows.to_csv(tmp, index=False))


class ValidationImages(Callback):
    """After each validation, save the first validation frame's error overlay and the ROC
    curve as PNGs in ``folder`` and send them to W&B when it is the logger."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        example = getattr(pl_module, "val_example", None)
        if trainer.sanity_checking or not trainer.is_global_zero or example is None:
            return
        image, truth, pred = example
        self.folder.mkdir(parents=True, exist_ok=True)
        overlay = error_overlay(image, truth, pred, metrics.error_kinds(truth, pred))
        fpr, tpr = pl_module.roc_curve.cpu().numpy()
        paths = {
            "val/overlay": self.folder / f"step{trainer.global_step:06d}_errors.png",
            "val/roc": self.folder / f"step{trainer.global_step:06d}_roc.png",
        }
        iio.imwrite(paths["val/overlay"], overlay)
        roc_figure({"validation": (fpr, tpr)}, paths["val/roc"])
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key="val/images", images=[str(p) for p in paths.values()],
                                 caption=list(paths), step=trainer.global_step)  # fmt: skip


VALIDATION_BUFFERS = ("threshold", "roc_curve")  # set by validation, not learned


class EmaUpdate:
    """``torch.optim.swa_utils.get_ema_avg_fn(decay)`` as an object: Lightning passes that
    function, a closure, which ``hardware=ddp_spawn`` cannot pickle to its processes."""

    def __init__(self, decay: float):
        self.decay = decay

    @torch.no_grad()
    def __call__(self, average: torch.Tensor, current: torch.Tensor, num_averaged: torch.Tensor) -> torch.Tensor:
        return self.decay * average + (1 - self.decay) * current


class ValidatedEMA(EMAWeightAveraging):
    """Lightning's EMA of the weights, made to agree with what validation scored.

    - Before its first update the average is the untrained network: validation, the
      checkpoints and the end of training keep the trained weights until then.
    - The threshold and ROC validation picks for the averaged weights are set after Lightning
      swaps them back out, so they land in the raw network; the checkpoint's ``state_dict``
      (the averaged weights) and the network after training get them from there, not an
      average of earlier choices.
    - Testing a checkpoint keeps its ``state_dict``: the parent would load the raw weights of
      ``current_model_state`` over it, and the test stage would score other weights than
      ``best.ckpt`` holds.
    - Batch-norm statistics are not averaged but measured: before the averaged weights are
      validated or kept, they run in training mode over the last ``bn_batches`` training
      batches (averaged over DDP ranks). An average of running statistics belongs to none of
      the averaged weights; with weights that moved far in 200 steps it normalized the
      activations so wrongly that ``mes_edge_weight``'s ``val/seg`` fell from 0.76 to 0 within
      300 steps while the raw network improved (``torch.optim.swa_utils.update_bn`` does the
      same for SWA).
    """

    def __init__(self, decay: float = 0.999, bn_batches: int = 8, **kwargs: Any):
        super().__init__(decay=decay, use_buffers=False, **kwargs)
        self._kwargs["avg_fn"] = EmaUpdate(decay)  # ddp_spawn pickles callbacks
        self.bn_batches = bn_batches
        self._recent: deque[torch.Tensor] = deque(maxlen=bn_batches)

    def _averaged(self) -> bool:
        return self._average_model is not None and int(self._average_model.n_averaged) > 0

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self._recent.append(batch["image"].detach())

    @torch.no_grad()
    def _measure_batch_norm(self, trainer: L.Trainer) -> None:
        """The averaged network's batch-norm statistics from the recent training batches."""
        net = self._average_model.module
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
        if not norms or not self._recent:
            return
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a plain mean over the batches
        training = net.training
        net.train()
        with trainer.precision_plugin.forward_context():
            for images in self._recent:
                net(images)
        net.train(training)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum
            m.running_mean.copy_(trainer.strategy.reduce(m.running_mean, reduce_op="mean"))
            m.running_var.copy_(trainer.strategy.reduce(m.running_var, reduce_op="mean"))

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._averaged():
            self._measure_batch_norm(trainer)
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._averaged():
            super().on_validation_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._averaged():
            self._measure_batch_norm(trainer)
            chosen = self._chosen(pl_module)
            super().on_train_end(trainer, pl_module)
            for name, value in chosen.items():
                getattr(pl_module, name).copy_(value)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if not self._averaged():
            return
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        checkpoint["state_dict"].update(self._chosen(pl_module))

    @staticmethod
    def _chosen(pl_module: L.LightningModule) -> dict[str, torch.Tensor]:
        """What validation chose for the averaged weights (the average of earlier choices is none)."""
        return {name: getattr(pl_module, name).detach().clone() for name in VALIDATION_BUFFERS}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        if trainer.state.fn == TrainerFn.FITTING:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
