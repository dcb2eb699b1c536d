"""What every entry point does around its task: W&B mode, one-line errors, cleanup."""

from __future__ import annotations

import logging
import netrc
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, ValueType
from hydra.errors import ConfigCompositionException, HydraException, MissingConfigException
from omegaconf import DictConfig, OmegaConf

from cellseg.errors import CellsegError
from cellseg.inference.options import CONF, unknown_options
from cellseg.utils.subnormals import flush_subnormals_to_zero

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


# options whose values are paths: Hydra's grammar gives , [ ] { } ( ) = ' " and spaces meanings
PATH_KEYS = ("ckpt", "input", "output", "gt", "init_from", "ckpt_path", "data.root", "data.test_sequence")
# arguments that make a multirun without -m (their configs set hydra.mode), and the Hydra
# settings of a plain run (Lightning's DDP ranks add them); other Hydra settings (searchpath,
# launcher) change what composes, so the check leaves those command lines to Hydra
MULTIRUN_ARGS = ("hydra.mode=MULTIRUN", "sweep=", "hparams_search=")
RUN_SETTINGS = ("hydra.run.", "hydra.job.", "hydra.output_subdir", "hydra.verbose")
SWEEP_SETTINGS = ("hydra.sweep.", "hydra.mode=")  # a sweep's folder and mode leave its jobs' configs as they are
OUTPUT_DIRS = ("hydra.run.dir", "hydra.sweep.dir")
LISTED_SWEEPS = (ValueType.CHOICE_SWEEP, ValueType.SIMPLE_CHOICE_SWEEP, ValueType.RANGE_SWEEP)  # not glob, interval


def _quoted(key: str, value: str) -> str:
    """``key=value`` quoted for Hydra inside the shell's double quotes."""
    return f"{key}=\"'{value}'\"" if "'" not in value else f'{key}="\\"{value}\\""'


