"""``report.html``: one self-contained page per prediction or training run.

Everything is inside the file: images are PNG ``data:`` URIs (thumbnails, outlines kept
visible when shrunk), the style is inline, there is no script, and every link points to an
anchor of the page. Every string that comes from the user (file names, settings) is
escaped. The report is written last, under a temporary name, and a failure to write it is
a warning: the run's other outputs stand.
"""

from __future__ import annotations

import datetime
import json
import logging
from collections.abc import Callable
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import tifffile
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from cellseg import __version__, metrics
from cellseg.morphology import inner_boundaries
from cellseg.outputs.atomic import remove, write_with
from cellseg.outputs.overlays import overlay_frames, overlay_name
from cellseg.outputs.page import (
    Page,
    esc,
    figure_box,
    figure_tag,
    image_tag,
    img,
    picture_tag,
    png_uri,
    shrink,
    table,
    table_html,
    value_table,
)
from cellseg.outputs.streams import read_measurements
from cellseg.review import UNSURE, cells_to_review
from cellseg.visualize import ERROR_COLOURS, error_overlay, grey_rgb

log = logging.getLogger(__name__)
CROP = 96  # px, longer side of a cell's crop in the review table
MAX_FRAMES_PER_SOURCE = 6  # overlays shown per movie (evenly spaced among those written)
MAX_THUMBS = 16  # overlays and error maps shown in all (about 100 kB each)
MAX_ROWS = 50  # rows of a per-image table
N_REVIEW = 20  # cells to review, as the napari widget lists them


def error_key() -> str:
    """The colours of the error maps."""
    names = {"correct": "correct", "false_positives": "false positive", "merges": "merge (predicted outline)",
             "splits": "split (reference outline)", "misses": "miss (reference outline)"}  # fmt: skip
    keys = "".join(
        f'<span class="key" style="background:rgb{tuple(ERROR_COLOURS[k])}"></span>{esc(v)}' for k, v in names.items()
    )
    return f'<p class="note">Error maps:{keys}</p>'


def write_report(path: Path, build: Callable[[], str]) -> Path | None:
    """Build and write ``path`` by rename; on any failure warn, remove a stale report, return None."""
    try:
        page = build()
        write_with(path, lambda tmp: tmp.write_text(page, encoding="utf-8", errors="replace"))  # undecodable names
    except Exception as err:  # the run's results stand without their report
        log.warning("%s not written (%s: %s); the run's other outputs are complete", path, type(err).__name__, err)
        log.debug("report failure", exc_info=True)
        remove(path)
        return None
    print(f"Report: {path}")
    return path


def plain_config(cfg: DictConfig) -> dict:
    """The config without Hydra's own node, resolved where it can be."""
    node = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    try:
        return OmegaConf.to_container(node, resolve=True)
    except Exception:  # an interpolation that needs Hydra's runtime
        return OmegaConf.to_container(node, resolve=False)


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


# ---------------------------------------------------------------- figures


def histogram_figure(cells: pd.DataFrame) -> Callable[[Figure], None]:
    """Histograms of area, mean intensity and mean probability (one outline per image when
    there are a few, the cells of all images together otherwise)."""
    images = list(cells["image"].unique())
    groups = [(str(n), cells[cells["image"] == n]) for n in images] if 2 <= len(images) <= 6 else [("", cells)]

    def draw(figure: Figure) -> None:
        axes = figure.subplots(1, 3)
        for ax, column, label in zip(
            axes, ("area", "mean_intensity", "mean_prob"), ("area (px)", "mean intensity (raw)", "mean probability")
        ):
            values = pd.to_numeric(cells[column], errors="coerce").dropna()
            bins = np.histogram_bin_edges(values, bins=30) if len(values) else 10
            for name, rows in groups:
                data = pd.to_numeric(rows[column], errors="coerce").dropna()
                ax.hist(data, bins=bins, histtype="step" if name else "bar", label=name or None, lw=1.2)
            if column == "mean_prob":
                ax.axvline(UNSURE, color="tab:red", ls="--", lw=1, label=f"review below {UNSURE}")
            ax.set(xlabel=label, ylabel="cells")
            if column == "mean_prob" or len(groups) > 1:
                ax.legend(fontsize=7)

    return draw


