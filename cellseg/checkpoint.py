"""Load cellseg checkpoints safely (``weights_only=True``) and check everything they hold.

A checkpoint is a file other people send. Loading never runs code from it, and every value
cellseg later uses (normalization, edge width, post-processing, threshold, weights) is
checked here to be plain, in range and finite, so a damaged or crafted file is refused with
one line instead of failing later or giving silently wrong cells.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from cellseg.errors import CellsegError
from cellseg.postprocess import METHODS, RANGES
from cellseg.utils.numbers import number_problem

REQUIRED_HPARAMS = ("net", "data", "postprocess")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a cellseg checkpoint without executing code from it; check what it holds."""
    path = Path(path)
    if not path.is_file():
        raise CellsegError(f"{path}: checkpoint not found; pass ckpt=PATH to a .ckpt from a training run")
    if not zipfile.is_zipfile(path):
        raise CellsegError(f"{path}: corrupt or truncated checkpoint (not a torch zip file); use another .ckpt")
    try:
        with zipfile.ZipFile(path) as archive:  # the CRC of every record: flipped bytes in the weights
            has_crcs = any(info.CRC for info in archive.infolist())  # torch can save without them
            damaged = archive.testzip() if has_crcs else None
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CellsegError(
            f"{path}: refused: the checkpoint holds objects other than tensors and plain data "
            f"({str(err).splitlines()[0][:120]}); only load checkpoints you trust, from cellseg"
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CellsegError(f"{path}: corrupt or truncated checkpoint ({err}); use another .ckpt") from err
    if damaged is not None:
        raise CellsegError(f"{path}: corrupt checkpoint (record {damaged} fails its checksum); use another .ckpt")
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    if (
        not isinstance(hparams, dict)
        or any(key not in hparams for key in REQUIRED_HPARAMS)
        or not isinstance(checkpoint.get("state_dict"), dict)
    ):
        raise CellsegError(f"{path}: not a cellseg model checkpoint; use a .ckpt written by train.py")
    problem = _weights_problem(checkpoint["state_dict"]) or options_problem(hparams)
    if problem:
        raise CellsegError(f"{path}: refused: {problem}; use a .ckpt written by train.py")
    return checkpoint


def _weights_problem(state_dict: dict) -> str | None:
    """Why the tensors of ``state_dict`` cannot be used, or None."""
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state_dict.items()):
        return "state_dict holds entries that are not named tensors"
    threshold = state_dict.get("threshold")
    if threshold is not None:
        if threshold.numel() != 1:
            return "the stored threshold is not one number"
        problem = number_problem("the stored threshold", float(threshold), float, 0, 1, False)
        if problem:
            return problem
    roc = state_dict.get("roc_curve")
    if roc is not None and (roc.dtype != torch.float32 or roc.ndim != 2 or roc.shape[0] != 2):
        return f"the stored ROC curve is {roc.dtype} of shape {tuple(roc.shape)}, not float32 (2, N)"
    if not all(torch.isfinite(v).all() for v in state_dict.values() if v.is_floating_point()):
        return "the weights hold NaN or infinite values (a diverged or damaged training)"
    return None


def options_problem(hparams: dict) -> str | None:
    """Why the normalization, edge width or post-processing of ``hparams`` cannot be used, or
    None. Training checks its own options with it first, so it never writes a checkpoint that
    prediction would refuse."""
    data, post, net = hparams["data"], hparams["postprocess"], hparams.get("net")
    if isinstance(net, dict) and net.get("in_channels", 1) != 1:
        return f"net.in_channels={net['in_channels']!r}, but cellseg feeds its networks one channel"
    norm = data.get("norm") if isinstance(data, dict) else None
    if not isinstance(norm, dict) or set(norm) != {"low", "high"}:
        return "data.norm is not exactly two numbers low/high"
    problem = number_problem("data.norm.low", norm["low"], (int, float), 0, 100, False) or number_problem(
        "data.norm.high", norm["high"], (int, float), 0, 100, False
    )
    if problem:
        return problem
    if norm["low"] >= norm["high"]:
        return f"data.norm.low={norm['low']} is not below data.norm.high={norm['high']}"
    problem = number_problem("data.edge_width", data.get("edge_width"), int, 0, 64, False)
    if problem:
        return problem
    if not isinstance(post, dict) or any(k != "method" and k not in RANGES for k in post):
        return "postprocess holds unknown options"
    if post.get("method", "threshold") not in METHODS:
        return f"postprocess.method is not one of {', '.join(METHODS)}"
    for key, (kind, low, high, open_low) in RANGES.items():
        if key in post:
            problem = number_problem(f"postprocess.{key}", post[key], kind, low, high, open_low)
            if problem:
                return problem
    return None