def path_override(key: str, path: str | Path) -> str:
    """``key='path'`` for a command line cellseg builds: Hydra's override lexer rejects spaces
    and non-ASCII letters outside quotes; backslashes before a quote (or the closing one) are
    doubled."""
    quoted = re.sub(r"(\\*)('|$)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), str(path))
    return f"{key}='{quoted}'"


def _refuse(message: str) -> NoReturn:
    print(f"cellseg: error: {message}", file=sys.stderr)
    sys.exit(2)


def check_arguments(argv: list[str], config_name: str | None = None) -> None:
    """Stop with one line (exit code 2) where Hydra would reject the command line with its own
    multi-line message: a path it cannot parse, a run or sweep folder under a file, and with
    ``config_name`` an unknown option or config group choice, in a sweep for each listed value
    (see :func:`first_jobs`). Command lines with other Hydra settings are left to Hydra."""
    parser = OverridesParser.create()
    multirun = any(arg in ("-m", "--multirun") or arg.lstrip("+").startswith(MULTIRUN_ARGS) for arg in argv)
    first_sweep: Override | None = None
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or arg.startswith("-") or value[:1] in ("'", '"'):
            continue
        if any(ch.isspace() for ch in value) or not value.isascii():
            _refuse(
                f"{key}={value}: Hydra needs values with spaces or non-ASCII characters quoted; "
                f"write {_quoted(key, value)} (double quotes for the shell, inner ones for Hydra)"
            )
        try:
            parsed = parser.parse_override(arg)
        except HydraException:
            parsed = None
        swept = parsed is not None and parsed.is_sweep_override()
        first_sweep = first_sweep or (parsed if swept else None)
        one_path = parsed is not None and isinstance(parsed.value(), (str, type(None)))
        if key.lstrip("+~") in PATH_KEYS and not one_path and not (multirun and swept):  # -m input=a,b sweeps
            _refuse(f"{key}={value}: Hydra does not read this as one path; write {_quoted(key, value)}")
        if parsed is None:
            _refuse(f"{arg}: Hydra cannot parse this override; quote the value: {_quoted(key, value)}")
    if first_sweep and not multirun:
        key, _, value = first_sweep.input_line.partition("=")
        single = (
            f"; for one value write {key}=[{value}] (a list) or {_quoted(key, value)} (a string)"
            if first_sweep.value_type == ValueType.SIMPLE_CHOICE_SWEEP
            else ""
        )
        _refuse(f"{first_sweep.input_line} is a sweep: add -m to run one job for each value{single}")
    hydra_settings = [a for a in argv if a.lstrip("+~").startswith("hydra")]
    for arg in hydra_settings:
        key, _, value = arg.lstrip("+~").partition("=")
        if key in OUTPUT_DIRS:
            check_output_dir(key, parser.parse_override(arg).value())
    flags = [arg for arg in argv if arg.startswith("-") and arg not in ("-m", "--multirun")]  # --cfg, --help
    settings = RUN_SETTINGS + (SWEEP_SETTINGS if multirun else ())
    if config_name and not flags and all(a.lstrip("+~").startswith(settings) for a in hydra_settings):
        overrides = [a for a in argv if a not in hydra_settings and a not in ("-m", "--multirun")]
        for job in first_jobs(overrides, parser) if multirun else [overrides]:
            check_composes(job, config_name)


def check_output_dir(key: str, value: object) -> None:
    """Refuse a run or sweep folder that is, or lies under, a file (Hydra's mkdir would be a
    FileExistsError traceback after the command line was accepted)."""
    if not isinstance(value, str) or "${" in value:
        return
    path = Path(value).expanduser()
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                _refuse(f"{key}={value}: {folder} is a file; give a folder path (new or existing)")
            return


def first_jobs(overrides: list[str], parser: OverridesParser) -> list[list[str]]:
    """Command lines that together show every value of a sweep once: each value of each
    swept option with the other sweeps at their first value (the jobs' configs compose from
    these). A range counts by its first value; a sweep Hydra cannot list (glob, an optuna
    interval) is left out."""
    fixed: list[str] = []
    swept: list[list[str]] = []
    for arg in overrides:
        parsed = parser.parse_override(arg)
        if not parsed.is_sweep_override():
            fixed.append(arg)
            continue
        if parsed.value_type in LISTED_SWEEPS:
            values = [f"{parsed.get_key_element()}={v}" for v in parsed.sweep_string_iterator()]
            if values:  # an empty range runs no job; Hydra says so
                swept.append(values[:1] if parsed.is_range_sweep() else values)  # a range: numbers alike
    firsts = [values[0] for values in swept]
    jobs = [fixed + firsts]
    for i, values in enumerate(swept):
        jobs += [fixed + firsts[:i] + [value] + firsts[i + 1 :] for value in values[1:]]
    return jobs


def check_composes(overrides: list[str], config_name: str) -> None:
    """Compose the config as Hydra will; an unknown option or group choice is one line."""
    script = f"python {config_name}.py --cfg job"
    try:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            compose(config_name, overrides=overrides)
    except MissingConfigException as err:
        lines = str(err).splitlines()
        missing = next((line.split("'")[3] for line in lines if "Could not find '" in line), None)
        choices = [line.strip() for line in lines if line.startswith("\t") and "provider=" not in line]
        if missing and "/" in missing:
            group, name = missing.rsplit("/", 1)
            _refuse(f"{group}={name}: no such {group} config; use one of {', '.join(choices)}")
        _refuse(f"{lines[0]}; {script} lists the options")
    except ConfigCompositionException as err:
        first = str(err).splitlines()[0]
        bad = next((o for o in overrides if first.startswith(f"Could not override '{o.split('=')[0]}'")), None)
        if bad is None:
            _refuse(f"{first}; {script} lists the options")
        given: Any = None
        for part in reversed(bad.split("=")[0].split(".")):  # a.b=1 as {"a": {"b": ...}}
            given = {part: given}
        found = unknown_options(given, _composed([o for o in overrides if o != bad], config_name))
        group = bad.split("=")[0].split(".")[0]
        if found and found[0] == group and (CONF / group).is_dir():  # postprocess.h=3 with no postprocess chosen
            names = "|".join(sorted(p.stem for p in (CONF / group).glob("*.yaml")))
            _refuse(f"{bad}: no {group} is chosen to set it on; choose one first: {group}={names} {bad}")
        _refuse(f"unknown option {found[0] if found else bad}; {script} lists the options (a new key needs +{bad})")
    except HydraException as err:
        _refuse(f"{str(err).splitlines()[0]}; {script} lists the options")


def _composed(overrides: list[str], config_name: str) -> dict:
    """The composed config as nested dicts (empty if it does not compose either)."""
    try:
        with initialize_config_dir(str(CONF), version_base="1.3"):
            return OmegaConf.to_container(compose(config_name, overrides=overrides), resolve=False)
    except HydraException:
        return {}


def run_task(task: Callable[[DictConfig], Any], cfg: DictConfig) -> Any:
    """Run ``task``; turn a :class:`CellsegError` into one line on stderr and exit code 2."""
    default_wandb_mode()
    flush_subnormals_to_zero()  # before PyTorch starts its threads, so that they inherit it
    try:
        return task(cfg)
    except CellsegError as err:
        print(f"cellseg: error: {err}", file=sys.stderr)
        sys.exit(2)
    finally:
        finish_wandb()
