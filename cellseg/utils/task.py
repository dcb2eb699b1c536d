"""What every entry point does around its task: W&B mode, one-line errors, cleanup."""

from __future__ import annotations

import logging
import netrc
import os
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig

from cellseg.errors import CellsegError

log = logging.getLogger(__name__)


def default_wandb_mode() -> None:
    """Run W&B offline unless the user chose a mode or has credentials.

    Set through the environment (not ``WandbLogger(offline=True)``, which leaks into later
    runs of the same process).
    """
    if "WANDB_MODE" in os.environ or os.environ.get("WANDB_API_KEY"):
        return
    try:
        logged_in = netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        logged_in = False
    if not logged_in:
        os.environ["WANDB_MODE"] = "offline"


def finish_wandb() -> None:
    """Close the W&B run of this job, if one is open, so the next job starts clean."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and wandb.run is not None:
        wandb.finish()


def check_arguments(argv: list[str]) -> None:
    """Stop with one line where Hydra's override parser would reject an argument with its own
    message: a value with spaces or non-ASCII characters must be quoted for Hydra."""
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key.startswith("-") or value[:1] in ("'", '"'):
            continue
        if any(ch.isspace() for ch in value) or not value.isascii():
            print(
                f"cellseg: error: {key}={value}: Hydra needs values with spaces or non-ASCII characters "
                f"quoted; write {key}=\"'{value}'\" (double quotes for the shell, single for Hydra)",
                file=sys.stderr,
            )
            sys.exit(2)


def run_task(task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run ``task``; turn a :class:`CellsegError` into one line on stderr and exit code 2."""
    default_wandb_mode()
    try:
        return task(cfg)
    except CellsegError as err:
        print(f"cellseg: error: {err}", file=sys.stderr)
        sys.exit(2)
    finally:
        finish_wandb()
