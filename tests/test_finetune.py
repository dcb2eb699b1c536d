"""Correct and retrain: ``+experiment=finetune init_from=CKPT`` on NAME.tif + NAME_masks.tif."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from cellseg.data.synthetic import generate
from cellseg.errors import CellsegError

from .conftest import train_run
from .test_train import run_cli

# the finetune experiment, made short for a test
FINETUNE = [
    "+experiment=finetune",
    "data.crop_size=128",
    "data.batch_size=4",
    "data.samples_per_epoch=8",
    "trainer.max_steps=2",
    "logger=csv",
]


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="module")
def corrections(tmp_path_factory) -> Path:
    """Two corrected frames as the napari plugin saves them: NAME.tif beside NAME_masks.tif."""
    source = generate(tmp_path_factory.mktemp("source"), n_frames=2, size=256, seed=7)
    flat = tmp_path_factory.mktemp("corrected")
    for image in sorted((source / "images").iterdir()):
        shutil.copy(image, flat / image.name)
        shutil.copy(source / "masks" / image.name, flat / f"{image.stem}_masks{image.suffix}")
    return flat


def test_finetune_starts_from_the_checkpoint_network_weights_and_normalization(trained_ckpt, corrections, tmp_path):
    source = load(trained_ckpt)
    # trained_ckpt is googlenet_skip with norm 1/99.8: the config disagrees on both, so only
    # adopting the checkpoint's can pass
    disagree = ["model=googlenet_fcn", "data.norm.low=5", "optimizer.lr=1e-12"]
    train_run([*FINETUNE, f"init_from={trained_ckpt}", f"data.root={corrections}", *disagree], tmp_path)
    tuned = load(tmp_path / "checkpoints" / "last.ckpt")
    assert tuned["hyper_parameters"]["net"]["_target_"] == source["hyper_parameters"]["net"]["_target_"]
    assert tuned["hyper_parameters"]["net"]["_target_"].endswith("GoogLeNetSkip")
    assert tuned["hyper_parameters"]["data"]["norm"] == source["hyper_parameters"]["data"]["norm"]
    # with a learning rate of 1e-12 two steps move no weight: they are the checkpoint's
    weights = [k for k, v in source["state_dict"].items() if k.startswith("net.") and v.dtype.is_floating_point]
    weights = [k for k in weights if "running_" not in k]  # BatchNorm statistics do follow the new frames
    assert weights and all(torch.allclose(tuned["state_dict"][k], source["state_dict"][k], atol=1e-6) for k in weights)
    assert tuned["global_step"] == 2  # a new run: step, optimizer and schedule start afresh


def test_finetune_from_scratch_would_differ(corrections, tmp_path, trained_ckpt):
    """The check above can fail: a run without init_from has other weights."""
    train_run([*FINETUNE, "init_from=null", "model=googlenet_skip", f"data.root={corrections}"], tmp_path)
    scratch, source = load(tmp_path / "checkpoints" / "last.ckpt"), load(trained_ckpt)
    key = next(k for k in source["state_dict"] if k.startswith("net.") and k.endswith("weight"))
    assert not torch.allclose(scratch["state_dict"][key], source["state_dict"][key], atol=1e-3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], "init_from=CKPT is required"),
        (["init_from=/nowhere/model.ckpt"], "checkpoint not found"),
        (["init_from={ckpt}", "ckpt_path={ckpt}"], "init_from= and ckpt_path= both given"),
        (["init_from={foreign}"], "not a cellseg model checkpoint"),
    ],
)
def test_finetune_refuses_bad_starts(overrides, message, trained_ckpt, corrections, tmp_path):
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, foreign)
    given = [o.format(ckpt=trained_ckpt, foreign=foreign) for o in overrides]
    with pytest.raises(CellsegError, match=message):
        train_run([*FINETUNE, f"data.root={corrections}", *given], tmp_path / "run")


def test_finetune_never_calls_a_target_hidden_in_the_checkpoint(trained_ckpt, corrections, tmp_path):
    """init_from copies the checkpoint's normalization into the data config, which Hydra
    instantiates: a nested _target_ there must be refused, not called."""
    flag = tmp_path / "pwned"
    checkpoint = load(trained_ckpt)
    checkpoint["hyper_parameters"]["data"]["norm"]["x"] = {"_target_": "os.makedirs", "name": str(flag)}
    torch.save(checkpoint, tmp_path / "crafted.ckpt")
    with pytest.raises(CellsegError, match="refused: data.norm is not exactly two numbers"):
        train_run([*FINETUNE, f"init_from={tmp_path / 'crafted.ckpt'}", f"data.root={corrections}"], tmp_path / "run")
    assert not flag.exists()


def test_folder_data_without_root_is_one_line_not_the_synthetic_set(tmp_path):
    result = run_cli("data=folder", "logger=csv", f"hydra.run.dir={tmp_path}")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "cellseg: error: data.root is not set: give data.root=PATH, the folder of annotated frames"
    )
