"""Every config group option composes, and what it describes can be built."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cellseg.data.datamodule import CellDataModule
from cellseg.errors import CellsegError
from cellseg.models.losses import EdgeWeightedBCE
from cellseg.tasks import build_module
from cellseg.train_options import check_training_options
from cellseg.utils import resolvers

from .conftest import CONF, compose_cfg


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_train_yaml_does_not_list_experiment():
    defaults = OmegaConf.load(CONF / "train.yaml").defaults
    assert not any("experiment" in str(d) for d in defaults), "+experiment=X needs it absent"


@pytest.mark.parametrize("name", options("experiment"))
def test_experiment_composes_with_plus(name, tmp_path):
    cfg = compose_cfg([f"+experiment={name}"], tmp_path)
    assert cfg.task_name == name
    assert cfg.loss.edge_weight > 1


@pytest.mark.parametrize(
    "override",
    [f"+experiment={name}" for name in options("experiment")]
    + [
        f"{group}={name}"
        for group in ("optimizer", "scheduler", "loss", "trainer", "callbacks")
        for name in options(group)
    ],
)
def test_every_shipped_config_passes_the_training_option_check(override, tmp_path):
    check_training_options(compose_cfg([override], tmp_path))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optimizer.lr=abc"], "optimizer.lr is 'abc', not a finite number; change the option"),
        (["optimizer.lr=0"], "optimizer.lr=0 is out of range (0, 10]"),
        (["optimizer=sgd", "optimizer.nesterov=maybe"], "optimizer.nesterov='maybe': use true or false"),
        (["scheduler=step", "scheduler.gamma=0"], "scheduler.gamma=0 is out of range (0, 1]"),
        (["loss.edge_weight=-2"], "loss.edge_weight=-2 is out of range [0, 1000]"),
        (["loss.dice_weight=-1"], "loss.dice_weight=-1 is out of range [0, 1000]"),
        (["trainer.max_steps=abc"], "trainer.max_steps is 'abc', not a finite integer"),
        (["trainer.max_time=15min"], "trainer.max_time='15min': use DD:HH:MM:SS"),
        (["trainer.check_val_every_n_epoch=0"], "trainer.check_val_every_n_epoch=0 is out of range [1, 1000000]"),
        (["trainer.gradient_clip_val=abc"], "trainer.gradient_clip_val is 'abc', not a finite number"),
        (["data.augment.rotate=maybe"], "data.augment.rotate='maybe': use true or false"),
        (["data.augment.clip=1"], "data.augment.clip=1: use true or false"),
        (["model.out_channels=3"], "model.out_channels=3: cellseg's networks predict 2 maps"),
        (["monitor.metric=val/sge"], "monitor.metric='val/sge': use one of val/seg, "),
        (["monitor.mode=maximum"], "monitor.mode='maximum': use max or min"),
        (["data.augment.seam=-1"], "data.augment.seam=-1 is out of range [0, 64]"),
        (["callbacks=ema", "callbacks.weight_averaging.decay=1.5"], "callbacks.weight_averaging.decay=1.5 is out of"),
        (["callbacks=ema", "callbacks.weight_averaging.bn_batches=0"], "callbacks.weight_averaging.bn_batches=0 is "),
        (["scheduler=step", "scheduler.milestones=[0.5,abc]"], "scheduler.milestones=[0.5, 'abc']: use fractions"),
        (["scheduler=step", "scheduler.milestones=0.5"], "scheduler.milestones=0.5: use fractions"),
    ],
)
def test_unusable_training_options_are_one_line(overrides, message, tmp_path):
    with pytest.raises(CellsegError) as caught:
        check_training_options(compose_cfg(overrides, tmp_path))
    assert str(caught.value).startswith(message)


def test_an_option_the_chosen_group_lacks_is_not_checked(tmp_path):
    cfg = compose_cfg(["optimizer=adam", "trainer.gradient_clip_val=null"], tmp_path)
    assert "alpha" not in cfg.optimizer
    check_training_options(cfg)  # raises nothing: RMSprop's alpha and a null clip are not required


@pytest.mark.parametrize("name", options("data"))
def test_data_option_builds_a_datamodule(name, tmp_path):
    cfg = compose_cfg([f"data={name}", "data.root=somewhere"], tmp_path)
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, CellDataModule)
    assert datamodule.crop_size % 32 == 0


@pytest.mark.parametrize("name", options("model"))
def test_model_option_builds_a_net(name, tmp_path):
    cfg = compose_cfg([f"model={name}", "data.crop_size=64"], tmp_path)
    net = instantiate(cfg.model)
    assert net(torch.zeros(1, 1, 64, 64)).shape == (1, 2, 64, 64)


@pytest.mark.parametrize("optimizer", options("optimizer"))
@pytest.mark.parametrize("scheduler", options("scheduler"))
def test_optimizer_and_scheduler_build(optimizer, scheduler, tmp_path):
    cfg = compose_cfg([f"optimizer={optimizer}", f"scheduler={scheduler}", "optimizer.lr=0.5"], tmp_path)
    module = build_module(cfg)
    config = module.configure_optimizers()
    assert config["optimizer"].param_groups[0]["lr"] == pytest.approx(0.5)
    schedule = instantiate(cfg.scheduler)
    assert schedule(0.0) == pytest.approx(1.0) and schedule(1.0) < 1.0


@pytest.mark.parametrize("name", options("loss"))
def test_loss_option_builds(name, tmp_path):
    cfg = compose_cfg([f"loss={name}", "loss.edge_weight=3"], tmp_path)
    assert EdgeWeightedBCE(**cfg.loss).edge_weight == 3


@pytest.mark.parametrize("name", options("hardware"))
def test_hardware_option_resolves(name, tmp_path):
    cfg = compose_cfg([f"hardware={name}"], tmp_path)
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    assert trainer["devices"] == cfg.hardware.devices
    assert trainer["precision"] in ("32-true", "bf16-mixed", "16-mixed")
    if cfg.hardware.accelerator == "cpu":  # the GPU ones cannot be built without GPUs
        built = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
        assert built.num_devices == cfg.hardware.devices


def test_p2_8xlarge_is_an_8_gpu_ddp_node(tmp_path):
    cfg = compose_cfg(["hardware=p2_8xlarge"], tmp_path)
    assert (cfg.trainer.devices, cfg.trainer.strategy, cfg.trainer.sync_batchnorm) == (8, "ddp", True)
    assert cfg.hardware.lr_scaling == "linear"


def test_multinode_sets_nodes(tmp_path):
    cfg = compose_cfg(["hardware=multinode", "hardware.num_nodes=4"], tmp_path)
    assert (cfg.trainer.num_nodes, cfg.trainer.devices, cfg.trainer.strategy) == (4, 8, "ddp")


@pytest.mark.parametrize("name", options("logger"))
def test_logger_option_builds(name, tmp_path):
    from cellseg.utils.instantiate import instantiate_group

    cfg = compose_cfg([f"logger={name}"], tmp_path)
    loggers = instantiate_group(cfg.get("logger"))
    assert len(loggers) == (0 if name == "none" else 1)


@pytest.mark.parametrize(
    "override",
    [
        "data.root=/x",
        "trainer.max_steps=7",
        "trainer.max_epochs=3",
        "trainer.max_time=00:00:01:00",
        "loss.edge_weight=5",
        "optimizer.lr=0.01",
        "model=googlenet_skip",
        "optimizer=adam",
        "hardware=ddp_spawn",
        "logger=csv",
        "seed=3",
        "ckpt_path=/x/last.ckpt",
        "hydra.run.dir=/tmp/somewhere",
    ],
)
def test_documented_overrides_apply(override, tmp_path):
    cfg = compose_cfg([override], tmp_path)
    key, value = override.split("=", 1)
    if key in ("model", "optimizer", "hardware", "logger"):
        assert cfg.hydra.runtime.choices[key] == value
    else:
        assert str(OmegaConf.select(cfg, key)) == value


@pytest.mark.parametrize(
    ("overrides", "max_steps"),
    [
        ([], 200),  # make train
        (["trainer.max_epochs=3"], -1),
        (["trainer.max_time=00:00:01:00"], -1),
        (["trainer.max_epochs=3", "trainer.max_steps=50"], 50),
        (["+experiment=mes_edge_weight"], 3000),
    ],
)
def test_max_epochs_or_max_time_alone_lift_the_default_step_limit(overrides, max_steps, tmp_path):
    assert compose_cfg(overrides, tmp_path).trainer.max_steps == max_steps


@pytest.mark.parametrize(
    ("cuda", "bf16", "expected"),
    [(False, False, ("cpu", resolvers.cpu_precision(), 0)), (True, True, ("gpu", "bf16-mixed", 4)),
     (True, False, ("gpu", "16-mixed", 4))],
)  # fmt: skip
def test_auto_hardware_picks_the_device(cuda, bf16, expected, monkeypatch, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: bf16)
    cfg = compose_cfg([], tmp_path)  # hardware=auto is the default
    assert cfg.hydra.runtime.choices.hardware == "auto"
    assert (cfg.trainer.accelerator, cfg.trainer.precision, cfg.data.num_workers) == expected
