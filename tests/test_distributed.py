"""Real DDP (2 CPU processes over gloo, 1 data worker each): ranks draw their own crops,
share out the validation frames without counting any twice, and validate the same averaged
weights with the same batch-norm statistics (``callbacks=ema``)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from .conftest import ROOT

VAL_FRAMES = ["syn_001", "syn_002", "syn_003"]  # 3 frames on 2 ranks: one rank gets a pad


class Probe(Callback):
    """Per rank, a hash of its first training batch and the validation frames it counted."""

    def __init__(self, folder: str):
        self.folder = Path(folder)

    def _write(self, trainer: L.Trainer, kind: str, line: str) -> None:
        with open(self.folder / f"{kind}.rank{trainer.global_rank}", "a") as file:
            file.write(line + "\n")

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict, *args) -> None:
        if trainer.global_step == 0:
            self._write(trainer, "first_batch", hashlib.sha1(batch["image"].numpy().tobytes()).hexdigest())

    def on_validation_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict, *args) -> None:
        for name, counted in zip(batch["name"], batch["counted"].tolist()):
            self._write(trainer, "validated", f"{trainer.global_step} {name} {counted}")
        statistics = [m.running_var for m in pl_module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        self._write(trainer, "batch_norm", hashlib.sha1(torch.cat(statistics).numpy().tobytes()).hexdigest())


def test_ranks_draw_different_crops_validate_every_frame_once_with_the_same_statistics(synthetic_root, tmp_path):
    probe = tmp_path / "probe"
    probe.mkdir()
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            f"data.root={synthetic_root}",
            "data.test_frames=null",
            f"data.val_frames=[{','.join(VAL_FRAMES)}]",
            "data.crop_size=64",
            "data.batch_size=2",
            "data.samples_per_epoch=4",  # one step per rank and epoch
            "trainer.max_steps=2",
            "hardware=ddp_spawn",
            "hardware.num_workers=1",
            "logger=csv",
            "callbacks=ema",
            "callbacks.weight_averaging.update_starting_at_step=0",
            f"+callbacks.probe={{_target_:tests.test_distributed.Probe,folder:'{probe}'}}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first = [(probe / f"first_batch.rank{rank}").read_text() for rank in range(2)]
    assert first[0] != first[1]  # before: both ranks trained on the same crops
    validations: dict[str, list[str]] = {}
    lines = [(probe / f"validated.rank{rank}").read_text().splitlines() for rank in range(2)]
    for line in lines[0] + lines[1]:
        step, name, counted = line.split()
        if counted == "True":
            validations.setdefault(step, []).append(name)
    assert len(lines[0]) == len(lines[1])  # the same number of batches on both ranks
    assert set(validations) == {"1", "2"}
    for names in validations.values():
        assert sorted(names) == VAL_FRAMES  # every frame once over both ranks
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2 and "current_model_state" in checkpoint  # averaged
    # the averaged weights' batch-norm statistics, measured on each rank's own crops, are shared
    statistics = [(probe / f"batch_norm.rank{rank}").read_text().splitlines() for rank in range(2)]
    assert statistics[0] == statistics[1] and len(set(statistics[0])) == 2  # one set per validation
