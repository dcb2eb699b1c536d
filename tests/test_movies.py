"""predict.py on movies and batches: tracking outputs, bad frames, crashes and resuming,
crafted checkpoints. Real checkpoint, real TIFFs, the challenge's own validator."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import roifile
import tifffile
import torch
from scipy import ndimage

from cellseg.data.synthetic import synthetic_frame
from cellseg.data.synthetic_movie import generate_movie
from cellseg.errors import CellsegError
from cellseg.inference.predictor import Predictor
from cellseg.inference.run import PROB_STEPS, earlier_scored_names, labels_dtype, stored_probability
from cellseg.outputs.streams import COMPRESSION, CsvStream, TiffStream
from cellseg.tracking.ctc import validate_res
from cellseg.tracking.tables import TRACK_COLUMNS

from .conftest import compose_cfg
from .test_tracking import write_ctc_gt


def predict_run(ckpt, input_path, out_dir, *extra):
    from cellseg.inference.predict_task import predict

    cfg = compose_cfg([f"ckpt={ckpt}", f"input={input_path}", f"output={out_dir}", *extra], config_name="predict")
    return predict(cfg)


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    """A 10-frame synthetic movie with a blank frame 4, as a TIFF stack, with its CTC ground truth."""
    root = tmp_path_factory.mktemp("movie")
    frames, labels, tracks = generate_movie(n_frames=10, shape=(192, 192), seed=3, blank_frames=(4,))
    tifffile.imwrite(root / "movie.tif", frames)
    write_ctc_gt(root / "01_GT", labels, tracks)
    return root


@pytest.fixture(scope="module")
def movie_run(trained_ckpt, movie, tmp_path_factory):
    out = tmp_path_factory.mktemp("movie_out")
    stats = predict_run(trained_ckpt, movie / "movie.tif", out, f"gt={movie / '01_GT'}", "overlay_every=3")
    return stats, out


def test_movie_labels_are_track_ids_and_the_blank_frame_is_bridged(movie_run):
    stats, out = movie_run
    labels = tifffile.imread(out / "movie_labels.tif")
    assert labels.shape == (10, 192, 192)
    assert stats.bad_frames == 1 and stats.frames == 10
    assert labels[4].max() == 0 and all(labels[t].max() > 0 for t in range(10) if t != 4)
    tracks = pd.read_csv(out / "movie_tracks.csv")
    assert list(tracks.columns) == TRACK_COLUMNS
    # gap closing bridged frame 4: tracks present on both sides of it keep their id
    assert len(set(np.unique(labels[3])) & set(np.unique(labels[5])) - {0}) >= 0.8 * (len(np.unique(labels[3])) - 1)
    assert len(tracks) < 0.5 * sum(len(np.unique(f)) - 1 for f in labels)  # ids persist over frames


def test_movie_tables_agree_with_the_labels(movie_run):
    _, out = movie_run
    labels = tifffile.imread(out / "movie_labels.tif")
    rows = pd.read_csv(out / "measurements.csv")
    assert (rows["track_id"] == rows["label"]).all()
    for t in (0, 5, 9):
        assert sorted(rows.loc[rows["frame"] == t, "track_id"]) == sorted(set(np.unique(labels[t])) - {0})
    napari = pd.read_csv(out / "movie_napari_tracks.csv")
    assert list(napari.columns) == ["track_id", "t", "y", "x"] and len(napari) == len(rows)
    graph = json.loads((out / "movie_napari_graph.json").read_text())
    tracks = pd.read_csv(out / "movie_tracks.csv").set_index("TRACK_ID")
    assert all(tracks.loc[int(child), "PARENT_ID"] == parents[0] for child, parents in graph.items())
    assert sorted(p.name for p in out.glob("movie_t*_overlay.png")) == [
        f"movie_t{t:03d}_overlay.png" for t in (0, 3, 6, 9)
    ]
    rois = roifile.roiread(out / "movie_rois.zip")
    assert sorted((r.position - 1, int(r.name)) for r in rois) == sorted(zip(rows["frame"], rows["label"]))
    assert (out / "movie_growth.png").stat().st_size > 0 and (out / "movie_lineage.png").stat().st_size > 0


def test_ctc_result_folder_is_valid_and_scored(movie_run):
    stats, out = movie_run
    assert validate_res(out / "movie_RES")
    masks = sorted((out / "movie_RES").glob("mask*.tif"))
    assert len(masks) == 10
    labels = tifffile.imread(out / "movie_labels.tif")
    assert np.array_equal(tifffile.imread(masks[0]) > 0, labels[0] > 0)
    scores = stats.tracking_metrics["movie"]
    saved = json.loads((out / "metrics.json").read_text())["movies"]["movie"]
    assert saved == pytest.approx(scores)
    assert {"TRA", "DET", "LNK", "BC(2)", "SEG"} <= set(scores)
    assert scores["DET"] > 0.8 and scores["TRA"] > 0.8, scores  # a trained model, tracked


def test_a_blank_first_frame_keeps_every_track_in_its_frames(trained_ckpt, tmp_path):
    """Frames before the first good one are empty frames of the tracker too, in their place:
    the CTC folder's B and E are the frames its masks hold each label in."""
    frames, labels, tracks = generate_movie(n_frames=6, shape=(192, 192), seed=3, blank_frames=(0,))
    tifffile.imwrite(tmp_path / "movie.tif", frames)
    write_ctc_gt(tmp_path / "01_GT", labels, tracks)
    stats = predict_run(trained_ckpt, tmp_path / "movie.tif", tmp_path / "out", f"gt={tmp_path / '01_GT'}")
    res = tmp_path / "out" / "movie_RES"
    assert stats.bad_frames == 1 and validate_res(res)
    masks = [tifffile.imread(res / f"mask{t:03d}.tif") for t in range(6)]
    assert masks[0].max() == 0
    for line in (res / "res_track.txt").read_text().splitlines():
        label, begin, end, _ = map(int, line.split())
        assert [t for t in range(6) if (masks[t] == label).any()] == list(range(begin, end + 1)), line
    assert (pd.read_csv(tmp_path / "out" / "movie_tracks.csv")["TRACK_START"] >= 1).all()
    assert stats.tracking_metrics["movie"]["TRA"] > 0.8