def roc_with_threshold(fpr: np.ndarray, tpr: np.ndarray, threshold: float, title: str) -> Callable[[Figure], None]:
    """The stored validation ROC (bins at ``linspace(0, 1, 200)``, highest first) with the point
    of the checkpoint's threshold marked."""
    bins = np.linspace(0, 1, len(fpr))[::-1]
    at = int(np.argmin(np.abs(bins - threshold)))

    def draw(figure: Figure) -> None:
        whole, zoom = figure.subplots(1, 2)
        for ax in (whole, zoom):
            ax.plot(fpr, tpr, label="validation")
            ax.plot([0, 1], [0, 1], color="grey", ls=":", lw=0.8)
            ax.plot(fpr[at], tpr[at], "o", color="tab:red", label=f"threshold {threshold:.3f}")
            ax.set(xlabel="false positive rate", ylabel="true positive rate")
        whole.set_title(title, fontsize=10)
        whole.legend(loc="lower right", fontsize=8)
        right = max(0.05, 2 * float(fpr[at]))
        zoom.set_xlim(0, right)
        zoom.set_ylim(max(float(tpr[at]) - 0.25, 0), 1.005)
        zoom.set_title(f"false positive rate up to {right:.2f}", fontsize=10)
        zoom.annotate(f"{threshold:.3f}: TPR {tpr[at]:.3f}, FPR {fpr[at]:.4f}", (fpr[at], tpr[at]),
                      textcoords="offset points", xytext=(8, -16), fontsize=8)  # fmt: skip

    return draw


def curves_figure(history: pd.DataFrame, train_loss: pd.DataFrame | None, best_step: int | None):
    """Validation scores and losses over steps, the best checkpoint's step marked."""

    def draw(figure: Figure) -> None:
        scores, losses = figure.subplots(1, 2)
        for column in ("val/seg", "val/ap50", "val/auc"):
            if column in history:
                scores.plot(history["step"], history[column], marker="o", ms=3, label=column)
        if train_loss is not None and len(train_loss):
            losses.plot(train_loss["step"], train_loss["loss"], lw=0.8, alpha=0.8, label="train/loss")
        if "val/loss" in history:
            losses.plot(history["step"], history["val/loss"], marker="o", ms=3, label="val/loss")
        losses.set_yscale("log")
        for ax, title in ((scores, "validation scores"), (losses, "loss (log scale)")):
            if best_step is not None:
                ax.axvline(best_step, color="grey", ls="--", lw=0.8, label=f"best.ckpt (step {best_step})")
            ax.set(xlabel="step", title=title)
            ax.legend(fontsize=8)
        scores.set_ylim(0, 1.02)

    return draw


# ---------------------------------------------------------------- prediction


def write_prediction_report(out_dir: Path, cfg: DictConfig, stats, sources: list, predictor) -> Path | None:
    """``<out>/report.html`` for a finished prediction run; prints ``Report: <path>``."""
    return write_report(out_dir / "report.html", lambda: prediction_report(out_dir, cfg, stats, sources, predictor))


def prediction_report(out_dir: Path, cfg: DictConfig, stats, sources: list, predictor) -> str:
    """The page of a prediction run, built from its output folder."""
    cells = read_measurements(out_dir / "measurements.csv")  # stems "01", "NA" stay text
    page = Page("cellseg prediction report", f"{out_dir} · cellseg {__version__} · {now()}")
    page.add("settings", "Settings", prediction_settings(out_dir, cfg, predictor))
    page.add("summary", "Summary", prediction_summary(stats, cells))
    if (out_dir / "metrics.json").exists():
        scores = json.loads((out_dir / "metrics.json").read_text())
        page.add("metrics", "Metrics against ground truth", metrics_section(scores, out_dir))
    page.add("images", "Overlays and error maps", gallery(out_dir, sources, cfg.overlay_every))
    if len(cells):
        hist = figure_tag(histogram_figure(cells), "histograms of cell measurements", (12, 3.4))
        page.add("histograms", "Per-cell measurements", hist)
    movies = movie_section(out_dir, sources)
    if movies:
        page.add("movies", "Tracks", movies)
    page.add("review", "Cells to review first", review_section(cells, out_dir, sources, predictor))
    return page.render()


