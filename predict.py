"""Segment frames with a trained model: ``python predict.py ckpt=PATH input=PATH [options]``."""

import hydra
from omegaconf import DictConfig

from cellseg import tasks
from cellseg.utils import resolvers  # noqa: F401  (registers ${cellseg.*:} resolvers)
from cellseg.utils.task import run_task


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry point; the work is in :func:`cellseg.tasks.predict`."""
    run_task(tasks.predict, cfg)


if __name__ == "__main__":
    main()