def test_skip_existing_scores_a_kept_movie_from_its_ctc_folder(trained_ckpt, movie, movie_run, tmp_path, monkeypatch):
    stats, out = movie_run
    kept = tmp_path / "out"
    shutil.copytree(out, kept)
    (kept / "metrics.json").unlink()
    monkeypatch.setattr(Predictor, "predict_normalized", lambda *a: pytest.fail("segmented again"))
    again = predict_run(
        trained_ckpt, movie / "movie.tif", kept, f"gt={movie / '01_GT'}", "overlay_every=3", "skip_existing=true"
    )
    assert again.skipped == 1 and again.tracking_metrics["movie"] == pytest.approx(stats.tracking_metrics["movie"])
    assert json.loads((kept / "metrics.json").read_text())["movies"]["movie"] == pytest.approx(
        stats.tracking_metrics["movie"]
    )
    shutil.rmtree(kept / "movie_RES")
    with pytest.raises(CellsegError, match=r"movie_RES: missing, so the kept movie cannot be scored"):
        predict_run(
            trained_ckpt, movie / "movie.tif", kept, f"gt={movie / '01_GT'}", "overlay_every=3", "skip_existing=true"
        )


def write_stack(path: Path, frames: np.ndarray) -> Path:
    tifffile.imwrite(path, frames)
    return path


def write_folder(path: Path, frames: np.ndarray) -> Path:
    path.mkdir()
    for t, frame in enumerate(frames):
        tifffile.imwrite(path / f"t{t:03d}.tif", frame)
    return path