def prediction_settings(out_dir: Path, cfg: DictConfig, predictor) -> str:
    settings = {
        "checkpoint": Path(str(cfg.ckpt)).expanduser().resolve(),
        "input": cfg.input,
        "output": str(out_dir),
        "ground truth (gt=)": cfg.get("gt"),
        "threshold": f"{predictor.threshold:.4f} "
        + ("(threshold=)" if cfg.get("threshold") is not None else "(the checkpoint's, chosen on validation)"),
        "post-processing": json.dumps(predictor.postprocess),
        "normalization (percentiles)": f"{predictor.norm['low']} – {predictor.norm['high']}",
        "device": str(predictor.device),
        "tile / overlap": f"{predictor.tile} / {predictor.overlap} px",
        "test-time augmentation": predictor.tta,
        "tracking": f"track={cfg.get('track')}, tracker={OmegaConf.select(cfg, 'tracker._target_')}",
        "cellseg version": __version__,
        "date": now(),
    }
    rows = table(["setting", "value"], ((k, str(v)) for k, v in settings.items() if v is not None), "settings-table")
    full = OmegaConf.to_yaml(OmegaConf.create(plain_config(cfg)))
    return f"{rows}<details><summary>All options</summary><pre>{esc(full)}</pre></details>"


def prediction_summary(stats, cells: pd.DataFrame) -> str:
    counts = {"images": stats.images, "frames": stats.frames, "cells": stats.cells, "tracks": stats.tracks,
              "bad frames (empty labels)": stats.bad_frames, "already done (skip_existing)": stats.skipped,
              "seconds per frame": stats.seconds / max(stats.frames, 1)}  # fmt: skip
    body = value_table(counts, "summary-counts")
    if stats.failed:
        body += f'<p class="warn">Failed inputs (no outputs): {esc(", ".join(stats.failed))}</p>'
    if len(cells):
        per_image = cells.groupby("image", sort=False).agg(
            frames=("frame", "nunique"), cells=("label", "size"), median_area=("area", "median"),
            median_mean_prob=("mean_prob", "median"))  # fmt: skip
        rows = [(name, *row) for name, row in per_image.head(MAX_ROWS).iterrows()]
        header = ["image", "frames with cells", "cells", "median area", "median mean_prob"]
        body += table_html(header, rows, len(per_image))
    return body


def metrics_section(report: dict, out_dir: Path) -> str:
    """``metrics.json`` as tables: the overall scores and per image, or per movie (CTC)."""
    parts = []
    if "overall" in report:
        parts.append(value_table(report["overall"], "metrics-overall"))
        per_image = list(report.get("per_image", {}).items())
        keys = ["seg", "ap50", "ap", "f1", "merges", "splits", "false_positives", "misses"]
        rows = [(name, *(m.get(k) for k in keys)) for name, m in per_image[:MAX_ROWS]]
        parts.append(table_html(["image", *keys], rows, len(per_image), "metrics-per-image"))
    for i, (name, scores) in enumerate(report.get("movies", {}).items()):
        parts.append(f"<h3>{esc(name)} vs {esc(report.get('gt', 'tracking ground truth'))}</h3>")
        parts.append(value_table(scores, f"metrics-movie-{i}"))
    if (out_dir / "roc.png").exists():
        roc = picture_tag(out_dir / "roc.png", "pixel ROC", 480)
        parts.append(figure_box(roc, "roc.png: pixel ROC of the interior, these images and validation"))
    return "".join(parts)


def spaced(items: list, n: int) -> list:
    """``n`` items evenly spaced over ``items``, first and last included."""
    if len(items) <= n or n <= 1:
        return items[: max(n, 0)]
    return [items[i] for i in sorted({round(i * (len(items) - 1) / (n - 1)) for i in range(n)})]


