"""Test numbers over seeds and folds: ``python -m cellseg.crossval [options] [train overrides]``.

Every run is a real ``train.py`` run in its own folder; its test numbers (``result.json``:
held-out frames and ``data.test_sequence``, which chose nothing) are collected into
``crossval.csv`` and summarized as mean ± sd in ``crossval.json`` and on the last lines.

Options (the other arguments go to ``train.py`` unchanged):
    folds=leave_one_out  each annotated frame is the test frame once (default); frames within
                         ``data.test_gap`` of it are left out, validation is the configured
                         ``data.val_frames`` unless near the test frame, else the frame
                         farthest from it
    folds=none           the configured split only (seeds are then the repeats)
    seeds=[1,2,3]        one run per seed and fold
    out=DIR              where the runs go (default ``logs/crossval/<time>``)

Example: ``python -m cellseg.crossval +experiment=mes_edge_weight seeds=[1,2,3] data.test_sequence=null``
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException
from hydra.utils import instantiate

from cellseg.data.datamodule import frame_time, near
from cellseg.errors import CellsegError
from cellseg.outputs.atomic import write_json, write_with
from cellseg.sweep import tested_numbers
from cellseg.utils import resolvers  # noqa: F401  (registers ${cellseg.*:} resolvers)
from cellseg.utils.task import check_arguments, path_override

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = ("folds", "seeds", "out")
TEST_KEYS = ("seg", "ap50", "ap", "merges", "splits", "false_positives", "misses")  # a finished run has them


def parse(argv: list[str]) -> tuple[dict, list[str]]:
    """``(options of this command, overrides for train.py)``."""
    options = {"folds": "leave_one_out", "seeds": "[1,2,3]", "out": None}
    overrides = []
    for arg in argv:
        key, _, value = arg.partition("=")
        if arg.startswith("-"):
            raise CellsegError(f"{arg}: crossval takes options as key=value only; see python train.py --help for those")
        if key in OPTIONS:
            options[key] = value
        else:
            overrides.append(arg)
    if options["folds"] not in ("leave_one_out", "none"):
        raise CellsegError(f"folds={options['folds']}: use leave_one_out or none")
    try:
        options["seeds"] = [int(s) for s in options["seeds"].strip("[]").split(",") if s.strip()]
    except ValueError:
        raise CellsegError(f"seeds={options['seeds']}: give whole numbers, e.g. seeds=[1,2,3]") from None
    if any(not 0 <= seed < 2**32 for seed in options["seeds"]):
        raise CellsegError(f"seeds={options['seeds']}: seeds are whole numbers from 0 to 4294967295")
    if not options["seeds"]:
        raise CellsegError("seeds=[]: give at least one seed, e.g. seeds=[1,2,3]")
    if len(set(options["seeds"])) < len(options["seeds"]):
        raise CellsegError(f"seeds={options['seeds']}: a seed given twice would count one run twice")
    return options, overrides


def annotated_frames(overrides: list[str]) -> tuple[list[str], list[str], int]:
    """Names of the annotated frames the config trains on, its validation frames and test gap."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    data = instantiate(cfg.data)
    data.prepare_data()  # checks the data options; generates the built-in set on first use
    names = [frame.name for frame in data.annotated()]
    if data.val_region or data.test_region:
        raise CellsegError("folds=leave_one_out holds out whole frames; with data.val_region use folds=none")
    return names, list(data.val_frames or []), data.test_gap


def distance(a: str, b: str) -> float:
    """Time points between two frames of one sequence (infinite across sequences or unnumbered)."""
    ta, tb = frame_time(a), frame_time(b)
    return abs(ta[1] - tb[1]) if ta and tb and ta[0] == tb[0] else float("inf")


def folds(names: list[str], val_frames: list[str], gap: int) -> list[tuple[str, list[str]]]:
    """``(test frame, validation frames)`` of each leave-one-frame-out fold."""
    result = []
    for test in names:
        others = [n for n in names if not near(n, [test], gap)]
        val = [n for n in val_frames if n in others]
        if not val and len(others) >= 2:
            val = [max(others, key=lambda n: distance(n, test))]
        if len(others) < 2:
            raise CellsegError(
                f"folds=leave_one_out: testing on {test} leaves {len(others)} frame(s) (data.test_gap={gap}); "
                "at least two are needed, one to train and one to validate"
            )
        result.append((test, val))
    return result


def run_plan(options: dict, overrides: list[str]) -> list[tuple[str, list[str]]]:
    """``(run name, extra overrides)`` of every run."""
    splits = [("split", [])]
    if options["folds"] == "leave_one_out":
        names, val_frames, gap = annotated_frames(overrides)
        splits = [
            (f"test_{test}", [f"data.test_frames=[{test}]", f"data.val_frames=[{','.join(val)}]"])
            for test, val in folds(names, val_frames, gap)
        ]
    return [(f"{name}/seed_{seed}", [*extra, f"seed={seed}"]) for name, extra in splits for seed in options["seeds"]]


