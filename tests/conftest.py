"""Shared fixtures: Hydra config composition, a small synthetic data set, real data paths."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch import nn

from cellseg.data.synthetic import generate
from cellseg.utils import resolvers  # noqa: F401  (registers ${cellseg.*:})

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
SHARED = ROOT.parent / "shared" / "data"

os.environ["WANDB_MODE"] = "offline"
os.environ.setdefault("WANDB_SILENT", "true")

# Fast settings for a training test on the small synthetic set.
FAST = [
    "data.crop_size=128",
    "data.batch_size=4",
    "data.samples_per_epoch=8",
    "trainer.max_steps=2",
    "trainer.log_every_n_steps=1",
    "logger=csv",
]


def compose_cfg(overrides: list[str], out_dir: Path | None = None, config_name: str = "train") -> DictConfig:
    """Compose a config the way the entry point does, with its output in ``out_dir``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    if out_dir is not None:
        with open_dict(cfg):
            cfg.paths.output_dir = str(out_dir)
            cfg.paths.log_dir = str(out_dir)
            cfg.hydra.runtime.output_dir = str(out_dir)
            cfg.hydra.job.num = 0
        HydraConfig().set_config(cfg)
    return cfg


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """Four 256x256 synthetic frames (three to train, one to validate)."""
    return generate(tmp_path_factory.mktemp("synthetic"), n_frames=4, size=256, seed=1)


@pytest.fixture
def synthetic_overrides(synthetic_root) -> list[str]:
    """Overrides that point the default data config at the small synthetic set."""
    return [f"data.root={synthetic_root}", "data.val_frames=[syn_003]", "data.test_frames=null", *FAST]


def shared(name: str) -> Path:
    """A real data set under ../shared/data, or skip the test when it is absent."""
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"{path} not present")
    return path


def train_run(overrides: list[str], out_dir: Path) -> float | None:
    """Run :func:`cellseg.tasks.train` in this process, as ``train.py`` would."""
    from cellseg.tasks import train
    from cellseg.utils.task import finish_wandb

    cfg = compose_cfg(overrides, out_dir)
    try:
        return train(cfg)
    finally:
        finish_wandb()


@pytest.fixture(scope="session")
def trained_ckpt(tmp_path_factory) -> Path:
    """A model trained briefly on synthetic frames, shared by the prediction tests.

    The skip variant: at stride 32 the faithful head needs far more steps on small nuclei.
    """
    root = generate(tmp_path_factory.mktemp("synthetic_train"), n_frames=4, size=256, seed=2)
    out = tmp_path_factory.mktemp("trained")
    train_run(
        [
            f"data.root={root}",
            "data.val_frames=[syn_003]",
            "data.test_frames=null",
            "data.crop_size=128",
            "data.batch_size=8",
            "data.samples_per_epoch=400",
            "model=googlenet_skip",
            "trainer.max_steps=150",
            "logger=csv",
        ],
        out,
    )
    return out / "checkpoints" / "best.ckpt"


def calibrate_batchnorm(net: nn.Module, shape: tuple[int, ...] = (2, 1, 96, 128)) -> nn.Module:
    """Give every BatchNorm the statistics of one random batch and return ``net`` in eval mode.

    At random init the encoder's features shrink to ~1e-11 under default statistics, so a
    wrong head or a wrong fold would go unnoticed; calibrated, every layer carries signal.
    """
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: exactly this batch's statistics
    net.train()
    with torch.no_grad():
        net(torch.randn(shape))
    return net.eval()
