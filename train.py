"""Train a cellseg model: ``python train.py [+experiment=NAME] [overrides]``."""

import sys

import hydra
from omegaconf import DictConfig

from cellseg import tasks
from cellseg.utils import resolvers  # noqa: F401  (registers ${cellseg.*:} resolvers)
from cellseg.utils.task import check_arguments, run_task


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; the work is in :func:`cellseg.tasks.train`."""
    return run_task(tasks.train, cfg)


if __name__ == "__main__":
    check_arguments(sys.argv[1:], "train")
    main()
