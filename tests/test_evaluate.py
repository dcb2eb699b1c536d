"""Evaluation on demand (predict.py gt=...) and during training."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellseg.data.synthetic import synthetic_frame
from cellseg.errors import CellsegError

from .conftest import compose_cfg


def test_predict_with_gt_writes_metrics_roc_and_error_map(trained_ckpt, tmp_path):
    from cellseg.tasks import predict

    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(2):
        image, labels = synthetic_frame(np.random.default_rng(40 + i), 256)
        tifffile.imwrite(tmp_path / "images" / f"f{i}.tif", image)
        tifffile.imwrite(tmp_path / "masks" / f"f{i}.tif", labels.astype(np.uint16))
    overrides = [f"ckpt={trained_ckpt}", f"input={tmp_path / 'images'}", f"output={tmp_path / 'out'}"]
    stats = predict(compose_cfg([*overrides, f"gt={tmp_path / 'masks'}"], config_name="predict"))
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert set(report["per_image"]) == {"f0", "f1"}
    overall = report["overall"]
    assert overall == stats.metrics
    assert 0.9 < overall["auc"] <= 1.0
    assert 0.0 < overall["seg"] <= 1.0 and 0.0 < overall["ap50"] <= 1.0
    assert overall["n_true"] == sum(r["n_true"] for r in report["per_image"].values())
    assert (tmp_path / "out" / "roc.png").stat().st_size > 5000
    errors = tifffile.imread(tmp_path / "out" / "f0_labels.tif")
    assert errors.max() > 0
    assert (tmp_path / "out" / "f0_errors.png").is_file()


def test_mask_that_does_not_match_its_image(trained_ckpt, tmp_path, capsys):
    from cellseg.tasks import predict

    image, labels = synthetic_frame(np.random.default_rng(0), 128)
    (tmp_path / "gt").mkdir()
    tifffile.imwrite(tmp_path / "a.tif", image)
    tifffile.imwrite(tmp_path / "gt" / "a.tif", labels[:100].astype(np.uint16))
    cfg = compose_cfg(
        [f"ckpt={trained_ckpt}", f"input={tmp_path / 'a.tif'}", f"output={tmp_path / 'out'}", f"gt={tmp_path / 'gt'}"],
        config_name="predict",
    )
    with pytest.raises(CellsegError, match="1 of 1 inputs failed"):
        predict(cfg)
    err = capsys.readouterr().err
    assert "does not match image a.tif" in err
    assert not (tmp_path / "out" / "a_labels.tif").exists()


def test_training_logs_val_metrics_and_stores_threshold(synthetic_overrides, tmp_path):
    import torch

    from .conftest import train_run

    train_run(synthetic_overrides, tmp_path)
    history = pd.read_csv(tmp_path / "validation.csv")
    for column in ("val/seg", "val/ap50", "val/auc", "val/threshold"):
        assert column in history and history[column].between(0, 1).all()
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    assert float(best["threshold"]) == history["val/threshold"].iloc[history["val/seg"].idxmax()]
    assert best["roc_curve"].shape == (2, 200) and best["roc_curve"][1].max() == 1.0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["best"]["val/seg"] == history["val/seg"].max()
    assert len(list((tmp_path / "val_images").glob("*_errors.png"))) == len(history)
    assert len(list((tmp_path / "val_images").glob("*_roc.png"))) == len(history)
