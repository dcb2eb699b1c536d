"""report.html of prediction and training runs: self-contained, and saying what the files say."""

from __future__ import annotations

import base64
import io
import json
import logging
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
import tifffile
import torch
from PIL import Image

from cellseg.data.synthetic import synthetic_frame
from cellseg.data.synthetic_movie import generate_movie
from cellseg.outputs.page import fmt
from cellseg.outputs.streams import read_measurements
from cellseg.review import cells_to_review

from .conftest import compose_cfg, train_run
from .test_tracking import write_ctc_gt

NAME = "cells <1> & é"  # a file name that must be escaped


def predict_run(ckpt, input_path, out_dir, *extra):
    from cellseg.inference.predict_task import predict

    overrides = [f"ckpt={ckpt}", f"input='{input_path}'", f"output={out_dir}", *extra]
    cfg = compose_cfg(overrides, out_dir, config_name="predict")  # HydraConfig set, as under predict.py
    return predict(cfg)


class Parsed(HTMLParser):
    """What the checks need from a page: ids, links, image sources, and the value tables."""

    def __init__(self, text: str):
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.srcs: list[str] = []
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.exact: dict[str, dict[str, object]] = {}  # table id -> data-key -> data-value
        self.shown: dict[str, dict[str, str]] = {}  # table id -> data-key -> the cell's text
        self._table, self._key = "", None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        self.ids.update([attrs["id"]] if "id" in attrs else [])
        self.hrefs.extend([attrs["href"]] if "href" in attrs else [])
        self.srcs.extend([attrs["src"]] if "src" in attrs else [])
        if tag == "table":
            self._table = attrs.get("id", "")
        if tag == "td" and "data-key" in attrs:
            self._key = attrs["data-key"]
            self.exact.setdefault(self._table, {})[self._key] = json.loads(attrs["data-value"])
            self.shown.setdefault(self._table, {})[self._key] = ""

    def handle_endtag(self, tag):
        if tag == "td":
            self._key = None

    def handle_data(self, data):
        self.text.append(data)
        if self._key is not None:
            self.shown[self._table][self._key] += data

    def alts(self) -> list[str]:
        return [a.get("alt", "") for t, a in self.tags if t == "img"]


def check_self_contained(path) -> Parsed:
    """Every image a PNG inside the file, every link an anchor of the page, nothing loaded."""
    text = path.read_text(encoding="utf-8")
    page = Parsed(text)
    assert page.srcs, "no images"
    for src in page.srcs:
        assert src.startswith("data:image/png;base64,"), src[:60]
        with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True))) as image:
            assert image.format == "PNG"
            image.load()  # decodes the whole image
            assert image.width > 0 and image.height > 0
    assert page.hrefs, "no navigation"
    for href in page.hrefs:
        assert href.startswith("#") and href[1:] in page.ids, href
    assert not [t for t, a in page.tags if t in ("script", "link", "iframe", "object", "embed")]
    assert "url(" not in text and "@import" not in text and "http://" not in text and "https://" not in text
    return page


@pytest.fixture(scope="module")
def gt_run(trained_ckpt, tmp_path_factory):
    """Two images with their masks, one with a name that needs escaping, one that pandas
    would read as a missing value ("NA")."""
    root = tmp_path_factory.mktemp("report_gt")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    for seed, name in ((40, NAME), (41, "NA")):
        image, labels = synthetic_frame(np.random.default_rng(seed), 256)
        tifffile.imwrite(root / "images" / f"{name}.tif", image)
        tifffile.imwrite(root / "masks" / f"{name}.tif", labels.astype(np.uint16))
    stats = predict_run(trained_ckpt, root / "images", root / "out", f"gt={root / 'masks'}")
    return stats, root / "out"


def test_prediction_report_is_self_contained_and_escaped(gt_run):
    _, out = gt_run
    page = check_self_contained(out / "report.html")
    text = (out / "report.html").read_text(encoding="utf-8")
    assert "cells &lt;1&gt; &amp; é" in text and NAME not in text  # escaped, non-ASCII kept
    assert {"settings", "summary", "metrics", "images", "histograms", "review"} <= page.ids
    alts = page.alts()
    assert sorted(a for a in alts if a.startswith(("overlay ", "errors "))) == [
        "errors NA",
        f"errors {NAME}",
        "overlay NA",
        f"overlay {NAME}",
    ]
    assert "histograms of cell measurements" in alts and "pixel ROC" in alts
    assert (out / "report.html").stat().st_size < 2_000_000
    assert not list(out.glob(".*.tmp"))


