"""Multirun summary: one row per job, best first, in ``summary.csv`` of the sweep folder."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from cellseg.outputs.atomic import write_with

log = logging.getLogger(__name__)
COLUMNS = ("val/seg", "val/ap50", "val/auc")


def summarize(sweep_dir: str | Path, metric: str = "val/seg", mode: str = "max") -> pd.DataFrame:
    """Collect every job's ``result.json`` under ``sweep_dir``, sorted best first."""
    rows = []
    for path in sorted(Path(sweep_dir).glob("*/result.json")):
        try:
            result = json.loads(path.read_text())
            best, overrides = result.get("best") or {}, result.get("overrides", [])
            if not isinstance(best, dict) or not isinstance(overrides, list):
                raise TypeError("not train.py's record")
        except (ValueError, TypeError, AttributeError, OSError) as err:
            log.warning("%s: left out of the sweep summary, unreadable (%s: %s)", path, type(err).__name__, err)
            continue
        rows.append(
            {
                "job": path.parent.name,
                "overrides": " ".join(map(str, overrides)),
                metric: best.get(metric),
                **{column: best.get(column) for column in COLUMNS if column != metric},
                "step": best.get("step"),
                "run_dir": str(path.parent),
            }
        )
    table = pd.DataFrame(rows)
    if not table.empty:
        table["step"] = table["step"].astype("Int64")
        table = table.sort_values(metric, ascending=mode == "min", na_position="last", kind="stable")
    return table


class SweepSummary(Callback):
    """Hydra callback: print and write the sweep table when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        metric = OmegaConf.select(config, "monitor.metric", default="val/seg")
        mode = OmegaConf.select(config, "monitor.mode", default="max")
        sweep_dir = Path(config.hydra.sweep.dir)
        table = summarize(sweep_dir, metric, mode)
        if table.empty:
            return
        write_with(sweep_dir / "summary.csv", lambda tmp: table.to_csv(tmp, index=False))
        view = Table(title=f"sweep {sweep_dir} (best {metric} first)")
        for column in table.columns:
            view.add_column(column)
        for row in table.itertuples(index=False):
            view.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
        Console(width=200).print(view)
