"""Build networks, optimizers and schedules from plain specs, by name, never by import.

A spec is a dict like a Hydra node: ``{"_target_": NAME, **arguments}``. Specs come from
configs *and* from checkpoints (``hyper_parameters``), which other people send, so they
are never handed to ``hydra.utils.instantiate`` (that would call whatever ``_target_``
names, nested nodes included). ``NAME`` must be one of the classes below and every
argument a plain value (number, string, bool, None, or a list of those) that the class
accepts; anything else is refused with one :class:`CellsegError` line.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from cellseg.errors import CellsegError
from cellseg.models import schedules
from cellseg.models.nets.googlenet_fcn import GoogLeNetFCN
from cellseg.models.nets.googlenet_skip import GoogLeNetSkip

NETS: dict[str, type] = {
    "cellseg.models.nets.googlenet_fcn.GoogLeNetFCN": GoogLeNetFCN,
    "cellseg.models.nets.googlenet_skip.GoogLeNetSkip": GoogLeNetSkip,
}
OPTIMIZERS: dict[str, type] = {
    "torch.optim.RMSprop": torch.optim.RMSprop,
    "torch.optim.AdamW": torch.optim.AdamW,
    "torch.optim.Adam": torch.optim.Adam,
    "torch.optim.SGD": torch.optim.SGD,
}
SCHEDULES: dict[str, type] = {
    "cellseg.models.schedules.Cosine": schedules.Cosine,
    "cellseg.models.schedules.Step": schedules.Step,
    "cellseg.models.schedules.Exponential": schedules.Exponential,
}
PLAIN = (bool, int, float, str, type(None))


def _is_plain(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    return isinstance(value, PLAIN)


def checked_spec(spec: Any, known: dict[str, type], kind: str, source: str = "config") -> tuple[type, dict]:
    """The class named by ``spec`` and its keyword arguments, or a one-line refusal."""
    if not isinstance(spec, dict) or not isinstance(spec.get("_target_"), str):
        raise CellsegError(f"{source}: the {kind} spec is not a dict with a _target_ name; use a cellseg {kind}")
    name = spec["_target_"]
    if name not in known:
        raise CellsegError(f"{source}: unknown {kind} {name[:80]!r}; cellseg builds only {', '.join(sorted(known))}")
    kwargs = {k: v for k, v in spec.items() if k != "_target_"}
    bad = [k for k, v in kwargs.items() if not isinstance(k, str) or k.startswith("_") or not _is_plain(v)]
    if bad:
        raise CellsegError(
            f"{source}: {kind} option {str(bad[0])[:40]!r} is not a plain value (number, string, bool or list); "
            "refused, only plain options are accepted"
        )
    params = inspect.signature(known[name]).parameters
    unknown = [k for k in kwargs if k not in params and k != "params"]
    if unknown:
        raise CellsegError(f"{source}: {name} has no option {unknown[0]!r}; remove it")
    return known[name], kwargs


def build_net(spec: Any, source: str = "config", **overrides: Any) -> torch.nn.Module:
    """A network from its spec (``model`` config or a checkpoint's ``hyper_parameters.net``)."""
    cls, kwargs = checked_spec(spec, NETS, "model", source)
    try:
        return cls(**{**kwargs, **overrides})
    except (TypeError, ValueError, RuntimeError) as err:  # e.g. out_channels='abc' or -1
        raise CellsegError(
            f"{source}: {spec['_target_']} cannot be built from {str(kwargs)[:120]} ({str(err).splitlines()[0][:100]})"
        ) from err


def build_optimizer(spec: Any, params: Any, lr: float, source: str = "config") -> torch.optim.Optimizer:
    """An optimizer over ``params`` from its spec, with learning rate ``lr``."""
    cls, kwargs = checked_spec(spec, OPTIMIZERS, "optimizer", source)
    return cls(params, **{**kwargs, "lr": lr})


def build_schedule(spec: Any, source: str = "config") -> Any:
    """A learning-rate schedule (progress in [0, 1] -> factor) from its spec."""
    cls, kwargs = checked_spec(spec, SCHEDULES, "scheduler", source)
    return cls(**kwargs)
