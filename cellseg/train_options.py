"""Check the numeric, flag and choice options of ``train.py`` before anything is built.

Lightning, torch and albumentations meet a wrong value late, as a traceback
(``optimizer.lr=abc``, ``trainer.check_val_every_n_epoch=0``) or not at all
(``trainer.max_steps=abc`` trained nothing, ``loss.edge_weight=-2`` trained towards the
edges' opposite): each gets one line naming the option here. An option a config group does
not have (``optimizer.alpha`` with ``optimizer=adam``) is not checked.
"""

from __future__ import annotations

import re

from omegaconf import DictConfig, OmegaConf

from cellseg.errors import CellsegError
from cellseg.metrics import ERROR_KINDS
from cellseg.utils.numbers import number_problem

NUMBER = (int, float)
# option: (type, low, high, low excluded, null allowed)
RANGES = {
    "optimizer.lr": (NUMBER, 0, 10, True, False),
    "optimizer.weight_decay": (NUMBER, 0, 1, False, False),
    "optimizer.momentum": (NUMBER, 0, 1, False, False),
    "optimizer.alpha": (NUMBER, 0, 1, False, False),
    "optimizer.eps": (NUMBER, 0, 1, True, False),
    "scheduler.final_factor": (NUMBER, 0, 1, False, False),
    "scheduler.gamma": (NUMBER, 0, 1, True, False),
    "loss.edge_weight": (NUMBER, 0, 1000, False, False),
    "loss.border_w0": (NUMBER, 0, 1000, False, False),
    "loss.border_sigma": (NUMBER, 0, 1000, True, False),
    "loss.dice_weight": (NUMBER, 0, 1000, False, False),
    "trainer.max_steps": (int, -1, 10**9, False, False),
    "trainer.max_epochs": (int, -1, 10**9, False, False),
    "trainer.check_val_every_n_epoch": (int, 1, 10**6, False, False),
    "trainer.log_every_n_steps": (int, 1, 10**6, False, False),
    "trainer.gradient_clip_val": (NUMBER, 0, 10**6, False, True),
    "data.augment.seam": (int, 0, 64, False, False),
    "callbacks.weight_averaging.decay": (NUMBER, 0, 1, True, False),
    "callbacks.weight_averaging.bn_batches": (int, 1, 10**4, False, False),
}
AUGMENT_FLAGS = ("roll", "flip", "rotate90", "rotate", "intensity", "clip")
FLAGS = ("optimizer.nesterov", *(f"data.augment.{k}" for k in AUGMENT_FLAGS))
MAX_TIME = re.compile(r"^\d+:\d{1,2}:\d{1,2}:\d{1,2}$")  # DD:HH:MM:SS, as Lightning's Timer reads it
MONITORED = tuple(f"val/{k}" for k in ("seg", "ap50", "ap", "f1", "precision", "recall", "auc", "loss", *ERROR_KINDS))


def check_training_options(cfg: DictConfig) -> None:
    """Raise :class:`CellsegError` for the first unusable option of a ``train.py`` config."""
    for key, (kind, low, high, open_low, nullable) in RANGES.items():
        value = OmegaConf.select(cfg, key, default=None)
        if value is None and (nullable or not _has(cfg, key)):
            continue
        problem = number_problem(key, value, kind, low, high, open_low)
        if problem:
            raise CellsegError(f"{problem}; change the option")
    for key in FLAGS:
        value = OmegaConf.select(cfg, key, default=None)
        if _has(cfg, key) and not isinstance(value, bool):
            raise CellsegError(f"{key}={value!r}: use true or false")
    milestones = OmegaConf.select(cfg, "scheduler.milestones", default=None)
    if milestones is not None and (
        not OmegaConf.is_list(milestones) or any(number_problem("", m, NUMBER, 0, 1, True) for m in milestones)
    ):
        raise CellsegError(f"scheduler.milestones={milestones!r}: use fractions of training, e.g. [0.5,0.75]")
    max_time = cfg.trainer.get("max_time")
    if max_time is not None and not (isinstance(max_time, str) and MAX_TIME.match(max_time)):
        raise CellsegError(f"trainer.max_time={max_time!r}: use DD:HH:MM:SS, e.g. 00:00:15:00 for 15 minutes")
    if cfg.model.get("out_channels", 2) != 2:
        raise CellsegError(
            f"model.out_channels={cfg.model.out_channels!r}: cellseg's networks predict 2 maps (interior, edge)"
        )
    if cfg.monitor.metric not in MONITORED:
        raise CellsegError(f"monitor.metric={cfg.monitor.metric!r}: use one of {', '.join(MONITORED)}")
    if cfg.monitor.mode not in ("max", "min"):
        raise CellsegError(f"monitor.mode={cfg.monitor.mode!r}: use max or min")


def _has(cfg: DictConfig, key: str) -> bool:
    """Whether the composed config has ``key`` (the chosen group may not)."""
    parent, _, name = key.rpartition(".")
    node = OmegaConf.select(cfg, parent, default=None)
    return isinstance(node, DictConfig) and name in node
