"""Multirun sweeps, W&B grouping, launchers and hardware groups, through the real CLI."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from .conftest import ROOT


def cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "train.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_two_job_sweep_with_wandb_offline(synthetic_overrides, tmp_path):
    overrides = [*synthetic_overrides, "data.test_frames=[syn_002]"]  # a test frame: the table gets its numbers
    result = cli("-m", *overrides, "loss.edge_weight=1,5", "logger=wandb", f"hydra.sweep.dir={tmp_path}")
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p for p in tmp_path.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    for job in jobs:
        assert (job / "checkpoints" / "best.ckpt").is_file() and (job / "checkpoints" / "last.ckpt").is_file()
    runs = [next((job / "wandb").glob("offline-run-*")) for job in jobs]
    assert len({run.name.rsplit("-", 1)[-1] for run in runs}) == 2  # two distinct run ids
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert len(summary) == 2
    assert summary["val/seg"].is_monotonic_decreasing
    assert {"loss.edge_weight=1", "loss.edge_weight=5"} <= set(" ".join(summary["overrides"]).split())
    assert "summary.csv" not in result.stderr  # nothing went wrong writing it
    assert "val/seg" in result.stdout
    for row in summary.itertuples():  # each job's test numbers, from its own record
        tested = json.loads((tmp_path / str(row.job) / "result.json").read_text())["test"]
        assert summary.loc[row.Index, "test/seg"] == pytest.approx(tested["seg"])
    assert not (tmp_path / "summary_seeds.csv").exists()  # no setting ran twice


def test_ddp_spawn_multirun_has_one_sweep_dir(synthetic_overrides, tmp_path):
    result = cli(
        "-m",
        *synthetic_overrides,
        "hardware=ddp_spawn",
        "loss.edge_weight=1,5",
        "logger=csv",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (result.stderr + result.stdout).count("MEMBER: 2/2") == 2  # each job: two processes over gloo
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["0", "1"]
    assert len(pd.read_csv(tmp_path / "summary.csv")) == 2


def test_plain_ddp_in_a_multirun_is_refused(synthetic_overrides, tmp_path):
    result = cli(
        "-m", *synthetic_overrides, "hardware=ddp_spawn", "hardware.strategy=ddp", f"hydra.sweep.dir={tmp_path}"
    )
    assert result.returncode == 2
    assert "use hardware=ddp_spawn" in result.stderr


def job_config(*overrides: str) -> dict:
    result = cli(*overrides, "--cfg", "job", "--resolve", timeout=120)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_p2_8xlarge_job_config():
    trainer = job_config("hardware=p2_8xlarge")["trainer"]
    assert (trainer["devices"], trainer["strategy"], trainer["sync_batchnorm"]) == (8, "ddp", True)


def test_multinode_job_config():
    trainer = job_config("hardware=multinode", "hardware.num_nodes=3")["trainer"]
    assert (trainer["num_nodes"], trainer["devices"], trainer["strategy"]) == (3, 8, "ddp")


def test_submitit_slurm_launcher_composes():
    result = cli(
        "hydra/launcher=submitit_slurm",
        "hydra.launcher.gpus_per_node=8",
        "hydra.launcher.tasks_per_node=8",
        "--cfg",
        "hydra",
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    launcher = yaml.safe_load(result.stdout)["hydra"]["launcher"]
    assert "SlurmLauncher" in launcher["_target_"]
    assert launcher["gpus_per_node"] == 8 and launcher["tasks_per_node"] == 8


@pytest.mark.parametrize("sweep", ["mes_edge_weight"])
def test_sweep_config_sets_multirun(sweep):
    result = cli(f"+sweep={sweep}", "--cfg", "hydra", timeout=120)
    assert result.returncode == 0, result.stderr
    hydra = yaml.safe_load(result.stdout)["hydra"]
    assert hydra["mode"] == "MULTIRUN"
    assert "loss.edge_weight" in hydra["sweeper"]["params"]


def test_optuna_search_returns_the_monitored_metric(synthetic_overrides, tmp_path):
    result = cli(
        "+hparams_search=mes_optuna",
        *synthetic_overrides,
        "trainer.max_time=null",
        "data.test_sequence=null",  # the experiment's GOWT1 test movie costs minutes per trial
        "hydra.sweeper.n_trials=2",
        "postprocess.min_size=15",
        f"hydra.sweep.dir={tmp_path}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    best = yaml.safe_load((tmp_path / "optimization_results.yaml").read_text())["best_value"]
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert len(summary) == 2
    assert best == pytest.approx(summary["val/seg"].max())


def test_summary_leaves_out_unreadable_job_records_by_name(tmp_path, caplog):
    from cellseg.sweep import summarize

    for job, record in (("0", '{"overrides": ["seed=1"], "best": {"val/seg": 0.5, "step": 10}}'), ("1", '{"overr'),
                        ("2", '{"overrides": "seed=2", "best": {}}'), ("3", '["a list"]'),
                        ("4", '{"overrides": ["seed=3"], "best": {"val/seg": 0.7, "step": 20}}')):  # fmt: skip
        (tmp_path / job).mkdir()
        (tmp_path / job / "result.json").write_text(record)
    table = summarize(tmp_path)
    assert table["job"].tolist() == ["4", "0"]  # best first, the unreadable ones left out
    for job in ("1", "2", "3"):
        assert f"{tmp_path / job / 'result.json'}: left out of the sweep summary" in caplog.text


def write_job(folder, job: str, overrides: list[str], val_seg: float, test_seg: float, tra: float) -> None:
    (folder / job).mkdir()
    record = {
        "best": {"val/seg": val_seg, "step": 100},
        "test": {"frames": ["t001.tif"], "seg": test_seg, "merges": 1.0},
        "test_sequence": {"TRA": tra, "frames": 92, "seg_frames": [1, 2], "sequence": "02"},
        "overrides": overrides,
    }
    (folder / job / "result.json").write_text(json.dumps(record))


def test_seeds_of_a_setting_are_summarized_as_mean_and_sd(tmp_path):
    from cellseg.sweep import over_seeds, summarize

    runs = {  # job: (edge weight, seed, val/seg, test/seg, TRA)
        "0": (1, 1, 0.80, 0.70, 0.950), "1": (1, 2, 0.84, 0.78, 0.960), "2": (1, 3, 0.82, 0.71, 0.970),
        "3": (10, 1, 0.90, 0.91, 0.980), "4": (10, 2, 0.88, 0.93, 0.990), "5": (3, 1, 0.99, 0.50, 0.900),
    }  # fmt: skip
    for job, (weight, seed, val, test, tra) in runs.items():
        write_job(tmp_path, job, ["+experiment=mes", f"loss.edge_weight={weight}", f"seed={seed}"], val, test, tra)
    table = over_seeds(summarize(tmp_path))
    weights = [f"+experiment=mes loss.edge_weight={w}" for w in (3, 10, 1)]
    assert table["setting"].tolist() == weights  # best mean val/seg first
    assert table["jobs"].tolist() == [1, 2, 3]
    for weight, (_, row) in zip((3, 10, 1), table.iterrows()):
        for column, at in (("val/seg", 2), ("test/seg", 3), ("test_sequence/TRA", 4)):
            values = [r[at] for r in runs.values() if r[0] == weight]
            assert row[column] == pytest.approx(statistics.mean(values))
            assert row[f"{column} sd"] == pytest.approx(statistics.stdev(values) if len(values) > 1 else 0.0)
    assert "test_sequence/frames" not in table and "test/frames" not in table  # counts, not scores


def test_sweep_command_summarizes_a_folder_of_runs(tmp_path):
    for job, seed, val in (("a", 1, 0.7), ("b", 2, 0.9)):
        write_job(tmp_path, job, ["model=googlenet_fcn", f"seed={seed}"], val, val - 0.1, 0.98)
    command = [sys.executable, "-m", "cellseg.sweep"]
    result = subprocess.run([*command, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert pd.read_csv(tmp_path / "summary.csv")["job"].tolist() == ["b", "a"]
    seeds = pd.read_csv(tmp_path / "summary_seeds.csv")
    assert seeds["jobs"].tolist() == [2] and seeds["test/seg"].tolist() == [pytest.approx(0.7)]
    spread = f"{statistics.mean([0.6, 0.8]):.3f} ± {statistics.stdev([0.6, 0.8]):.3f}"  # test/seg of the two seeds
    assert spread in result.stdout
    for args, says in (
        ([str(tmp_path / "nope")], "nope: no such folder"),
        ([str(tmp_path / "a" / "result.json")], "result.json: no such folder"),
        ([str(tmp_path / "a")], "no finished job"),
        ([str(tmp_path), "mode=best"], "mode=best: use max or min"),
        ([str(tmp_path), "colour=red"], "usage: python -m cellseg.sweep DIR"),
    ):
        result = subprocess.run([*command, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert (result.returncode, result.stderr.count("\n")) == (2, 1), result.stderr
        assert says in result.stderr
