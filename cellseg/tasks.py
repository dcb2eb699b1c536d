"""The task behind ``train.py``: ``train(cfg)``."""

from __future__ import annotations

import inspect
import logging
import math
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf, open_dict

from cellseg import demo
from cellseg.checkpoint import load_checkpoint, options_problem
from cellseg.errors import CellsegError
from cellseg.inference.predictor import load_net
from cellseg.models.module import LR_SCALING, CellSegModule
from cellseg.models.registry import NETS, checked_spec
from cellseg.outputs.atomic import write_json
from cellseg.outputs.report import write_training_report
from cellseg.sequence_test import ground_truth_of, score_sequence
from cellseg.train_options import check_training_options
from cellseg.utils.callbacks import AtomicCheckpointIO, ValidationHistory
from cellseg.utils.instantiate import instantiate_group
from cellseg.utils.numbers import number_problem
from cellseg.utils.task import finish_wandb

log = logging.getLogger(__name__)


def _plain(node: DictConfig) -> dict:
    return OmegaConf.to_container(node, resolve=True)


def postprocess_options(cfg: DictConfig, smallest_cell: int | None) -> dict:
    """Post-processing options, resolved once and stored in the checkpoint: ``min_size: auto``
    is a quarter of the smallest annotated whole cell (a nucleus in mitosis or just divided
    is about half the smallest interphase one a few frames show, and the CTC's DET counts a
    missed cell ten times a false one); cells grow back over an edge band as wide as the
    one trained on."""
    options = {"expand": cfg.data.edge_width, **_plain(cfg.postprocess)}
    if options.get("min_size") == "auto":
        options["min_size"] = max(15, smallest_cell // 4) if smallest_cell else 15
    return options


def build_module(cfg: DictConfig, smallest_cell: int | None = None) -> CellSegModule:
    """The LightningModule from plain config dicts (nothing pickled into hparams)."""
    return CellSegModule(
        net=_plain(cfg.model),
        loss=_plain(cfg.loss),
        optimizer=_plain(cfg.optimizer),
        scheduler=_plain(cfg.scheduler),
        postprocess=postprocess_options(cfg, smallest_cell),
        data={"norm": _plain(cfg.data.norm), "edge_width": cfg.data.edge_width},
        threshold_method=cfg.threshold_method,
        lr_scaling=cfg.hardware.lr_scaling,
        lr_warmup=cfg.hardware.lr_warmup,
    )


def _check_launch(cfg: DictConfig) -> dict | None:
    """Refuse set-ups that would silently go wrong. Returns what the resumed checkpoint
    (``ckpt_path``) says of its learning-rate scale, for :func:`_check_resumed_processes`
    once the number of processes is known (None when not resuming)."""
    check_training_options(cfg)
    hardware = cfg.hardware
    gpu = torch.cuda.is_available() or (hardware.accelerator == "gpu" and torch.backends.mps.is_available())
    if hardware.accelerator in ("gpu", "cuda") and not gpu:
        raise CellsegError(
            f"hardware.accelerator={hardware.accelerator} but no CUDA GPU is visible; "
            "use hardware=cpu (or hardware=auto, which picks what is there)"
        )
    saved = {"data": {"norm": _plain(cfg.data.norm), "edge_width": cfg.data.edge_width}}
    problem = number_problem("seed", cfg.seed, int, 0, 2**32 - 1) or options_problem(
        {**saved, "postprocess": postprocess_options(cfg, None)}
    )
    if problem:  # the checkpoint would be refused by prediction after the whole training
        raise CellsegError(f"{problem}; change the option")
    relaunches = str(hardware.strategy).startswith("ddp") and "spawn" not in str(hardware.strategy)
    if relaunches and hardware.devices != 1 and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise CellsegError(
            f"hardware.strategy={hardware.strategy} re-runs the whole sweep in every rank; "
            "use hardware=ddp_spawn for multirun sweeps, or launch each job with its own command"
        )
    checkpoints = Path(cfg.paths.output_dir) / "checkpoints"
    resuming_here = cfg.ckpt_path and Path(cfg.ckpt_path).resolve().parent == checkpoints.resolve()
    if (checkpoints / "last.ckpt").exists() and not resuming_here:
        raise CellsegError(
            f"{checkpoints}: holds checkpoints of an earlier run; choose another hydra.run.dir "
            f"or resume with ckpt_path={checkpoints / 'last.ckpt'}"
        )
    if not cfg.ckpt_path:
        return None
    # read safely here first: refuse foreign or corrupt files with one line
    resumed = load_checkpoint(cfg.ckpt_path)
    saved = resumed["hyper_parameters"]["net"]
    checked_spec(saved, NETS, "model", str(cfg.ckpt_path))
    if saved["_target_"] != cfg.model._target_:
        raise CellsegError(
            f"{cfg.ckpt_path}: was trained with {saved['_target_']}, not {cfg.model._target_}; "
            "resume with the same model= option"
        )
    model = _plain(cfg.model)
    defaults = {k: p.default for k, p in inspect.signature(NETS[saved["_target_"]]).parameters.items()}
    keys = (set(saved) | set(model)) - {"encoder_weights"}  # an option older checkpoints lack is its default
    changed = sorted(k for k in keys if saved.get(k, defaults.get(k)) != model.get(k, defaults.get(k)))
    if changed:  # the weights would not fit the network: a traceback inside Lightning
        key = changed[0]
        raise CellsegError(
            f"{cfg.ckpt_path}: was trained with model.{key}={saved.get(key)!r}, not {model.get(key)!r}; "
            "resume with the same model options"
        )
    return {"processes": resumed.get("processes"), "lr_scaling": resumed["hyper_parameters"].get("lr_scaling", "none")}


def _check_resumed_processes(cfg: DictConfig, resumed: dict | None, processes: int) -> None:
    """Refuse to resume where the learning rate would have another scale (another number of
    processes under ``hardware.lr_scaling``): the optimizer and its schedule come back with the
    rate scaled for the run that saved them. ``resumed``: what :func:`_check_launch` read."""
    if resumed is None:
        return
    saved, rule = resumed["processes"], resumed["lr_scaling"]
    if saved is None or rule not in LR_SCALING:
        return  # saved before the number was recorded
    now = LR_SCALING[cfg.hardware.lr_scaling](processes)
    if not math.isclose(LR_SCALING[rule](saved), now):
        raise CellsegError(
            f"{cfg.ckpt_path}: was trained on {saved} process(es) with hardware.lr_scaling={rule}; this run has "
            f"{processes} with lr_scaling={cfg.hardware.lr_scaling}, another learning-rate scale; resume alike"
        )


def adopt_init_from(cfg: DictConfig) -> dict | None:
    """``init_from=CKPT``: fine-tune a trained model. Its network (architecture and weights),
    normalization percentiles and edge width replace the configured ones, so the corrected
    frames are seen as the model saw its own; optimizer, schedule, threshold and post-processing
    start afresh. Returns the network's weights (None without ``init_from``)."""
    if not cfg.get("init_from"):
        return None
    if cfg.init_from == "required":
        raise CellsegError(f"init_from=CKPT is required by task {cfg.task_name}: the trained checkpoint to start from")
    if cfg.ckpt_path:
        raise CellsegError("init_from= and ckpt_path= both given; init_from starts a new run, ckpt_path resumes one")
    path = Path(str(cfg.init_from)).expanduser()
    checkpoint = load_checkpoint(path)
    hparams = checkpoint["hyper_parameters"]
    weights = load_net(checkpoint, path).state_dict()  # the net the config will build: its spec and weights fit
    with open_dict(cfg):
        cfg.model = OmegaConf.create({**hparams["net"], "encoder_weights": None})
        # two floats, never the saved node: the data config is instantiated, and a nested
        # _target_ in it would be called
        cfg.data.norm = OmegaConf.create({k: float(hparams["data"]["norm"][k]) for k in ("low", "high")})
        cfg.data.edge_width = hparams["data"]["edge_width"]
    log.info("Fine-tuning %s: %s, norm %s", path, hparams["net"]["_target_"], dict(cfg.data.norm))
    return weights


def _name_sweep_job(cfg: DictConfig) -> None:
    """In a multirun, group W&B runs by sweep and tag each with its overrides."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN or not cfg.get("logger") or "wandb" not in cfg.logger:
        return
    overrides = list(hydra_cfg.overrides.task)
    with open_dict(cfg):
        cfg.logger.wandb.group = f"{cfg.task_name}-{Path(hydra_cfg.sweep.dir).name}"
        cfg.logger.wandb.name = f"{hydra_cfg.job.num}: {' '.join(overrides)}"[:120]
        cfg.logger.wandb.tags = [*cfg.logger.wandb.tags, *(o[:64] for o in overrides)]


def _write_result(cfg: DictConfig, history: ValidationHistory | None, test: dict) -> dict:
    """``result.json`` in the run folder: the validation at the best monitored value, and the
    test of that checkpoint (``test``: held-out frames; ``test_sequence``: a whole movie)."""
    rows = pd.DataFrame(history.rows if history is not None else [])
    best = {}
    if cfg.monitor.metric in rows:
        pick = rows[cfg.monitor.metric].idxmax() if cfg.monitor.mode == "max" else rows[cfg.monitor.metric].idxmin()
        best = {k: (v.item() if hasattr(v, "item") else v) for k, v in rows.loc[pick].items()}
    result = {
        "metric": cfg.monitor.metric,
        "best": best,
        **test,
        "overrides": list(HydraConfig.get().overrides.task),
        "run_dir": cfg.paths.output_dir,
    }
    write_json(Path(cfg.paths.output_dir) / "result.json", result)
    return result


def train(cfg: DictConfig) -> float | None:
    """Train, checkpoint and validate; return the best value of ``cfg.monitor.metric``."""
    resumed = _check_launch(cfg)
    init_weights = adopt_init_from(cfg)
    show_demo = demo.wanted(cfg)
    _name_sweep_job(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # errors below stay one line
    datamodule = instantiate(cfg.data, seed=cfg.seed)
    datamodule.prepare_data()
    datamodule.setup("fit")  # read and check all data before any process is started
    if datamodule.test_sequence:
        ground_truth_of(Path(datamodule.test_sequence).expanduser())  # a wrong path fails now, not after training
    module = build_module(cfg, datamodule.smallest_cell)
    if init_weights is not None:
        module.net.load_state_dict(init_weights)
    log.info("Post-processing: %s", module.hparams.postprocess)
    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, plugins=[AtomicCheckpointIO()]
    )
    datamodule.check_share(trainer.world_size)  # here: in a spawned process it would be a traceback
    _check_resumed_processes(cfg, resumed, trainer.world_size)
    for logger in loggers:
        logger.log_hyperparams(_plain(cfg))
    # resuming restores weights, optimizer, LR schedule, global_step and the max_time Timer;
    # weights_only: the checkpoint cannot run code while it is unpickled
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path, weights_only=True)
    checkpoints = [c for c in callbacks if isinstance(c, ModelCheckpoint)]
    best_cb = next((c for c in checkpoints if c.monitor == cfg.monitor.metric), None)
    test = run_tests(trainer, module, datamodule, best_cb)
    if trainer.is_global_zero:
        _write_result(cfg, next((c for c in callbacks if isinstance(c, ValidationHistory)), None), test)

    if best_cb is not None and best_cb.best_model_score is not None:
        best = float(best_cb.best_model_score)
        where = f"checkpoints in {best_cb.dirpath}"
    elif cfg.monitor.metric in trainer.callback_metrics:  # e.g. fast_dev_run: no checkpoints
        best = float(trainer.callback_metrics[cfg.monitor.metric])
        where = "no checkpoints written"
    else:
        log.warning("No validation ran, so there is no %s to report", cfg.monitor.metric)
        return None
    finish_wandb()  # W&B prints its sync hints on finish; the summary line should come last
    if trainer.is_global_zero:
        print(f"Best {cfg.monitor.metric} = {best:.4f} after {trainer.global_step} steps; {where}")
        print_test_summary(test)
        write_training_report(cfg, datamodule)  # the last line: "Report: <path>"
        if best_cb is not None and best_cb.best_model_path and show_demo:
            demo.run_demo(Path(best_cb.best_model_path), Path(cfg.paths.output_dir), cfg.seed)
    return best


def run_tests(trainer: L.Trainer, module: CellSegModule, datamodule, best_cb: ModelCheckpoint | None) -> dict:
    """Test the best checkpoint (its weights and threshold, nothing chosen again) on the
    held-out frames and on ``data.test_sequence``; the numbers for ``result.json``."""
    best_path = best_cb.best_model_path if best_cb is not None and best_cb.best_model_path else None
    result = {}
    if datamodule.test_frames_data:
        # ckpt_path=None (no checkpoint written, e.g. fast_dev_run) tests the weights in memory
        scores = trainer.test(module, datamodule=datamodule, ckpt_path=best_path, weights_only=True, verbose=False)
        result["test"] = {
            "frames": [f.name for f in datamodule.test_frames_data],
            **{k.removeprefix("test/"): float(v) for k, v in scores[0].items()},
        }
    if datamodule.test_sequence and trainer.is_global_zero:
        if best_path is None:
            log.warning("No checkpoint written, so data.test_sequence is not tested")
        else:
            out = Path(trainer.default_root_dir) / "test_sequence"
            try:
                result["test_sequence"] = score_sequence(
                    Path(best_path), datamodule.test_sequence, datamodule.seen_frames, datamodule.test_gap, out
                )
            except CellsegError as err:  # the trained checkpoints stand; say why there is no score
                log.warning("The test on data.test_sequence failed: %s", err)
                result["test_sequence"] = {"error": str(err), "sequence": str(datamodule.test_sequence)}
    return result


def print_test_summary(test: dict) -> None:
    """The test lines of the summary (what ``result.json`` holds under ``test*``)."""
    if "test" in test:
        t = test["test"]
        print(
            f"Test on {len(t['frames'])} held-out frame(s): SEG {t['seg']:.3f}, AP50 {t['ap50']:.3f}, "
            f"AP {t['ap']:.3f}; {t['merges']:.0f} merges, {t['splits']:.0f} splits, "
            f"{t['false_positives']:.0f} false positives, {t['misses']:.0f} misses"
        )
    if "test_sequence" in test and "error" not in test["test_sequence"]:
        t = test["test_sequence"]
        shown = ", ".join(f"{k} {v:.3f}" for k, v in t.items() if isinstance(v, float))
        print(f"Test on {t['sequence']} ({t['frames']} frames, SEG on {len(t['seg_frames'])} unseen): {shown}")