@pytest.mark.parametrize(
    ("write", "name", "cut", "message"),
    [
        (write_stack, "short.tif", np.s_[:6], r"short.tif: 6 frame\(s\), but gt=.*01_GT has 10 \(TRA/"),
        (
            write_stack,
            "cropped.tif",
            np.s_[:, :160],
            r"cropped.tif: frames of 160x192 px, but gt=.*01_GT masks are 192x192",
        ),
        (write_folder, "02", np.s_[:, :, 32:], r"02: frames of 192x160 px, but gt=.*01_GT masks are 192x192"),
    ],
)
def test_a_ground_truth_of_another_movie_is_refused_before_anything_is_written(
    trained_ckpt, movie, tmp_path, write, name, cut, message
):
    """Another length or frame size: refused before segmenting, not after it with a scoring error."""
    source = write(tmp_path / name, tifffile.imread(movie / "movie.tif")[cut])
    with pytest.raises(CellsegError, match=message):
        predict_run(trained_ckpt, source, tmp_path / "out", f"gt={movie / '01_GT'}")
    assert not (tmp_path / "out").exists()


def test_a_mask_that_fails_scoring_keeps_the_outputs_and_names_the_ground_truth(trained_ckpt, movie, tmp_path):
    gt = tmp_path / "01_GT"
    shutil.copytree(movie / "01_GT", gt)
    (gt / "SEG" / "man_seg007.tif").write_bytes(b"garbage")
    out = tmp_path / "out"
    with pytest.raises(CellsegError, match=rf"gt={gt}: cannot score movie_RES .*only the scores are missing"):
        predict_run(trained_ckpt, movie / "movie.tif", out, f"gt={gt}", "save_overlay=false")
    assert validate_res(out / "movie_RES") and (out / "measurements.csv").is_file()
    assert tifffile.imread(out / "movie_labels.tif").shape == (10, 192, 192)
    assert not (out / "metrics.json").exists()


def test_a_ground_truth_that_matches_nothing_says_so(trained_ckpt, movie, tmp_path, capsys):
    """A movie folder is scored frame by frame where gt= has a frame's mask; with none, a warning."""
    (tmp_path / "gt").mkdir()
    (tmp_path / "01").mkdir()
    for t, frame in enumerate(tifffile.imread(movie / "movie.tif")[:3]):
        tifffile.imwrite(tmp_path / "01" / f"t{t:03d}.tif", frame)
    stats = predict_run(trained_ckpt, tmp_path / "01", tmp_path / "out", f"gt={tmp_path / 'gt'}", "save_overlay=false")
    assert stats.metrics is None and not stats.tracking_metrics
    assert "no mask there matches an input by name, so nothing was scored" in capsys.readouterr().err


def test_untracked_stack_keeps_per_frame_labels(trained_ckpt, movie, tmp_path):
    stats = predict_run(trained_ckpt, movie / "movie.tif", tmp_path / "out", "track=false", "save_prob=false")
    assert stats.tracks == 0 and not (tmp_path / "out" / "movie_RES").exists()
    rows = pd.read_csv(tmp_path / "out" / "measurements.csv")
    assert rows["track_id"].isna().all()
    assert rows.groupby("frame")["label"].min().eq(1).all()  # numbered afresh in every frame