def gallery(out_dir: Path, sources: list, every: int) -> str:
    """Overlay thumbnails (the frames ``overlay_every=every`` gives), each beside its error map
    where ``gt=`` wrote one; long movies and many images are sampled, and the page says so."""
    figures, notes, shown_errors = [], [], set()
    for source in sources:
        stem = source.name
        names = (overlay_name(stem, source.n_frames, t) for t in sorted(overlay_frames(source.n_frames, every)))
        overlays = [out_dir / name for name in names if (out_dir / name).exists()]  # not a glob: pos_t001 is not pos's
        picked = spaced(overlays, MAX_FRAMES_PER_SOURCE)
        if len(picked) < len(overlays):
            notes.append(f"{stem}: {len(picked)} of {len(overlays)} overlay frames shown")
        for path in picked:
            if len(figures) >= MAX_THUMBS:
                break
            name = path.name.removesuffix("_overlay.png")
            figures.append(figure_box(image_tag(iio.imread(path), f"overlay {name}"), path.name))
            errors = out_dir / f"{name}_errors.png"
            if errors.exists():
                shown_errors.add(errors.name)
                figures.append(figure_box(image_tag(iio.imread(errors), f"errors {name}"), errors.name))
    other_errors = [p for p in sorted(out_dir.glob("*_errors.png")) if p.name not in shown_errors]
    picked = spaced(other_errors, MAX_THUMBS - len(figures))
    for path in picked:
        figures.append(figure_box(image_tag(iio.imread(path), f"errors {path.stem}"), path.name))
    if len(picked) < len(other_errors):
        notes.append(f"{len(picked)} of {len(other_errors)} error maps of movie frames shown")
    if len(figures) >= MAX_THUMBS:
        notes.append(f"at most {MAX_THUMBS} thumbnails are shown")
    if not figures:
        return '<p class="note">No overlays were written (save_overlay=false).</p>'
    note = "".join(f'<p class="note">{esc(n)}; all are in the output folder.</p>' for n in notes)
    key = error_key() if shown_errors or other_errors else ""
    return f'{key}{note}<div class="gallery">{"".join(figures)}</div>'


def movie_section(out_dir: Path, sources: list) -> str:
    """Per tracked movie: track counts, growth curves and the lineage tree."""
    parts = []
    movies = [s for s in sources if (out_dir / f"{s.name}_tracks.csv").exists()]
    for i, source in enumerate(movies):
        tracks = pd.read_csv(out_dir / f"{source.name}_tracks.csv")
        summary = {
            "frames": source.n_frames,
            "tracks": len(tracks),
            "daughter tracks (with a parent)": int((tracks["PARENT_ID"] > 0).sum()),
            "median track length (frames)": float(tracks["NUMBER_SPOTS"].median()) if len(tracks) else None,
        }
        parts.append(f"<h3>{esc(source.name)}</h3>" + value_table(summary, f"tracks-{i}"))
        for suffix, caption in (("_growth.png", "growth curves"), ("_lineage.png", "lineage tree")):
            path = out_dir / f"{source.name}{suffix}"
            if path.exists():
                parts.append(figure_box(picture_tag(path, f"{caption} {source.name}"), f"{path.name}: {caption}"))
    return "".join(parts)


def review_section(cells: pd.DataFrame, out_dir: Path, sources: list, predictor) -> str:
    """The cells :func:`cellseg.review.cells_to_review` lists (as the napari widget does), each
    with a crop of its frame."""
    review = cells_to_review(cells, N_REVIEW)
    if review.empty:
        return '<p class="note">No cell is unsure or oddly sized.</p>'
    try:
        crops = review_crops(review, out_dir, sources, predictor)
    except Exception as err:  # crops are a convenience; the list stands without them
        log.warning("report: no crops for the cells to review (%s)", err)
        crops = {}
    rows, attrs = [], []
    for i, cell in review.iterrows():
        crop = ("html", crops[i]) if i in crops else "–"
        rows.append((i + 1, crop, cell["image"], int(cell["frame"]), int(cell["label"]), cell["area"],
                     cell["mean_prob"], cell["size_score"], cell["reason"]))  # fmt: skip
        attrs.append({"data-image": cell["image"], "data-frame": int(cell["frame"]), "data-label": int(cell["label"])})
    header = ["#", "crop", "image", "frame", "label", "area", "mean_prob", "size score", "why"]
    note = (
        f'<p class="note">Unsure cells (mean probability below {UNSURE}) and odd sizes, most doubtful first '
        f"(cellseg.review.cells_to_review: the same list as the napari widget). Crop: the cell outlined in yellow, "
        f"its neighbours in cyan.</p>"
    )
    return note + table(header, rows, "review-table", attrs)


