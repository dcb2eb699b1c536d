"""Multirun summary: one row per job, best first, in ``summary.csv`` of the sweep folder; where
jobs differ only in ``seed``, one row per setting with the mean and sd over its seeds in
``summary_seeds.csv``.

Validation columns (``val/...``) are those of each job's best checkpoint: they picked it, so
they rank the jobs. Test columns (``test/...``: held-out frames; ``test_sequence/...``: a whole
movie) come from the test stage, which chose nothing: those are the figures to report.

``python -m cellseg.sweep DIR [metric=val/seg] [mode=max]`` writes and prints the same tables
for a folder of finished runs (an interrupted sweep, or runs started one by one).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from cellseg.errors import CellsegError
from cellseg.outputs.atomic import write_with

log = logging.getLogger(__name__)
COLUMNS = ("val/seg", "val/ap50", "val/auc")
TEST_SECTIONS = ("test", "test_sequence")  # result.json's test stage: held-out frames, a movie
SHOWN_TESTS = ("test/seg", "test/ap50", "test/merges", "test_sequence/TRA", "test_sequence/DET", "test_sequence/SEG")
SEED_KEYS = ("seed", "+seed", "++seed")


def tested_numbers(result: dict) -> dict[str, float]:
    """The numbers of a job's test stage, as ``test/<name>`` and ``test_sequence/<name>``
    (counts of frames and failed tests left out)."""
    numbers = {}
    for section in TEST_SECTIONS:
        scores = result.get(section)
        for name, value in scores.items() if isinstance(scores, dict) else ():
            if name != "frames" and isinstance(value, (int, float)) and not isinstance(value, bool):
                numbers[f"{section}/{name}"] = float(value)
    return numbers


def setting_of(overrides: list) -> str:
    """A job's overrides without its seed: the jobs of one setting share it."""
    return " ".join(str(o) for o in overrides if str(o).partition("=")[0] not in SEED_KEYS)


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
                "setting": setting_of(overrides),
                metric: best.get(metric),
                **{column: best.get(column) for column in COLUMNS if column != metric},
                "step": best.get("step"),
                **tested_numbers(result),
                "run_dir": str(path.parent),
            }
        )
    table = pd.DataFrame(rows)
    if not table.empty:
        table["step"] = table["step"].astype("Int64")
        table = table.sort_values(metric, ascending=mode == "min", na_position="last", kind="stable")
        table = table[[c for c in table.columns if c != "run_dir"] + ["run_dir"]]  # tests of some jobs only
    return table


def over_seeds(table: pd.DataFrame, metric: str = "val/seg", mode: str = "max") -> pd.DataFrame:
    """One row per setting (the overrides but ``seed``): how many jobs, and the mean and sd
    (``<column> sd``, sample sd; 0 for one job) of every number over them, best mean first.
    Empty where no setting has two jobs."""
    if table.empty or table["setting"].value_counts().max() < 2:
        return pd.DataFrame()
    numbers = [c for c in table.columns if c not in ("step", "run_dir") and pd.api.types.is_numeric_dtype(table[c])]
    groups = table.groupby("setting", sort=False)
    means, sds = groups[numbers].mean(), groups[numbers].std(ddof=1).fillna(0.0)
    summary = pd.DataFrame({"setting": means.index, "jobs": groups.size().to_numpy()})  # same group order
    for column in numbers:
        summary[column] = means[column].to_numpy()
        summary[f"{column} sd"] = sds[column].to_numpy()
    if metric not in summary:  # no job recorded it
        return summary
    return summary.sort_values(metric, ascending=mode == "min", na_position="last", kind="stable")


def write_summaries(sweep_dir: Path, metric: str = "val/seg", mode: str = "max") -> bool:
    """Write ``summary.csv`` (and ``summary_seeds.csv`` where seeds repeat a setting) into
    ``sweep_dir`` and print them; False where the folder holds no finished job."""
    table = summarize(sweep_dir, metric, mode)
    if table.empty:
        return False
    write_with(sweep_dir / "summary.csv", lambda tmp: table.to_csv(tmp, index=False))
    shown = ["job", "overrides", metric, *(c for c in COLUMNS if c != metric), "step"]
    shown += [c for c in SHOWN_TESTS if c in table.columns]
    print_table(f"sweep {sweep_dir} (best {metric} first; val/: validation, test: chose nothing)", table, shown)
    seeds = over_seeds(table, metric, mode)
    if not seeds.empty:
        write_with(sweep_dir / "summary_seeds.csv", lambda tmp: seeds.to_csv(tmp, index=False))
        view = seeds[["setting", "jobs"]].copy()
        for column in [c for c in (metric, *SHOWN_TESTS) if c in seeds.columns]:
            view[column] = [f"{m:.3f} ± {s:.3f}" for m, s in zip(seeds[column], seeds[f"{column} sd"])]
        print_table(f"mean ± sd over seeds ({sweep_dir / 'summary_seeds.csv'})", view, list(view.columns))
    return True


def print_table(title: str, table: pd.DataFrame, columns: list[str]) -> None:
    """``columns`` of ``table`` as a terminal table."""
    view = Table(title=title)
    for column in columns:
        view.add_column(column)
    for row in table[columns].itertuples(index=False):
        view.add_row(*(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row))
    Console(width=200).print(view)


class SweepSummary(Callback):
    """Hydra callback: print and write the sweep tables when a multirun ends."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        metric = OmegaConf.select(config, "monitor.metric", default="val/seg")
        mode = OmegaConf.select(config, "monitor.mode", default="max")
        write_summaries(Path(config.hydra.sweep.dir), metric, mode)


def main(argv: list[str]) -> None:
    """``python -m cellseg.sweep DIR [metric=...] [mode=max|min]``."""
    folders = [a for a in argv if "=" not in a]
    options = dict(a.split("=", 1) for a in argv if "=" in a)
    if len(folders) != 1 or set(options) - {"metric", "mode"}:
        raise CellsegError("usage: python -m cellseg.sweep DIR [metric=val/seg] [mode=max|min]")
    if options.get("mode", "max") not in ("max", "min"):
        raise CellsegError(f"mode={options['mode']}: use max or min")
    sweep_dir = Path(folders[0]).expanduser()
    if not sweep_dir.is_dir():
        raise CellsegError(f"{sweep_dir}: no such folder; give a sweep folder (logs/<task>/multiruns/<time>)")
    if not write_summaries(sweep_dir, options.get("metric", "val/seg"), options.get("mode", "max")):
        raise CellsegError(f"{sweep_dir}: no finished job (no */result.json) in it; give a sweep folder")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except CellsegError as err:
        print(f"cellseg: error: {err}", file=sys.stderr)
        sys.exit(2)
