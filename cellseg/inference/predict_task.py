"""The task behind ``predict.py``: ``predict(cfg)``."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from cellseg import __version__
from cellseg.errors import CellsegError
from cellseg.evaluate import Evaluator
from cellseg.inference.inputs import Source, plan_sources
from cellseg.inference.malloc import keep_freed_memory
from cellseg.inference.options import check_options, expand_path
from cellseg.inference.predictor import Predictor
from cellseg.inference.run import OutputOptions, PredictionRun, RunStats
from cellseg.models.registry import checked_spec
from cellseg.outputs.atomic import write_json
from cellseg.outputs.report import write_prediction_report
from cellseg.tracking.ctc import check_ground_truth
from cellseg.tracking.tracker import NoTracker, OverlapTracker

log = logging.getLogger(__name__)
TRACKERS = {
    "cellseg.tracking.tracker.OverlapTracker": OverlapTracker,
    "cellseg.tracking.tracker.NoTracker": NoTracker,
}


def _plain(node: DictConfig) -> dict:
    return OmegaConf.to_container(node, resolve=True)


def _should_compile(setting: bool | str, min_frames: int, sources: list[Source]) -> bool:
    """``compile=true|false``, or ``auto``: compile when the run has ``min_frames`` frames or more."""
    if setting not in (True, False, "auto"):
        raise CellsegError(f"compile={setting!r}; use auto, true or false")
    if setting != "auto":
        return bool(setting)
    frames = sum(source.n_frames for source in sources)
    if frames >= min_frames:
        log.info("%d frames: compiling the encoder first (torch.compile; compile=false skips it)", frames)
        return True
    return False


def postprocess_overrides(cfg: DictConfig) -> dict:
    """Post-processing options given at prediction: ``min_size=``/``h=``/``min_prob=`` first, then the
    ``postprocess`` group's (``postprocess=watershed postprocess.h=3``); ``auto`` and null
    keep the checkpoint's value."""
    group = _plain(cfg.postprocess) if cfg.get("postprocess") else {}
    options = {**group, **{k: cfg[k] for k in ("min_size", "h", "min_prob") if cfg[k] is not None}}
    return {k: v for k, v in options.items() if v is not None and v != "auto"}


def make_tracker_factory(cfg: DictConfig, track: bool | str):
    """A function that builds a fresh tracker per movie, or None when nothing is tracked."""
    if track is False:
        return None
    cls, kwargs = checked_spec(_plain(cfg.tracker), TRACKERS, "tracker", "tracker")
    if cls is NoTracker:
        return None
    cls(**kwargs)  # check the options now, not at the first movie
    return lambda: cls(**kwargs)


def ctc_ground_truth(gt: Path | None) -> Path | None:
    """``gt`` if it is a Cell Tracking Challenge ``XX_GT`` folder (with ``TRA/``)."""
    return gt if gt is not None and (gt / "TRA").is_dir() else None


def check_movies_fit(sources: list[Source], ctc_gt: Path, given: str) -> None:
    """Refuse, before anything is segmented, a CTC ground truth that cannot score every input:
    a damaged one, or one whose frame count or frame size differs from a movie's."""
    n_truth, shape = check_ground_truth(ctc_gt)
    for source in sources:
        if source.error:
            continue
        if source.n_frames != n_truth:
            mismatch = f"{source.n_frames} frame(s), but gt={given} has {n_truth}"
        elif source.frame_shape and source.frame_shape != shape:
            size, truth = ("x".join(map(str, yx)) for yx in (source.frame_shape, shape))
            mismatch = f"frames of {size} px, but gt={given} masks are {truth}"
        else:
            continue
        raise CellsegError(
            f"{source.label}: {mismatch} (TRA/man_trackNNN.tif); pass the ground truth of this movie, or leave gt= out"
        )