def review_crops(review: pd.DataFrame, out_dir: Path, sources: list, predictor) -> dict[int, str]:
    """``<img>`` of each listed cell cut from its raw frame (normalized as the network saw it),
    reading each source once up to the last frame needed."""
    crops: dict[int, str] = {}
    by_name = {s.name: s for s in sources}
    for name, cells in review.groupby("image", sort=False):
        source, labels_path = by_name.get(name), out_dir / f"{name}_labels.tif"
        if source is None or not labels_path.exists():
            continue
        wanted = {int(f): cells[cells["frame"] == f] for f in cells["frame"].unique()}
        with tifffile.TiffFile(labels_path) as tif:
            pages = tif.series[0].pages
            for index, raw in source.frames():
                if index in wanted and isinstance(raw, np.ndarray):
                    labels = np.squeeze(pages[index].asarray())
                    grey = grey_rgb(predictor.normalize(raw, name))
                    for i, cell in wanted[index].iterrows():
                        crops[i] = cell_crop(grey, labels, int(cell["label"]))
                if index >= max(wanted):
                    break
    return crops


def cell_crop(grey: np.ndarray, labels: np.ndarray, label: int) -> str:
    """A square crop around one cell, outlined, scaled to ``CROP`` px."""
    ys, xs = np.nonzero(labels == label)
    if not ys.size:
        return "–"
    cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
    half = max(int(max(np.ptp(ys), np.ptp(xs)) * 0.75), 12)
    y0, x0 = max(cy - half, 0), max(cx - half, 0)
    window = (slice(y0, cy + half + 1), slice(x0, cx + half + 1))
    rgb, cut = grey[window].copy(), labels[window]
    rgb[inner_boundaries(cut) & (cut != label)] = (0, 200, 230)
    rgb[inner_boundaries(cut == label)] = (255, 225, 25)
    if max(rgb.shape[:2]) > CROP:  # outlines kept visible
        rgb = shrink(rgb, CROP)
    scale = CROP / max(rgb.shape[:2])
    size = (max(round(rgb.shape[1] * scale), 1), max(round(rgb.shape[0] * scale), 1))
    return img(png_uri(Image.fromarray(rgb).resize(size, Image.NEAREST)), f"cell {label}", *size, cls="pix")


# ---------------------------------------------------------------- training


def write_training_report(cfg: DictConfig, datamodule) -> Path | None:
    """``<run>/report.html`` for a finished training run (rank 0); prints ``Report: <path>``."""
    run_dir = Path(cfg.paths.output_dir)
    return write_report(run_dir / "report.html", lambda: training_report(run_dir, cfg, datamodule))


def training_report(run_dir: Path, cfg: DictConfig, datamodule) -> str:
    """The page of a training run: settings, curves, the best checkpoint's ROC and
    validation overlays, and the test numbers."""
    from cellseg.checkpoint import load_checkpoint

    result_path = run_dir / "result.json"
    result = json.loads(result_path.read_text()) if result_path.exists() else {}
    history_path = run_dir / "validation.csv"
    history = pd.read_csv(history_path) if history_path.exists() else pd.DataFrame()
    best_path = run_dir / "checkpoints" / "best.ckpt"
    checkpoint = load_checkpoint(best_path) if best_path.exists() else None
    page = Page("cellseg training report", f"{run_dir} · cellseg {__version__} · {now()}")
    page.add("settings", "Settings", training_settings(run_dir, cfg, best_path if checkpoint else None))
    best = result.get("best", {})
    if best:
        page.add("best", f"Best validation ({result.get('metric', '')})", value_table(best, "best-validation"))
    if not history.empty:
        best_step = int(best["step"]) if "step" in best else best_row_step(history, cfg)
        train_loss, source = training_loss(run_dir)
        note = "" if train_loss is not None else f'<p class="note">{esc(source)}</p>'
        curves = figure_tag(curves_figure(history, train_loss, best_step), "training curves", (12, 4))
        page.add("curves", "Training curves", curves + note)
    if checkpoint is not None:
        page.add("roc", "Validation ROC of best.ckpt", roc_section(checkpoint))
        page.add("validation", "Validation overlays", validation_overlays(best_path, datamodule))
    tests = {k: v for k, v in result.items() if k.startswith("test")}
    if tests:
        body = "".join(f"<h3>{esc(k)}</h3>" + value_table(v, f"result-{k}") for k, v in tests.items())
        page.add("test", "Test (chooses nothing)", body)
    return page.render()


def best_row_step(history: pd.DataFrame, cfg: DictConfig) -> int | None:
    """The step of the best validation, where ``result.json`` does not say (a run still going)."""
    metric = cfg.monitor.metric
    if metric not in history or history[metric].isna().all():
        return None
    pick = history[metric].idxmax() if cfg.monitor.mode == "max" else history[metric].idxmin()
    return int(history.loc[pick, "step"])