def test_a_crash_leaves_no_partial_output_and_skip_existing_finishes(trained_ckpt, tmp_path, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    for name, seed in (("a", 0), ("b", 1), ("c", 2)):
        tifffile.imwrite(folder / f"{name}.tif", synthetic_frame(np.random.default_rng(seed), 128)[0])
    out = tmp_path / "out"
    (out).mkdir()
    (out / "notes.txt").write_text("mine")
    real = Predictor.predict_normalized
    calls = []

    def dies_on_b(self, normalized):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(self, normalized)

    monkeypatch.setattr(Predictor, "predict_normalized", dies_on_b)
    with pytest.raises(RuntimeError, match="killed"):
        predict_run(trained_ckpt, folder, out)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["a_labels.tif", "a_overlay.png", "a_prob.tif", "a_rois.zip", "notes.txt"], (
        names
    )  # no b, no temp files
    monkeypatch.setattr(Predictor, "predict_normalized", real)
    first = (out / "a_labels.tif").read_bytes()
    calls.clear()
    monkeypatch.setattr(Predictor, "predict_normalized", lambda self, n: calls.append(1) or real(self, n))
    stats = predict_run(trained_ckpt, folder, out, "skip_existing=true")
    assert len(calls) == 2 and stats.skipped == 1 and stats.images == 2
    assert (out / "a_labels.tif").read_bytes() == first and (out / "notes.txt").read_text() == "mine"
    rows = pd.read_csv(out / "measurements.csv")
    assert sorted(rows["image"].unique()) == ["a", "b", "c"]
    a_labels = tifffile.imread(out / "a_labels.tif")
    assert sorted(rows.loc[rows["image"] == "a", "label"]) == sorted(set(np.unique(a_labels)) - {0})


def test_failed_movie_keeps_earlier_outputs_untouched(trained_ckpt, movie, tmp_path, monkeypatch):
    out = tmp_path / "out"
    predict_run(trained_ckpt, movie / "movie.tif", out, "save_prob=false", "save_overlay=false")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    calls = []
    real = Predictor.predict_normalized

    def dies_late(self, normalized):
        calls.append(1)
        if len(calls) == 6:
            raise RuntimeError("killed")
        return real(self, normalized)

    monkeypatch.setattr(Predictor, "predict_normalized", dies_late)
    with pytest.raises(RuntimeError):
        predict_run(trained_ckpt, movie / "movie.tif", out, "overwrite=true", "save_prob=false", "save_overlay=false")
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("kind", ["nan", "inf"])
def test_float_image_with_nan_is_refused(trained_ckpt, tmp_path, capsys, kind):
    image = synthetic_frame(np.random.default_rng(0), 96)[0].astype(np.float32)
    image[:] = np.nan if kind == "nan" else np.inf
    tifffile.imwrite(tmp_path / "bad.tif", image)
    with pytest.raises(CellsegError, match="NaN or infinite pixels"):
        predict_run(trained_ckpt, tmp_path / "bad.tif", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written: the same command runs again once fixed


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda path: path.write_bytes(path.read_bytes()[:300]), "unreadable"),
        (lambda path: tifffile.imwrite(path, np.ones((50, 50), np.uint16)), r"has shape \(50, 50\), its source"),
        (lambda path: tifffile.imwrite(path, np.ones((2, 128, 128), np.uint16)), "2 pages for 1 frames"),
    ],
)
def test_skip_existing_refuses_labels_it_cannot_use(trained_ckpt, tmp_path, damage, message):
    """A truncated labels file, or one of another image's size, is reported, not measured."""
    tifffile.imwrite(tmp_path / "a.tif", synthetic_frame(np.random.default_rng(0), 128)[0])
    out = tmp_path / "out"
    predict_run(trained_ckpt, tmp_path / "a.tif", out)
    damage(out / "a_labels.tif")
    kept = (out / "a_labels.tif").read_bytes()
    with pytest.raises(CellsegError, match=message):
        predict_run(trained_ckpt, tmp_path / "a.tif", out, "skip_existing=true")
    assert (out / "a_labels.tif").read_bytes() == kept


def crafted(trained_ckpt, tmp_path, edit) -> str:
    checkpoint = torch.load(trained_ckpt, weights_only=True)
    edit(checkpoint["hyper_parameters"])
    path = tmp_path / "crafted.ckpt"
    torch.save(checkpoint, path)
    return str(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda h: h.update(net={"_target_": "pathlib.Path.write_text", "self": "{flag}", "data": "pwned"}),
            "unknown model",
        ),
        (lambda h: h["net"].update(encoder_weights={"_target_": "pathlib.Path.write_text", "self": "{flag}"}), "plain"),
        (lambda h: h["net"].update(_args_=["{flag}"]), "plain value"),
        (lambda h: h["postprocess"].update(method={"_target_": "pathlib.Path.write_text"}), "refused"),
        (lambda h: h["data"].update(norm={"low": "{flag}", "high": 99.8}), "refused"),
    ],
)
def test_crafted_checkpoint_runs_no_code(trained_ckpt, tmp_path, edit, message):
    flag = tmp_path / "pwned.txt"

    def with_flag(hparams):
        edit(hparams)
        text = json.dumps(hparams).replace("{flag}", str(flag))
        hparams.clear()
        hparams.update(json.loads(text))

    path = crafted(trained_ckpt, tmp_path, with_flag)
    with pytest.raises(CellsegError, match=message):
        Predictor(path, device="cpu")
    assert not flag.exists()