def predict(cfg: DictConfig) -> RunStats:
    """Segment (and track) ``cfg.input`` with the checkpoint ``cfg.ckpt``; write results to ``cfg.output``."""
    check_options(cfg)
    sources = plan_sources(str(expand_path(cfg.input)), cfg.track, cfg.channel)
    given = expand_path(cfg.input)
    default_out = (given if given.is_dir() else sources[0].paths[0].parent) / "cellseg_out"
    out_dir = expand_path(cfg.output) or default_out
    if given.is_dir() and out_dir.resolve() == given.resolve():
        raise CellsegError(
            f"output={cfg.output}: is the input folder; the outputs would be read as images by the next run "
            f"of it; choose another output=DIR (the default is {default_out})"
        )
    gt = expand_path(cfg.gt)
    if gt is not None and not gt.is_dir():
        raise CellsegError(f"gt={cfg.gt}: not a folder; pass the folder of ground-truth masks or a CTC XX_GT folder")
    ctc_gt = ctc_ground_truth(gt)
    make_tracker = make_tracker_factory(cfg, cfg.track)
    if ctc_gt is not None and make_tracker is None:
        raise CellsegError(f"gt={cfg.gt} is a tracking ground truth; it scores tracked movies (track=auto or true)")
    if ctc_gt is not None:
        check_movies_fit(sources, ctc_gt, cfg.gt)
    predictor = Predictor(
        expand_path(cfg.ckpt),
        device=cfg.device,
        precision=cfg.precision,
        tile=cfg.tile,
        overlap=cfg.overlap,
        batch_size=cfg.batch_size,
        tta=cfg.tta,
        norm=_plain(cfg.norm),
        threshold=cfg.threshold,
        postprocess=postprocess_overrides(cfg),
        compile_encoder=_should_compile(cfg.compile, cfg.compile_min_frames, sources),
    )
    if predictor.device.type == "cpu":
        keep_freed_memory()  # this process only runs frames now; see cellseg.inference.malloc
    evaluator = (
        Evaluator(gt, out_dir, predictor.edge_width, predictor.val_roc) if gt is not None and ctc_gt is None else None
    )
    options = OutputOptions(
        save_prob=cfg.save_prob,
        save_overlay=cfg.save_overlay,
        overlay_every=cfg.overlay_every,
        save_tracks=cfg.save_tracks,
        save_rois=cfg.save_rois,
        overwrite=cfg.overwrite,
        skip_existing=cfg.skip_existing,
        min_snr=cfg.min_snr,
    )
    run = PredictionRun(predictor, out_dir, options, evaluator, make_tracker, ctc_gt)
    stats = run.run(sources)
    write_run_record(cfg, out_dir, sources, stats, predictor)
    print_summary(stats, out_dir)
    if stats.tracking_metrics:
        write_json(out_dir / "metrics.json", {"gt": str(ctc_gt), "movies": stats.tracking_metrics})
    write_prediction_report(out_dir, cfg, stats, sources, predictor)  # the last line: "Report: <path>"
    if stats.unscored:
        first = stats.unscored[0]
        if len(stats.unscored) > 1:
            first = f"{len(stats.unscored)} movies not scored, the first: {first}"
        raise CellsegError(f"{first}; the segmentation and tracking outputs are written, only the scores are missing")
    if evaluator is not None and stats.metrics is None and not stats.failed:
        print(
            f"cellseg: warning: gt={cfg.gt}: no mask there matches an input by name, so nothing was scored "
            "(a Cell Tracking Challenge ground truth is the XX_GT folder with TRA/)",
            file=sys.stderr,
        )
    if stats.failed:
        raise CellsegError(f"{len(stats.failed)} of {len(sources)} inputs failed (reported above); the others are done")
    return stats


def _settled(value):
    """A config value as plain data: resolved where it can be (``${hydra:...}`` needs a Hydra run)."""
    if not OmegaConf.is_config(value):
        return value
    try:
        return OmegaConf.to_container(value, resolve=True)
    except Exception:  # an interpolation that only a Hydra run can resolve
        return OmegaConf.to_container(value, resolve=False)


def write_run_record(cfg: DictConfig, out_dir: Path, sources: list[Source], stats: RunStats, predictor) -> None:
    """``run.json``: what was segmented from which files with which settings, so the report
    and the napari reader find the images behind the outputs (absolute paths: napari starts
    in another folder than predict.py ran in)."""
    write_json(
        out_dir / "run.json",
        {
            "cellseg_version": __version__,
            "ckpt": str(expand_path(cfg.ckpt).absolute()),
            "input": str(cfg.input),
            "output": str(out_dir.absolute()),
            "threshold": predictor.threshold,
            "postprocess": predictor.postprocess,
            "sources": [
                {"name": s.name, "paths": [str(p.absolute()) for p in s.paths], "frames": s.n_frames}
                for s in sources
                if s.label not in stats.failed
            ],
            "failed": stats.failed,
            "settings": {k: _settled(v) for k, v in cfg.items() if k != "hydra"},
        },
    )


def print_summary(stats: RunStats, out_dir: Path) -> None:
    """The run's last lines: what was done, and scores against ground truth."""
    per_frame = stats.seconds / max(stats.frames, 1)
    extras = [f"{stats.bad_frames} bad frames given empty labels"] if stats.bad_frames else []
    extras += [f"{stats.skipped} already done (skip_existing)"] if stats.skipped else []
    extras += [f"{stats.tracks} tracks"] if stats.tracks else []
    print(
        f"{stats.images} images ({stats.frames} frames) segmented, {stats.cells} cells"
        + "".join(f", {e}" for e in extras)
        + f", {per_frame:.2f} s per frame; results in {out_dir}"
    )
    if stats.metrics:
        m = stats.metrics
        auc, roc = (f", AUC {m['auc']:.4f}", "roc.png, ") if "auc" in m else ("", "")
        print(
            f"vs ground truth: SEG {m['seg']:.3f}, AP50 {m['ap50']:.3f}, AP {m['ap']:.3f}{auc}; "
            f"{m['merges']} merges, {m['splits']} splits, {m['false_positives']} false positives, "
            f"{m['misses']} misses (metrics.json, {roc}*_errors.png)"
        )
    for name, scores in stats.tracking_metrics.items():
        shown = ", ".join(f"{k} {v:.3f}" for k, v in scores.items() if isinstance(v, float))
        print(f"{name} vs tracking ground truth: {shown} (metrics.json)")