def training_settings(run_dir: Path, cfg: DictConfig, best: Path | None) -> str:
    saved = run_dir / ".hydra" / "config.yaml"
    text = saved.read_text() if saved.exists() else OmegaConf.to_yaml(OmegaConf.create(plain_config(cfg)))
    settings = {
        "run folder": str(run_dir),
        "best checkpoint": str(best) if best else "none written",
        "model": OmegaConf.select(cfg, "model._target_"),
        "data": OmegaConf.select(cfg, "data.root", default=None),
        "steps / epochs / time": f"{cfg.trainer.get('max_steps')} / {cfg.trainer.get('max_epochs')} / "
        f"{cfg.trainer.get('max_time')}",
        "threshold method": cfg.get("threshold_method"),
        "post-processing": json.dumps(OmegaConf.to_container(cfg.postprocess, resolve=True)),
        "monitor": f"{cfg.monitor.metric} ({cfg.monitor.mode})",
        "cellseg version": __version__,
        "date": now(),
    }
    where = ".hydra/config.yaml" if saved.exists() else "composed config"
    rows = table(["setting", "value"], ((k, str(v)) for k, v in settings.items()), "settings-table")
    return f"{rows}<details><summary>All options ({esc(where)})</summary><pre>{esc(text)}</pre></details>"


def training_loss(run_dir: Path) -> tuple[pd.DataFrame | None, str]:
    """``train/loss`` per step from the CSV logger's ``metrics.csv`` (W&B keeps it in its own
    binary files), or None and why."""
    for path in sorted(run_dir.glob("**/metrics.csv")):
        if "test_sequence" in path.parts:
            continue
        logged = pd.read_csv(path)
        column = next((c for c in ("train/loss_step", "train/loss") if c in logged), None)
        if column is not None:
            rows = logged[["step", column]].dropna()
            return rows.rename(columns={column: "loss"}), str(path)
    return None, "train/loss is not drawn: it is read from the CSV logger (logger=csv, or logger=[wandb,csv])."


def roc_section(checkpoint: dict) -> str:
    state = checkpoint["state_dict"]
    fpr, tpr = state["roc_curve"].float().numpy()
    threshold = float(state["threshold"])
    if not np.abs(fpr).sum() + np.abs(tpr).sum():
        return '<p class="note">best.ckpt holds no validation ROC.</p>'
    auc = metrics.roc_auc(state["roc_curve"][0].float(), state["roc_curve"][1].float())
    title = f"pixel ROC, cell interior (AUC {auc:.4f})"
    method = checkpoint["hyper_parameters"].get("threshold_method", "f1")
    figure = figure_tag(roc_with_threshold(fpr, tpr, threshold, title), "validation ROC", (9, 4.5))
    return figure + (
        f'<p class="note">The threshold stored in best.ckpt ({threshold:.3f}, chosen by threshold_method='
        f"{esc(method)}) is the one prediction uses unless threshold= is given.</p>"
    )


def validation_overlays(best_path: Path, datamodule, limit: int = 6) -> str:
    """Error maps of the validation frames, predicted again with the best checkpoint and its
    threshold, with each frame's SEG and AP50."""
    from cellseg.inference.predictor import Predictor

    frames = list(getattr(datamodule, "val_frames_data", None) or [])
    if not frames:
        return '<p class="note">No validation frames.</p>'
    predictor = Predictor(best_path, device="auto")
    figures, rows = [], []
    for frame in frames[:limit]:
        prob = predictor.predict_normalized(frame.image)
        pred = predictor.labels(prob)
        errors = metrics.error_kinds(frame.labels, pred)
        scores = metrics.instance_counts(frame.labels, pred).summary()
        rows.append((frame.name, scores["seg"], scores["ap50"], *(int(errors[k].size) for k in metrics.ERROR_KINDS)))
        overlay = error_overlay(frame.image, frame.labels, pred, errors)
        figures.append(figure_box(image_tag(overlay, f"validation {frame.name}"), frame.name))
    note = f'<p class="note">{limit} of {len(frames)} validation frames shown.</p>' if len(frames) > limit else ""
    header = ["frame", "SEG", "AP50", *metrics.ERROR_KINDS]
    scores = table(header, rows, "validation-frames")
    return f'{error_key()}{note}{scores}<div class="gallery">{"".join(figures)}</div>'
