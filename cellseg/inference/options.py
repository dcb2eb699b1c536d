"""Check every ``predict.py`` option at start-up: known names, types and ranges.

An unknown option (``+thresold=0.3``) or a value out of range (``overlap=-5``,
``threshold=2``) stops the run with one line that names the option and what to do,
before any model is loaded or file written.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cellseg.errors import CellsegError
from cellseg.postprocess import RANGES
from cellseg.tracking.tracker import RANGES as TRACKER_RANGES
from cellseg.utils.numbers import shown

CONF = Path(__file__).resolve().parents[2] / "conf"
GROUPS = ("postprocess", "tracker", "paths")
CHOICES = {
    "device": ("auto", "cpu", "cuda"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "compile": (True, False, "auto"),
    "track": (True, False, "auto"),
}
FLAGS = ("overwrite", "skip_existing", "tta", "save_prob", "save_overlay", "save_tracks", "save_rois")
PATHS = ("ckpt", "input", "output", "gt")
REQUIRED = ("ckpt", "input")


def known_keys() -> dict[str, Any]:
    """Option names of ``predict.yaml`` and of its config groups (nested dicts for groups)."""
    base = OmegaConf.to_container(OmegaConf.load(CONF / "predict.yaml"))
    keys: dict[str, Any] = {k: v if isinstance(v, dict) else None for k, v in base.items() if k != "defaults"}
    for group in GROUPS:
        names: dict[str, None] = {}
        for file in sorted((CONF / group).glob("*.yaml")):
            names.update(dict.fromkeys(OmegaConf.to_container(OmegaConf.load(file)) or {}))
        keys[group] = names
    return keys


def unknown_options(cfg: dict, known: dict, prefix: str = "") -> list[str]:
    """Dotted names in ``cfg`` that ``known`` does not have, with a close match if there is one."""
    found = []
    for key, value in cfg.items():
        if key == "hydra":
            continue
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            found.append(f"{prefix}{key}" + (f" (did you mean {prefix}{close[0]}?)" if close else ""))
        elif isinstance(value, dict) and isinstance(known[key], dict):
            found += unknown_options(value, known[key], f"{prefix}{key}.")
    return found


def _number(
    cfg: DictConfig,
    key: str,
    low: float,
    high: float,
    integer: bool = False,
    open_low: bool = False,
    required: bool = False,
):
    """Refuse ``key`` unless it is a number in range (NaN is not); None passes unless ``required``."""
    value = OmegaConf.select(cfg, key)
    if value is None and not required:
        return
    kind = "an integer" if integer else "a number"
    is_number = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not is_number:
        raise CellsegError(f"{key}={value!r}: must be {kind} in [{shown(low)}, {shown(high)}]")
    if not low <= value <= high or (open_low and value == low):
        bracket = "(" if open_low else "["
        raise CellsegError(f"{key}={value!r}: out of range; use {kind} in {bracket}{shown(low)}, {shown(high)}]")


def check_options(cfg: DictConfig) -> None:
    """Raise :class:`CellsegError` for the first bad option of a ``predict.py`` config."""
    for key in REQUIRED:
        if OmegaConf.is_missing(cfg, key) or cfg[key] in (None, ""):
            raise CellsegError(f"{key}= is required: python predict.py ckpt=PATH input=PATH [output=DIR]")
    unknown = unknown_options(OmegaConf.to_container(cfg), known_keys())
    if unknown:
        raise CellsegError(f"unknown option {unknown[0]}; `python predict.py --cfg job` lists them with their defaults")
    for key, choices in CHOICES.items():
        if not any(cfg[key] == choice and type(cfg[key]) is type(choice) for choice in choices):  # track=1 is not true
            raise CellsegError(f"{key}={cfg[key]!r}; use one of {', '.join(str(c).lower() for c in choices)}")
    for key in FLAGS:
        if not isinstance(cfg[key], bool):
            raise CellsegError(f"{key}={cfg[key]!r}; use true or false")
    if cfg.overwrite and cfg.skip_existing:
        raise CellsegError("overwrite=true and skip_existing=true contradict each other; choose one")
    _number(cfg, "tile", 32, 2**16, integer=True)
    if cfg.tile % 32:
        raise CellsegError(f"tile={cfg.tile}: must be a multiple of 32 (the network's stride)")
    _number(cfg, "overlap", 0, cfg.tile - 1, integer=True)
    _number(cfg, "batch_size", 1, 4096, integer=True)
    _number(cfg, "compile_min_frames", 1, 2**31, integer=True)
    _number(cfg, "overlay_every", 1, 2**31, integer=True)
    _number(cfg, "threshold", 0, 1, open_low=True)
    _number(cfg, "min_snr", 0, 1e6)
    _number(cfg, "channel", 0, 2**16, integer=True)
    _number(cfg, "norm.low", 0, 100)
    _number(cfg, "norm.high", 0, 100)
    if cfg.norm.low is not None and cfg.norm.high is not None and cfg.norm.low >= cfg.norm.high:
        raise CellsegError(f"norm.low={cfg.norm.low} must be below norm.high={cfg.norm.high}")
    for name, (kind, low, high, open_low) in RANGES.items():
        for key in (name, f"postprocess.{name}"):  # min_size=, h=, min_prob= and the group's own
            if OmegaConf.select(cfg, key) != "auto":
                _number(cfg, key, low, high, integer=kind is int, open_low=open_low)
    tracker = cfg.get("tracker") or {}
    for name, (kind, low, high, open_low) in TRACKER_RANGES.items():
        if name in tracker:  # the overlap tracker's options; tracker=none has none
            _number(cfg, f"tracker.{name}", low, high, integer=kind is int, open_low=open_low, required=True)
    if "divisions" in tracker and not isinstance(tracker.divisions, bool):
        raise CellsegError(f"tracker.divisions={tracker.divisions!r}; use true or false")
    for key in PATHS:
        if cfg[key] is not None and not isinstance(cfg[key], str):
            raise CellsegError(f"{key}={cfg[key]!r}: expected a path; quote it: {key}=\"'{cfg[key]}'\"")


def expand_path(value: str | None) -> Path | None:
    """A user path with ``~`` expanded."""
    return None if value is None else Path(str(value)).expanduser()
