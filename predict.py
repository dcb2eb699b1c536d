"""Segment frames with a trained model: ``python predict.py ckpt=PATH input=PATH [options]``."""

import sys

import hydra
from omegaconf import DictConfig

from cellseg.inference.predict_task import predict
from cellseg.utils import resolvers  # noqa: F401  (registers ${cellseg.*:} resolvers)
from cellseg.utils.task import check_arguments, run_task


@hydra.main(version_base="1.3", config_path="conf", config_name="predict")
def main(cfg: DictConfig) -> None:
    """Hydra entry point; the work is in :func:`cellseg.inference.predict_task.predict`."""
    run_task(predict, cfg)


if __name__ == "__main__":
    check_arguments(sys.argv[1:], "predict")
    main()