def test_an_integer_past_float_range_in_a_checkpoint_is_one_line(trained_ckpt, tmp_path):
    """``math.isfinite(10**400)`` raises OverflowError: the range check must answer, not crash."""
    path = crafted(trained_ckpt, tmp_path, lambda h: h["data"].update(edge_width=10**400))
    with pytest.raises(CellsegError, match=r"refused: data.edge_width is 1000+, not a finite integer"):
        Predictor(path, device="cpu")


def test_predictor_leaves_malloc_alone(trained_ckpt, monkeypatch):
    opened = []
    real = ctypes.CDLL
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: opened.append(a) or real(*a, **k))
    Predictor(trained_ckpt, device="cpu")
    assert opened == []
    from cellseg.inference.malloc import keep_freed_memory

    keep_freed_memory()
    assert opened  # the recorder sees the call the prediction CLI makes


def test_labels_dtype_and_uint32_pages_round_trip(tmp_path):
    many = np.arange(70_000, dtype=np.uint32).reshape(280, 250) + 1
    assert labels_dtype(many, 1) == np.uint32
    assert labels_dtype(np.full((4, 4), 20_000), 1) == np.uint16
    assert labels_dtype(np.full((4, 4), 20_000), 5) == np.uint32  # stacks keep room for new ids
    stream = TiffStream(tmp_path / "l.tif", 1, many.shape, labels_dtype(many, 1))
    stream.add(many)
    stream.close()
    back = tifffile.imread(tmp_path / "l.tif")
    assert back.dtype == np.uint32 and np.array_equal(back, many)
    stack = TiffStream(tmp_path / "s.tif", 3, (8, 8), np.uint16)  # a movie's pages: a time series
    for t in range(3):
        stack.add(np.full((8, 8), t))
    stack.close()
    with tifffile.TiffFile(tmp_path / "s.tif") as tif:
        assert tif.series[0].axes == "TYX" and np.array_equal(tif.asarray()[:, 0, 0], [0, 1, 2])
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:
        assert tif.series[0].axes == "YX"


def test_contrast_to_noise_tells_camera_noise_from_nuclei():
    from cellseg.data.normalize import contrast_to_noise

    frames, _, _ = generate_movie(n_frames=3, shape=(128, 128), seed=1, blank_frames=(1,))
    noise, nuclei = contrast_to_noise(frames[1]), contrast_to_noise(frames[0])
    assert noise < 5 < 20 < nuclei
    assert np.isinf(contrast_to_noise(np.full((32, 32), 7, np.uint8)))  # no noise estimate: left to normalize


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_contrast_to_noise_counts_integer_frames_as_float_ones_are_partitioned(dtype):
    from cellseg.data.normalize import contrast_to_noise

    frames, _, _ = generate_movie(n_frames=1, shape=(128, 128), seed=2)
    frame = (frames[0].astype(np.float64) * (300 if dtype == np.uint16 else 1)).astype(dtype)
    counted, partitioned = contrast_to_noise(frame), contrast_to_noise(frame.astype(np.float32))
    assert 5 < counted < np.inf
    assert counted == pytest.approx(partitioned, rel=1e-6)


def test_csv_stream_writes_what_one_table_would_and_reads_back_or_drops_a_source(tmp_path):
    from cellseg.inference.run import TABLE_COLUMNS

    rng = np.random.default_rng(0)

    def rows(image: str, frame: int, tracked: bool) -> pd.DataFrame:
        table = pd.DataFrame({c: rng.random(3) * 100 for c in TABLE_COLUMNS})
        table["image"], table["frame"], table["label"] = image, frame, [1, 2, 3]
        table["track_id"] = table["label"] if tracked else pd.array([pd.NA] * 3, dtype="Int64")
        return table

    final = tmp_path / "measurements.csv"
    stream = CsvStream(final, TABLE_COLUMNS)
    kept = [rows("007", 0, False), rows("movie", 0, True), rows("movie", 1, True)]
    stream.add(kept[0])
    movie_start = stream.tell()
    stream.add(kept[1])
    stream.add(kept[2])
    movie = stream.read_from(movie_start)
    assert movie["frame"].tolist() == [0, 0, 0, 1, 1, 1] and np.allclose(movie["area"], pd.concat(kept[1:])["area"])
    failed_start = stream.tell()
    stream.add(rows("failed", 0, True))
    stream.truncate(failed_start)  # a source that failed leaves no rows
    assert stream.read_from(failed_start).empty and not final.exists()  # nothing final before the end
    stream.commit()
    expected = tmp_path / "expected.csv"
    pd.concat(kept).to_csv(expected, index=False)
    assert final.read_text() == expected.read_text()


