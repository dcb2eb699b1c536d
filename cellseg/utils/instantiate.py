"""Build callbacks and loggers from their config groups (dicts of ``_target_`` nodes)."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Every ``_target_`` node of a group such as ``callbacks`` or ``logger``."""
    if not group:
        return []
    return [instantiate(node) for node in group.values() if node and "_target_" in node]