def finished(run_dir: Path, overrides: list[str]) -> bool:
    """Whether ``run_dir`` holds a finished run of exactly ``overrides`` (train.py's ``result.json``
    records them); a run of other options, or a damaged record, is refused rather than counted."""
    path = run_dir / "result.json"
    if not path.exists():
        return False
    try:
        result = json.loads(path.read_text())
        done, best, test = result["overrides"], result["best"], result.get("test", {})
        if not isinstance(done, list) or not isinstance(best, dict) or not isinstance(test, dict):
            raise TypeError("not train.py's record")
        if test and not all(isinstance(test.get(key), (int, float)) for key in TEST_KEYS):
            raise TypeError(f"its test numbers lack one of {', '.join(TEST_KEYS)}")
    except (ValueError, KeyError, TypeError) as err:
        raise CellsegError(
            f"{path}: unreadable ({type(err).__name__}: {err}); delete {run_dir} to run it again"
        ) from err
    if sorted(map(str, done)) != sorted(overrides):
        raise CellsegError(
            f"{run_dir}: holds a run of other options ({' '.join(map(str, done))[:120]}); "
            "choose another out= for this command"
        )
    return True


def result_row(run_dir: Path) -> dict:
    """The test numbers of one finished run (and its best validation SEG), named as in the
    sweep tables: ``val/seg``, ``test/...``, ``test_sequence/...``."""
    result = json.loads((run_dir / "result.json").read_text())
    return {"val/seg": result["best"].get("val/seg"), **tested_numbers(result)}


def summarize(rows: pd.DataFrame) -> dict:
    """Mean, sd and count of every numeric column."""
    numeric = rows.select_dtypes("number").drop(columns=["seed"], errors="ignore")
    return {c: {"mean": float(numeric[c].mean()), "sd": float(numeric[c].std(ddof=1)) if len(numeric) > 1 else 0.0,
                "n": int(numeric[c].count())} for c in numeric}  # fmt: skip


def main(argv: list[str]) -> None:
    """Run every fold and seed with ``train.py``, then write and print the summary."""
    options, overrides = parse(argv)
    out = Path(options["out"] or ROOT / "logs" / "crossval" / time.strftime("%Y-%m-%d_%H-%M-%S")).expanduser()
    if out.exists() and not out.is_dir():
        raise CellsegError(f"out={out}: is a file; give a folder for the runs")
    plan = run_plan(options, overrides)
    if not plan:
        raise CellsegError("no annotated frame to cross-validate on; check data.root and data.use_frames")
    rows = []
    for index, (name, extra) in enumerate(plan, 1):
        run_dir = out / name
        if not finished(run_dir, [*overrides, *extra]):  # a re-run of the same command finishes what is missing
            print(f"[{index}/{len(plan)}] {name}: python train.py {' '.join([*overrides, *extra])}", flush=True)
            run_dir_option = path_override("hydra.run.dir", run_dir)
            command = [sys.executable, str(ROOT / "train.py"), *overrides, *extra, run_dir_option]
            if subprocess.run(command, cwd=ROOT).returncode != 0:
                raise CellsegError(f"{run_dir}: the run {name} failed (its output is above); fix it and run again")
            if not finished(run_dir, [*overrides, *extra]):
                raise CellsegError(f"{run_dir}: the run {name} wrote no result.json; fix its options and run again")
        rows.append({"run": name, "seed": int(name.rsplit("_", 1)[1]), **result_row(run_dir)})
    table = pd.DataFrame(rows)
    write_with(out / "crossval.csv", lambda tmp: table.to_csv(tmp, index=False))
    summary = summarize(table)
    write_json(out / "crossval.json", {"command": ["python", "-m", "cellseg.crossval", *argv], "runs": len(rows),
                                       "summary": summary})  # fmt: skip
    for key, stats in summary.items():
        print(f"{key}: {stats['mean']:.3f} ± {stats['sd']:.3f} (n={stats['n']})")
    print(f"{len(rows)} runs; table in {out / 'crossval.csv'}, summary in {out / 'crossval.json'}")


if __name__ == "__main__":
    check_arguments([arg for arg in sys.argv[1:] if arg.partition("=")[0] not in OPTIONS], "train")  # train.py's
    try:
        main(sys.argv[1:])
    except (CellsegError, HydraException) as err:
        print(f"cellseg: error: {err}".splitlines()[0], file=sys.stderr)
        sys.exit(2)
