"""Resuming: a run killed with SIGKILL continues from last.ckpt; checkpoints are written atomically."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from cellseg.errors import CellsegError
from cellseg.models.schedules import Cosine
from cellseg.utils.callbacks import AtomicCheckpointIO

from .conftest import ROOT, train_run

MAX_STEPS = 10
LR = 1e-3  # conf/optimizer/rmsprop.yaml


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def validated_steps(run_dir) -> list[int]:
    try:
        return pd.read_csv(run_dir / "validation.csv")["step"].tolist()
    except (FileNotFoundError, pd.errors.EmptyDataError, KeyError):
        return []


def test_killed_run_resumes_where_it_was_saved(synthetic_root, tmp_path):
    overrides = [
        f"data.root={synthetic_root}",
        "data.test_frames=null",
        "data.val_frames=[syn_003]",
        "data.crop_size=64",
        "data.batch_size=2",
        "data.samples_per_epoch=4",  # a validation, and so a last.ckpt, every 2 steps
        f"trainer.max_steps={MAX_STEPS}",
        "trainer.log_every_n_steps=1",
        "logger=csv",
        f"hydra.run.dir={tmp_path}",
    ]
    with open(tmp_path / "first.log", "wb") as out:
        first = subprocess.Popen([sys.executable, "train.py", *overrides], cwd=ROOT, stdout=out, stderr=out)
        deadline = time.monotonic() + 300  # a generous bound for a loaded machine; ~15 s when idle
        while len(validated_steps(tmp_path)) < 2 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # a few more steps
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    before = validated_steps(tmp_path)
    assert first.returncode == -signal.SIGKILL and len(before) >= 2, (tmp_path / "first.log").read_text()[-2000:]
    saved = load(tmp_path / "checkpoints" / "last.ckpt")["global_step"]
    assert before[-2] <= saved < MAX_STEPS  # at most one validation interval lost

    resumed = subprocess.run(
        [
            sys.executable,
            "train.py",
            *overrides,
            "logger.csv.name=resumed",
            f"ckpt_path={tmp_path}/checkpoints/last.ckpt",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"after {MAX_STEPS} steps" in resumed.stdout
    assert load(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == MAX_STEPS
    rows = pd.read_csv(tmp_path / "resumed" / "metrics.csv").dropna(subset=["train/lr"])
    # the resumed run's first step took global_step from `saved` (not 0) to saved + 1, at the
    # learning rate the schedule gives at saved / MAX_STEPS
    assert rows["step"].min() == saved + 1
    first_lr = rows.loc[rows["step"].idxmin(), "train/lr"]
    assert first_lr == pytest.approx(LR * Cosine()(saved / MAX_STEPS), rel=1e-3)


def test_resumed_max_time_run_keeps_its_time_budget(synthetic_overrides, tmp_path):
    budget = 10 * 3600  # s
    timed = [*synthetic_overrides, "trainer.max_time=00:10:00:00", "trainer.max_steps=4"]
    train_run([*timed, "trainer.max_steps=2"], tmp_path / "first")
    checkpoint = load(tmp_path / "first" / "checkpoints" / "last.ckpt")
    checkpoint["callbacks"]["Timer"]["time_elapsed"]["train"] = 0.9 * budget  # as if 9 of 10 hours were spent
    torch.save(checkpoint, tmp_path / "spent.ckpt")
    train_run([*timed, f"ckpt_path={tmp_path / 'spent.ckpt'}"], tmp_path / "second")
    rows = pd.read_csv(tmp_path / "second" / "csv" / "metrics.csv").dropna(subset=["train/lr"])
    # after the first resumed step, progress is the further of steps (3/4) and time (0.9 and
    # a few seconds): the restored Timer sets the learning rate, not a restarted one
    assert rows["train/lr"].iloc[1] == pytest.approx(LR * Cosine()(0.9), rel=0.05)
    resumed = load(tmp_path / "second" / "checkpoints" / "last.ckpt")
    assert resumed["callbacks"]["Timer"]["time_elapsed"]["train"] > 0.9 * budget


class Payload:
    """Unpickling this runs code (creates ``flag``): what a malicious checkpoint would do."""

    def __init__(self, flag: Path):
        self.flag = flag

    def __reduce__(self):
        return (Path.touch, (self.flag,))


def test_resume_from_a_checkpoint_that_runs_code_is_refused(synthetic_overrides, tmp_path):
    flag = tmp_path / "ran"
    hparams = {"net": {"_target_": "cellseg.models.nets.googlenet_fcn.GoogLeNetFCN"}, "data": {}, "postprocess": {}}
    torch.save({"state_dict": {}, "hyper_parameters": hparams, "loops": Payload(flag)}, tmp_path / "evil.ckpt")
    with pytest.raises(CellsegError, match="refused"):
        train_run([*synthetic_overrides, f"ckpt_path={tmp_path / 'evil.ckpt'}"], tmp_path / "run")
    assert not flag.exists()


def test_checkpoint_write_killed_midway_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 4}, path)

    def dies_while_writing(obj, file):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # stands in for SIGKILL

    monkeypatch.setattr(torch, "save", dies_while_writing)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"global_step": 8}, path)
    monkeypatch.undo()
    assert load(path)["global_step"] == 4