def test_prediction_report_shows_metrics_json_and_the_cells_to_review(gt_run):
    _, out = gt_run
    page = Parsed((out / "report.html").read_text(encoding="utf-8"))
    overall = json.loads((out / "metrics.json").read_text())["overall"]
    assert page.exact["metrics-overall"] == overall
    assert page.shown["metrics-overall"] == {k: fmt(v) for k, v in overall.items()}
    expected = cells_to_review(read_measurements(out / "measurements.csv"))
    assert len(expected) > 0 and "NA" in set(expected["image"])  # a 150-step model leaves some cells unsure
    rows = [(a["data-image"], int(a["data-frame"]), int(a["data-label"])) for t, a in page.tags if "data-label" in a]
    assert rows == list(zip(expected["image"], expected["frame"], expected["label"]))
    crops = [a for a in page.alts() if a.startswith("cell ")]
    assert crops == [f"cell {label}" for label in expected["label"]]


@pytest.fixture(scope="module")
def movie_run(trained_ckpt, tmp_path_factory):
    root = tmp_path_factory.mktemp("report_movie")
    frames, labels, tracks = generate_movie(n_frames=10, shape=(192, 192), seed=3)
    tifffile.imwrite(root / "movie.tif", frames)
    write_ctc_gt(root / "01_GT", labels, tracks)
    stats = predict_run(trained_ckpt, root / "movie.tif", root / "out", f"gt={root / '01_GT'}", "overlay_every=1")
    return stats, root / "out"


def test_movie_report_has_tracks_and_caps_the_overlays(movie_run):
    stats, out = movie_run
    page = check_self_contained(out / "report.html")
    assert "movies" in page.ids
    alts = page.alts()
    assert "growth curves movie" in alts and "lineage tree movie" in alts
    assert len(list(out.glob("movie_t*_overlay.png"))) == 10
    assert sum(a.startswith("overlay ") for a in alts) == 6  # sampled, and the page says so
    assert "movie: 6 of 10 overlay frames shown" in "".join(page.text)
    assert page.exact["metrics-movie-0"] == json.loads((out / "metrics.json").read_text())["movies"]["movie"]
    assert page.exact["tracks-0"]["tracks"] == len(pd.read_csv(out / "movie_tracks.csv")) == stats.tracks


def test_report_failure_keeps_the_other_outputs(trained_ckpt, tmp_path, monkeypatch, caplog, capsys):
    from cellseg.outputs import report

    def broken(*args, **kwargs):
        raise RuntimeError("plotting broke")

    monkeypatch.setattr(report, "histogram_figure", broken)
    image, _ = synthetic_frame(np.random.default_rng(5), 128)
    tifffile.imwrite(tmp_path / "a.tif", image)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "report.html").write_text("a stale report of an earlier run")
    with caplog.at_level(logging.WARNING, logger="cellseg.outputs.report"):
        stats = predict_run(trained_ckpt, tmp_path / "a.tif", tmp_path / "out", "overwrite=true")
    out = tmp_path / "out"
    assert stats.images == 1 and tifffile.imread(out / "a_labels.tif").max() > 0
    assert len(pd.read_csv(out / "measurements.csv")) == stats.cells
    assert (out / "a_overlay.png").exists()
    assert not (out / "report.html").exists() and not list(out.glob(".*.tmp"))
    assert "plotting broke" in caplog.text and "other outputs are complete" in caplog.text
    assert "Report:" not in capsys.readouterr().out


def test_training_report_has_curves_roc_and_validation_overlays(synthetic_overrides, tmp_path, capsys):
    train_run([*synthetic_overrides, "trainer.max_steps=4"], tmp_path)  # two validations
    assert f"Report: {tmp_path / 'report.html'}" in capsys.readouterr().out.splitlines()
    page = check_self_contained(tmp_path / "report.html")
    assert {"settings", "best", "curves", "roc", "validation"} <= page.ids
    assert {"training curves", "validation ROC", "validation syn_003"} <= set(page.alts())
    result = json.loads((tmp_path / "result.json").read_text())
    assert page.exact["best-validation"] == result["best"]
    text = "".join(page.text)
    assert "train/loss is not drawn" not in text  # logger=csv: the loss curve is there
    best = torch.load(tmp_path / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    assert f"threshold stored in best.ckpt ({float(best['threshold']):.3f}" in text


def test_a_file_name_that_is_not_utf8_still_gives_a_report(tmp_path):
    """Names from an old Latin-1 share reach the page as surrogates, which UTF-8 cannot write."""
    from cellseg.outputs.report import write_report

    path = write_report(tmp_path / "report.html", lambda: "<p>caf\udce9.tif</p>")
    assert path is not None and "caf?.tif" in path.read_text(encoding="utf-8")  # replaced, the page kept
