"""After training on the built-in synthetic set, show the model at work on data it never saw:
new synthetic frames (other random seed) and a synthetic movie with known tracks, each
segmented by :func:`cellseg.inference.predict_task.predict` as ``predict.py`` would, with
ground truth, so the run ends with overlays, a report and scores a newcomer can look at."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from cellseg.data.synthetic import generate
from cellseg.data.synthetic_movie import generate_movie, write_ctc_sequence
from cellseg.errors import CellsegError

log = logging.getLogger(__name__)
CONF = Path(__file__).resolve().parents[1] / "conf"
SEED_OFFSET = 1000  # demo data seeds: far from the training set's data.synthetic.seed


def wanted(cfg: DictConfig) -> bool:
    """``demo=auto``: after training on the built-in synthetic data set (generated in
    ``paths.data_dir/synthetic``, the first run's data); ``true``/``false`` force it."""
    if cfg.demo == "auto":
        built_in = Path(cfg.paths.data_dir) / "synthetic"
        return cfg.data.get("synthetic") is not None and Path(cfg.data.root).resolve() == built_in.resolve()
    if cfg.demo not in (True, False):
        raise CellsegError(f"demo={cfg.demo!r}; use auto, true or false")
    return cfg.demo


def predict_config(overrides: list[str]) -> DictConfig:
    """``conf/predict.yaml`` with ``overrides``, inside a running Hydra app or outside one."""
    if GlobalHydra.instance().is_initialized():
        return compose(config_name="predict", overrides=overrides)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="predict", overrides=overrides)


def write_demo_data(folder: Path, seed: int) -> tuple[Path, Path]:
    """Three unseen 512x512 frames (``frames/images``, ``frames/masks``) and a 20-frame movie
    with a division, an entering and a leaving nucleus (``movie/01``, ``movie/01_GT``)."""
    frames = generate(folder / "frames", n_frames=3, size=512, seed=SEED_OFFSET + seed)
    movie, labels, tracks = generate_movie(n_frames=20, shape=(320, 320), seed=SEED_OFFSET + seed, n_cells=6)
    sequence = write_ctc_sequence(folder / "movie", movie, labels, tracks)
    return frames, sequence


def run_demo(best: Path, run_dir: Path, seed: int) -> dict:
    """Segment the demo frames and movie with ``best``; outputs in ``run_dir/demo``. Returns
    the scores (SEG of the frames; TRA, DET, SEG of the movie)."""
    from cellseg.inference.predict_task import predict  # the prediction stack, loaded only for the demo

    demo = run_dir / "demo"
    frames, sequence = write_demo_data(demo / "data", seed)
    common = [f"ckpt={best}", "overwrite=true"]
    print("Demo: the model on data it never saw")
    stats = predict(
        predict_config(
            [
                *common,
                f"input={frames / 'images'}",
                f"output={demo / 'frames'}",
                f"gt={frames / 'masks'}",
                "track=false",
            ]
        )
    )
    movie = predict(
        predict_config([*common, f"input={sequence}", f"output={demo / 'movie'}", f"gt={sequence.parent / '01_GT'}"])
    )
    return {"frames": stats.metrics or {}, "movie": next(iter(movie.tracking_metrics.values()), {})}
