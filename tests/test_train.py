"""Real training runs: Lightning Trainer, checkpoints, resume, DDP, W&B offline, errors."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
import torch

from cellseg.errors import CellsegError

from .conftest import FAST, ROOT, compose_cfg, shared, train_run

EXPERIMENTS = {"mes_edge_weight": "gowt1", "bacteria_edge_weight": "bacteria-phase"}
DEV_RUN = ["trainer.fast_dev_run=true", "data.crop_size=64", "data.batch_size=2", "logger=csv"]


def load(path):
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_fast_dev_run_on_synthetic(experiment, synthetic_root, tmp_path):
    overrides = [f"+experiment={experiment}", f"data.root={synthetic_root}", "data.layout=auto", *DEV_RUN]
    seg = train_run(overrides, tmp_path)
    assert 0.0 <= seg <= 1.0  # one training and one validation batch ran


@pytest.mark.shared_data
@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_fast_dev_run_on_real_data(experiment, tmp_path):
    shared(EXPERIMENTS[experiment])
    seg = train_run([f"+experiment={experiment}", *DEV_RUN], tmp_path)
    assert 0.0 <= seg <= 1.0


def test_short_run_leaves_both_checkpoints_loadable(synthetic_overrides, tmp_path):
    best = train_run(synthetic_overrides, tmp_path)
    assert best is not None
    for name in ("best.ckpt", "last.ckpt"):
        checkpoint = load(tmp_path / "checkpoints" / name)  # weights_only=True
        assert checkpoint["global_step"] == 2
        hparams = checkpoint["hyper_parameters"]
        assert hparams["net"]["_target_"].endswith("GoogLeNetFCN")
        assert hparams["data"]["norm"] == {"low": 1.0, "high": 99.8}
        assert 0 < float(checkpoint["state_dict"]["threshold"]) < 1
    assert (tmp_path / "csv" / "hparams.yaml").is_file()


@pytest.mark.slow
def test_training_beats_the_untrained_model(synthetic_root, tmp_path):
    import lightning as L

    overrides = [
        f"data.root={synthetic_root}",
        "data.val_frames=[syn_003]",
        "data.crop_size=128",
        "data.batch_size=8",
        "data.samples_per_epoch=320",
        "trainer.max_steps=80",
        "monitor.metric=val/auc",
        "logger=csv",
    ]
    cfg = compose_cfg(overrides, tmp_path / "untrained")
    from hydra.utils import instantiate

    from cellseg.tasks import build_module

    L.seed_everything(0)
    untrained = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    (before,) = untrained.validate(build_module(cfg), datamodule=instantiate(cfg.data), verbose=False)
    after = train_run(overrides, tmp_path / "trained")
    print(f"val/auc untrained {before['val/auc']:.3f}, trained {after:.3f}")
    assert after > before["val/auc"] + 0.2, (before, after)


def test_resume_continues_from_the_saved_step(synthetic_overrides, tmp_path):
    train_run(synthetic_overrides, tmp_path / "first")
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    train_run([*synthetic_overrides, "trainer.max_steps=4", f"ckpt_path={last}"], tmp_path / "second")
    resumed = load(tmp_path / "second" / "checkpoints" / "last.ckpt")
    assert resumed["global_step"] == 4
    steps = pd.read_csv(tmp_path / "second" / "csv" / "metrics.csv")["step"]
    assert steps.min() >= 2  # nothing was trained again from step 0


def test_resume_with_another_model_is_refused(synthetic_overrides, tmp_path):
    train_run(synthetic_overrides, tmp_path / "first")
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    with pytest.raises(CellsegError, match="model= option"):
        train_run([*synthetic_overrides, "model=googlenet_skip", f"ckpt_path={last}"], tmp_path / "second")


def test_corrupt_resume_checkpoint_is_refused(synthetic_overrides, tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(CellsegError, match="corrupt or truncated"):
        train_run([*synthetic_overrides, f"ckpt_path={bad}"], tmp_path / "run")


def test_existing_run_is_not_overwritten(synthetic_overrides, tmp_path):
    train_run(synthetic_overrides, tmp_path)
    before = (tmp_path / "checkpoints" / "best.ckpt").read_bytes()
    with pytest.raises(CellsegError, match="earlier run"):
        train_run(synthetic_overrides, tmp_path)
    assert (tmp_path / "checkpoints" / "best.ckpt").read_bytes() == before


def test_wandb_runs_offline_and_is_closed(synthetic_overrides, tmp_path):
    import wandb

    train_run([*synthetic_overrides, "logger=wandb"], tmp_path)
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))
    assert wandb.run is None


def run_cli(*overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_ddp_spawn_two_cpu_processes(synthetic_overrides, tmp_path):
    result = run_cli(*synthetic_overrides, "hardware=ddp_spawn", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MEMBER: 2/2" in result.stderr + result.stdout
    checkpoint = load(tmp_path / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 2


def test_cli_bad_input_is_one_line(tmp_path):
    result = run_cli("data=folder", f"data.root={tmp_path / 'missing'}", f"hydra.run.dir={tmp_path / 'run'}", *FAST)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("cellseg: error:") and "missing" in lines[-1]
    assert "Traceback" not in result.stderr