def test_stored_probability_is_within_half_a_step_and_compresses(tmp_path):
    rng = np.random.default_rng(0)
    cells = synthetic_frame(rng, 256)[1] > 0
    smooth = ndimage.gaussian_filter(cells.astype(float), 1.0)  # sure inside, sure outside
    cell = np.clip(smooth + rng.normal(0, 2e-4, smooth.shape), 0, 1).astype(np.float32)
    stored = stored_probability(cell)
    assert stored.dtype == np.float16
    steps = stored.astype(np.float64) * PROB_STEPS
    assert np.array_equal(steps, np.round(steps))  # exact multiples of 1/1024
    assert np.abs(stored.astype(np.float64) - cell).max() <= 0.5 / PROB_STEPS + 1e-7
    sizes = {}
    for name, page in (("full", cell.astype(np.float16)), ("stored", stored)):
        tifffile.imwrite(tmp_path / f"{name}.tif", page, **COMPRESSION)
        sizes[name] = (tmp_path / f"{name}.tif").stat().st_size
    assert sizes["stored"] < sizes["full"] / 2


@pytest.fixture
def scored_pair(tmp_path) -> tuple[Path, Path]:
    """Two synthetic images and their masks, as ``input=`` and ``gt=`` folders."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for name, seed in (("a", 0), ("b", 1)):
        image, labels = synthetic_frame(np.random.default_rng(seed), 128, n_nuclei=5)
        tifffile.imwrite(images / f"{name}.tif", image)
        tifffile.imwrite(masks / f"{name}.tif", labels.astype(np.uint16))
    return images, masks


def test_skip_existing_redoes_a_source_interrupted_while_committing(trained_ckpt, scored_pair, tmp_path):
    """Killed between its renames, a source has some outputs but no labels (committed last):
    skip_existing=true segments it again instead of refusing its own leftovers."""
    images, _ = scored_pair
    out = tmp_path / "out"
    predict_run(trained_ckpt, images, out)
    (out / "b_labels.tif").unlink()
    (out / "b_prob.tif").write_bytes(b"half")
    stats = predict_run(trained_ckpt, images, out, "skip_existing=true")
    assert (stats.skipped, stats.images) == (1, 1)
    assert tifffile.imread(out / "b_prob.tif").shape == (128, 128)
    assert sorted(pd.read_csv(out / "measurements.csv")["image"].unique()) == ["a", "b"]


def test_skip_existing_scores_the_sources_it_keeps(trained_ckpt, scored_pair, tmp_path):
    images, masks = scored_pair
    out = tmp_path / "out"
    predict_run(trained_ckpt, images, out, f"gt={masks}")
    first = json.loads((out / "metrics.json").read_text())
    (out / "b_labels.tif").unlink()
    stats = predict_run(trained_ckpt, images, out, f"gt={masks}", "skip_existing=true")
    again = json.loads((out / "metrics.json").read_text())
    assert stats.skipped == 1 and sorted(again["per_image"]) == ["a", "b"]
    for name in ("a", "b"):
        assert again["per_image"][name] == pytest.approx(first["per_image"][name])
    assert again["overall"]["seg"] == pytest.approx(first["overall"]["seg"])
    assert (first["overall"]["auc_frames"], again["overall"]["auc_frames"]) == (2, 1)  # a's probabilities are gone


def test_skip_existing_refuses_an_input_that_leaves_out_an_earlier_source(trained_ckpt, scored_pair, tmp_path):
    images, _ = scored_pair
    out = tmp_path / "out"
    predict_run(trained_ckpt, images, out)
    before = (out / "measurements.csv").read_bytes()
    with pytest.raises(CellsegError, match=r"run.json: the run there also segmented b, which this input does not"):
        predict_run(trained_ckpt, images / "a.tif", out, "skip_existing=true")
    assert (out / "measurements.csv").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_overwrite_removes_the_scores_of_the_outputs_it_replaces(trained_ckpt, scored_pair, tmp_path):
    images, masks = scored_pair
    out = tmp_path / "out"
    predict_run(trained_ckpt, images, out, f"gt={masks}")
    assert {"metrics.json", "roc.png", "a_errors.png", "b_errors.png"} <= {p.name for p in out.iterdir()}
    predict_run(trained_ckpt, images / "a.tif", out, "overwrite=true")
    names = {p.name for p in out.iterdir()}
    assert not names & {"metrics.json", "roc.png", "a_errors.png", "b_errors.png"}, names
    assert "Metrics against ground truth" not in (out / "report.html").read_text()


def test_overwrite_removes_the_per_source_outputs_it_does_not_write_again(trained_ckpt, movie, tmp_path):
    """Overlays of other frames, a probability, ROI and tracks files the new options no longer
    write described the replaced labels; a source whose name looks like a frame overlay keeps its own."""
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(movie / "movie.tif", source / "movie.tif")
    tifffile.imwrite(source / "movie_t001.tif", tifffile.imread(movie / "movie.tif")[0])  # a single image
    out = tmp_path / "out"
    predict_run(trained_ckpt, source, out, "overlay_every=2")
    earlier = time.time() - 60
    for path in out.rglob("*"):
        os.utime(path, (earlier, earlier))  # as an earlier run left them
    predict_run(trained_ckpt, source, out, "overwrite=true", "overlay_every=3", "save_prob=false", "save_rois=false",
                "track=false")  # fmt: skip
    overlays = sorted(p.name for p in out.glob("movie_t*_overlay.png"))
    assert overlays == sorted([f"movie_t{t:03d}_overlay.png" for t in (0, 3, 6, 9)] + ["movie_t001_overlay.png"])
    assert (out / "movie_t001_overlay.png").stat().st_mtime > earlier + 30  # the single image's, rewritten
    assert not [p.name for p in out.iterdir() if p.name.endswith(("_prob.tif", "_rois.zip", "_tracks.csv", "_RES"))]
    page = (out / "report.html").read_text(encoding="utf-8")
    assert 'alt="overlay movie_t002"' not in page and 'alt="overlay movie_t003"' in page


def test_only_error_pictures_inside_the_output_folder_count_as_stale(tmp_path):
    """A crafted ``metrics.json`` cannot make overwrite=true delete files elsewhere."""
    out = tmp_path / "out"
    out.mkdir()
    for path in (out / "a_errors.png", tmp_path / "victim_errors.png", out / "b_errors.png"):
        path.write_bytes(b"png")
    (out / "b_errors.png").unlink()
    (out / "metrics.json").write_text(
        json.dumps({"per_image": {"a": {}, "../victim": {}, "b": {}, str(tmp_path / "victim"): {}}})
    )
    assert earlier_scored_names(out) == {"a"}


@pytest.mark.parametrize(("name", "kind"), [("movie_RES", "file"), ("movie_labels.tif", "folder")])
def test_an_output_name_taken_by_the_wrong_kind_is_refused_before_segmenting(
    trained_ckpt, movie, tmp_path, monkeypatch, name, kind
):
    out = tmp_path / "out"
    predict_run(trained_ckpt, movie / "movie.tif", out, "save_prob=false", "save_overlay=false")
    shutil.rmtree(out / name) if (out / name).is_dir() else (out / name).unlink()
    (out / name).mkdir() if kind == "folder" else (out / name).write_text("mine")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    monkeypatch.setattr(Predictor, "predict_normalized", lambda *a: pytest.fail("segmented"))
    with pytest.raises(CellsegError, match=rf"{name}: is a {kind} where cellseg writes a"):
        predict_run(trained_ckpt, movie / "movie.tif", out, "overwrite=true", "save_prob=false", "save_overlay=false")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
