"""Load cellseg checkpoints safely (``weights_only=True``) with clear errors."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from cellseg.errors import CellsegError

REQUIRED_HPARAMS = ("net", "data", "postprocess")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a cellseg checkpoint without executing code from it; check what it holds."""
    path = Path(path)
    if not path.is_file():
        raise CellsegError(f"{path}: checkpoint not found; pass ckpt=PATH to a .ckpt from a training run")
    if not zipfile.is_zipfile(path):
        raise CellsegError(f"{path}: corrupt or truncated checkpoint (not a torch zip file); use another .ckpt")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CellsegError(
            f"{path}: refused: the checkpoint holds objects other than tensors and plain data "
            f"({str(err).splitlines()[0][:120]}); only load checkpoints you trust, from cellseg"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CellsegError(f"{path}: corrupt or truncated checkpoint ({err}); use another .ckpt") from err
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if not hparams or any(key not in hparams for key in REQUIRED_HPARAMS) or "state_dict" not in checkpoint:
        raise CellsegError(f"{path}: not a cellseg model checkpoint; use a .ckpt written by train.py")
    return checkpoint
