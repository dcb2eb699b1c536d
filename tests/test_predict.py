"""predict.py end to end: round trip, stacks, tiling, post-processing, bad input."""

from __future__ import annotations

import logging
import re
import subprocess
import sys

import numpy as np
import pytest
import tifffile
import torch

from cellseg import metrics
from cellseg.data.synthetic import synthetic_frame
from cellseg.errors import CellsegError
from cellseg.inference.inputs import plan_sources
from cellseg.inference.optimize import CompiledEncoder
from cellseg.inference.predictor import Predictor
from cellseg.inference.tiling import tile_starts
from cellseg.postprocess import probabilities_to_labels

from .conftest import ROOT, compose_cfg


def predict_run(ckpt, input_path, out_dir, *extra):
    from cellseg.inference.predict_task import predict

    cfg = compose_cfg([f"ckpt={ckpt}", f"input={input_path}", f"output={out_dir}", *extra], config_name="predict")
    return predict(cfg)


@pytest.fixture(scope="module")
def frame_and_truth():
    return synthetic_frame(np.random.default_rng(99), 256)


@pytest.mark.slow
def test_round_trip_on_synthetic(trained_ckpt, frame_and_truth, tmp_path):
    image, truth = frame_and_truth
    tifffile.imwrite(tmp_path / "frame.tif", image)
    stats = predict_run(trained_ckpt, tmp_path / "frame.tif", tmp_path / "out")
    labels = tifffile.imread(tmp_path / "out" / "frame_labels.tif")
    assert labels.shape == image.shape and labels.dtype == np.uint16
    result = metrics.instance_metrics(truth, labels)
    # the files are what the checkpoint predicts in memory (the round trip) ...
    predictor = Predictor(trained_ckpt)
    assert np.array_equal(labels, predictor.labels(predictor.probabilities(image)))
    # ... and a 150-step model finds the cells (untrained: AP50 ~0); how well varies with the
    # CPU's precision (bf16 or fp32) by more than a tight bar allows: on an AMX Xeon (bf16)
    # it gives 5 labels for the 8 cells, two dim ones missed and two neighbours merged
    assert 0.5 * truth.max() <= labels.max() <= 1.3 * truth.max(), result
    assert result["ap50"] >= 0.4 and result["seg"] >= 0.5, result
    assert stats.cells == labels.max()
    table = (tmp_path / "out" / "measurements.csv").read_text().splitlines()
    assert len(table) == 1 + labels.max()
    assert (tmp_path / "out" / "frame_overlay.png").is_file()
    prob = tifffile.imread(tmp_path / "out" / "frame_prob.tif")
    assert prob.dtype == np.float16 and prob.min() >= 0 and prob.max() <= 1


def test_stack_gives_multipage_labels_and_frames_in_csv(trained_ckpt, tmp_path):
    import pandas as pd

    stack = np.stack([synthetic_frame(np.random.default_rng(i), 128)[0] for i in range(3)])
    tifffile.imwrite(tmp_path / "movie.tif", stack, photometric="minisblack")
    predict_run(trained_ckpt, tmp_path / "movie.tif", tmp_path / "out", "save_prob=false", "overlay_every=1")
    labels = tifffile.imread(tmp_path / "out" / "movie_labels.tif")
    assert labels.shape == (3, 128, 128)
    assert set(pd.read_csv(tmp_path / "out" / "measurements.csv")["frame"]) == {0, 1, 2}
    assert len(list((tmp_path / "out").glob("movie_t*_overlay.png"))) == 3
    assert not (tmp_path / "out" / "movie_prob.tif").exists()


def test_tile_starts_cover_with_overlap():
    starts = tile_starts(3000, 1024, 128)
    assert starts[0] == 0 and starts[-1] == 3000 - 1024
    assert all(b - a <= 1024 - 128 for a, b in zip(starts, starts[1:]))
    assert tile_starts(500, 1024, 128) == [0]


def crossing_cells(labels: np.ndarray, seam: int, axis: int) -> np.ndarray:
    """Labels of the cells that lie on both sides of the line before ``seam``."""
    first, second = np.take(labels, seam - 1, axis=axis), np.take(labels, seam, axis=axis)
    return np.unique(first[(first > 0) & (first == second)])


def cells_cut_by_seam(tiled: np.ndarray, whole: np.ndarray, seam: int, axis: int) -> list[tuple[int, float]]:
    """Cells of the untiled prediction that cross the line before ``seam`` and have no tiled
    cell matching them at IoU 0.8 (a cell cut in two by the seam matches at about 0.5; a
    watershed boundary between two touching cells moving by a pixel or two keeps ~0.9)."""
    table, whole_area, tiled_area = metrics._overlaps(whole, tiled)  # the IoU table AP and SEG use
    best_iou = (table / (whole_area[:, None] + tiled_area[None, :] - table))[:, 1:].max(1)
    cells = crossing_cells(whole, seam, axis)
    rows = np.searchsorted(np.unique(whole), cells)  # the table's rows are the sorted labels
    return [(int(cell), float(best_iou[row])) for cell, row in zip(cells, rows) if best_iou[row] < 0.8]


def test_a_cell_cut_by_a_seam_is_found_and_a_moved_boundary_is_not():
    whole = np.zeros((40, 60), np.int32)
    whole[10:30, 10:30], whole[10:30, 30:50] = 1, 2  # two touching cells, the seam line at x=20
    moved = whole.copy()
    moved[10:14, 30:32] = 1  # their shared boundary moved by 2 px in 4 rows
    cut = whole.copy()
    cut[10:30, 20:30] = 3  # cell 1 cut in two at the seam
    assert cells_cut_by_seam(moved, whole, 20, axis=1) == []
    assert [cell for cell, _ in cells_cut_by_seam(cut, whole, 20, axis=1)] == [1]


def test_large_image_tiles_without_seams(trained_ckpt):
    image, _ = synthetic_frame(np.random.default_rng(5), (2000, 3000))
    tiled = Predictor(trained_ckpt, device="cpu", precision="fp32", tile=512, overlap=128, batch_size=2)
    whole = Predictor(trained_ckpt, device="cpu", precision="fp32", tile=4096, overlap=128)
    prob_tiled = tiled.probabilities(image)
    prob_whole = whole.probabilities(image)
    labels_tiled, labels_whole = tiled.labels(prob_tiled), whole.labels(prob_whole)
    assert np.abs(prob_tiled - prob_whole).mean() < 0.02
    # stitching: along every seam (the middle of an overlap) the probabilities are the whole
    # frame's, to the network's own sensitivity to context (which moves a few pixels anywhere
    # by up to 0.3 here); a tile placed 1 px off gives a 99.9th percentile of 0.95 on its seam
    band = np.zeros(image.shape, bool)
    cut, crossing = [], 0
    for axis, length in ((1, 3000), (0, 2000)):
        for start in tile_starts(length, 512, 128)[1:]:
            seam = start + 64
            if axis:
                band[:, seam - 3 : seam + 3] = True
            else:
                band[seam - 3 : seam + 3] = True
            cut += cells_cut_by_seam(labels_tiled, labels_whole, seam, axis)
            crossing += len(crossing_cells(labels_whole, seam, axis))
    seams = np.abs(prob_tiled - prob_whole).max(0)[band]
    assert seams.mean() < 0.005 and np.percentile(seams, 99.9) < 0.15
    # a cell crossing a seam keeps one label: the watershed may still split a lobed object in
    # one map and not the other where the probabilities differ by 0.02, at a seam as anywhere
    assert len(cut) <= 0.02 * crossing, cut
    assert crossing >= 20  # the check saw cells on the seams (an empty tiled prediction fails it)
    assert metrics.instance_metrics(labels_whole, labels_tiled)["ap50"] > 0.95


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_half_precisions_run_in_their_dtype_and_agree_with_fp32(trained_ckpt, frame_and_truth, precision):
    image, _ = frame_and_truth
    half = Predictor(trained_ckpt, device="cpu", precision=precision)
    assert half.autocast == {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    fp32 = Predictor(trained_ckpt, device="cpu", precision="fp32")
    prob_half, prob_fp32 = half.probabilities(image), fp32.probabilities(image)
    assert prob_half.dtype == np.float32 and np.abs(prob_half - prob_fp32).mean() < 0.01
    assert metrics.instance_metrics(fp32.labels(prob_fp32), half.labels(prob_half))["seg"] > 0.9


def test_unknown_precision_is_refused(trained_ckpt):
    with pytest.raises(CellsegError, match="precision='fp8'; use auto, fp32, bf16 or fp16"):
        Predictor(trained_ckpt, device="cpu", precision="fp8")


def touching_pair_probabilities(labels: np.ndarray) -> np.ndarray:
    """Probabilities of a network that found the cells but missed their shared edges."""
    cells = (labels > 0).astype(np.float32)
    return np.stack([cells, np.zeros_like(cells)])


def test_watershed_splits_touching_pairs_that_threshold_merges():
    _, truth = synthetic_frame(np.random.default_rng(3), 512, touching=0.8)
    prob = touching_pair_probabilities(truth)
    merged = probabilities_to_labels(prob, 0.5, "threshold", min_size=15)
    split = probabilities_to_labels(prob, 0.5, "watershed", min_size=15)
    plain, separated = metrics.instance_metrics(truth, merged), metrics.instance_metrics(truth, split)
    assert merged.max() < 0.8 * truth.max()  # touching pairs merged
    assert separated["ap50"] > plain["ap50"] + 0.2, (plain, separated)
    assert split.max() >= 0.7 * truth.max() and split.max() <= truth.max() + 2


def test_watershed_keeps_a_cell_with_a_dim_band_whole():
    yy, xx = np.mgrid[:80, :80]
    cell = (yy - 40) ** 2 + (xx - 40) ** 2 < 30**2
    interior = cell.astype(np.float32)
    interior[38:42, :] = 0.1  # a dim band through the nucleus, with no edge evidence
    prob = np.stack([interior, np.zeros_like(interior)])
    assert probabilities_to_labels(prob, 0.5, "threshold").max() == 2
    assert probabilities_to_labels(prob, 0.5, "watershed").max() == 1


# -- bad input: one clear line, the rest of the run goes on ------------------------------


def test_one_bad_file_in_a_folder_is_skipped(trained_ckpt, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "good.tif", synthetic_frame(np.random.default_rng(0), 128)[0])
    (tmp_path / "in" / "broken.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(CellsegError, match="1 of 2 inputs failed"):
        predict_run(trained_ckpt, tmp_path / "in", tmp_path / "out")
    assert "broken.tif" in capsys.readouterr().err
    assert (tmp_path / "out" / "good_labels.tif").is_file()
    assert not (tmp_path / "out" / "broken_labels.tif").exists()


def test_existing_outputs_are_kept_unless_overwrite(trained_ckpt, tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", synthetic_frame(np.random.default_rng(0), 128)[0])
    predict_run(trained_ckpt, tmp_path / "a.tif", tmp_path / "out")
    before = (tmp_path / "out" / "a_labels.tif").read_bytes()
    with pytest.raises(CellsegError, match="exists already"):
        predict_run(trained_ckpt, tmp_path / "a.tif", tmp_path / "out")
    assert (tmp_path / "out" / "a_labels.tif").read_bytes() == before
    predict_run(trained_ckpt, tmp_path / "a.tif", tmp_path / "out", "overwrite=true")


@pytest.mark.parametrize("name", ["report.html", "run.json", "metrics.json", "roc.png"])
def test_a_run_file_of_the_user_is_kept_without_overwrite(trained_ckpt, tmp_path, name):
    """Not only measurements.csv: every file of the whole run is checked before anything is written."""
    tifffile.imwrite(tmp_path / "a.tif", synthetic_frame(np.random.default_rng(0), 128)[0])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / name).write_text("mine")
    with pytest.raises(CellsegError, match=f"{name}: exists already"):
        predict_run(trained_ckpt, tmp_path / "a.tif", tmp_path / "out")
    assert (tmp_path / "out" / name).read_text() == "mine"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [name]


def test_default_output_is_a_new_folder_beside_the_input(trained_ckpt, tmp_path):
    from cellseg.inference.predict_task import predict

    tifffile.imwrite(tmp_path / "a.tif", synthetic_frame(np.random.default_rng(0), 128)[0])
    predict(compose_cfg([f"ckpt={trained_ckpt}", f"input={tmp_path / 'a.tif'}"], config_name="predict"))
    assert (tmp_path / "cellseg_out" / "a_labels.tif").is_file()


def test_frames_are_counted_from_headers(tmp_path):
    tifffile.imwrite(tmp_path / "movie.tif", np.zeros((5, 32, 32), np.uint16))
    tifffile.imwrite(tmp_path / "one.tif", np.zeros((1, 32, 32), np.uint8))
    np.save(tmp_path / "stack.npy", np.zeros((3, 32, 32), np.float32))
    sources = {s.name: s for s in plan_sources(str(tmp_path), "auto", None)}
    assert {name: s.n_frames for name, s in sources.items()} == {"movie": 5, "one": 1, "stack": 3}


@pytest.mark.parametrize(
    ("setting", "min_frames", "expected"),
    [(True, 10**6, True), (False, 1, False), ("auto", 3, True), ("auto", 4, False)],
)
def test_compile_setting(tmp_path, setting, min_frames, expected):
    from cellseg.inference.predict_task import _should_compile

    tifffile.imwrite(tmp_path / "movie.tif", np.zeros((3, 32, 32), np.uint16), photometric="minisblack")
    assert _should_compile(setting, min_frames, plan_sources(str(tmp_path / "movie.tif"), "auto", None)) is expected


def test_compile_setting_must_be_known(tmp_path):
    from cellseg.inference.predict_task import _should_compile

    with pytest.raises(CellsegError, match="use auto, true or false"):
        _should_compile("fast", 1, [])


@pytest.mark.slow
def test_auto_compile_on_a_long_enough_run_segments_like_eager(trained_ckpt, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    stack = np.stack([synthetic_frame(np.random.default_rng(i), 128)[0] for i in range(3)])
    tifffile.imwrite(tmp_path / "movie.tif", stack, photometric="minisblack")
    common = ["precision=fp32", "save_prob=false", "save_overlay=false"]
    predict_run(trained_ckpt, tmp_path / "movie.tif", tmp_path / "eager", "compile=false", *common)
    predict_run(trained_ckpt, tmp_path / "movie.tif", tmp_path / "compiled", "compile_min_frames=3", *common)
    assert "3 frames: compiling the encoder" in caplog.text and "torch.compile failed" not in caplog.text
    eager = tifffile.imread(tmp_path / "eager" / "movie_labels.tif")
    compiled = tifffile.imread(tmp_path / "compiled" / "movie_labels.tif")
    assert eager.max() > 0
    for a, b in zip(eager, compiled):
        assert metrics.instance_metrics(a, b)["seg"] > 0.99


def test_compiled_encoder_is_used(trained_ckpt):
    predictor = Predictor(trained_ckpt, device="cpu", compile_encoder=True)
    assert isinstance(predictor.net.encoder, CompiledEncoder)
    assert not isinstance(Predictor(trained_ckpt, device="cpu").net.encoder, CompiledEncoder)


def rgb_file(path):
    tifffile.imwrite(path, np.zeros((64, 64, 3), np.uint8) + 5)


def empty_file(path):
    np.save(path, np.zeros((0, 0), np.uint8))


def constant_file(path):
    tifffile.imwrite(path, np.full((64, 64), 9, np.uint16))


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("rgb.tif", rgb_file, "3 channels"),
        ("empty.npy", empty_file, "empty"),
        ("flat.tif", constant_file, "constant"),
        ("corrupt.tif", lambda p: p.write_bytes(b"\x00" * 50), "cannot be read"),
    ],
)
def test_bad_images(trained_ckpt, tmp_path, name, make, message):
    make(tmp_path / name)
    with pytest.raises(CellsegError) as error:
        predict_run(trained_ckpt, tmp_path / name, tmp_path / "out")
    assert message in str(error.value) and name in str(error.value)
    assert not (tmp_path / "out").exists()  # the one input failed: nothing was written


@pytest.mark.parametrize(
    ("spec", "message"),
    [("missing.tif", "input not found"), ("emptydir", "no supported images"), ("*.nothing", "match this pattern")],
)
def test_bad_input_paths(trained_ckpt, tmp_path, spec, message):
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(CellsegError, match=message):
        predict_run(trained_ckpt, tmp_path / spec, tmp_path / "out")


def test_bad_checkpoints(tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", synthetic_frame(np.random.default_rng(0), 64)[0])
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    torch.save({"state_dict": {}, "epoch": 1}, tmp_path / "other.ckpt")
    torch.save({"model": torch.nn.Linear(2, 2)}, tmp_path / "pickled.ckpt")
    cases = {
        "missing.ckpt": "checkpoint not found",
        "junk.ckpt": "corrupt or truncated",
        "other.ckpt": "not a cellseg model checkpoint",
        "pickled.ckpt": "refused",
    }
    for name, message in cases.items():
        with pytest.raises(CellsegError, match=message):
            predict_run(tmp_path / name, tmp_path / "a.tif", tmp_path / "out")


def _three_channels(checkpoint):
    """A net taking 3 channels, with first-layer weights to match."""
    checkpoint["hyper_parameters"]["net"]["in_channels"] = 3
    key = "net.encoder.stages.stem.0.conv.weight"
    checkpoint["state_dict"][key] = checkpoint["state_dict"][key].repeat(1, 3, 1, 1)


def _nan_weights(checkpoint):
    key = next(k for k in checkpoint["state_dict"] if k.startswith("net.") and k.endswith("weight"))
    checkpoint["state_dict"][key][0] = float("nan")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c.update(hyper_parameters="net data postprocess"), "not a cellseg model checkpoint"),
        (lambda c: c.update(state_dict=[1, 2]), "not a cellseg model checkpoint"),
        (lambda c: c["hyper_parameters"].update(data="xx"), "data.norm is not exactly two numbers"),
        (lambda c: c["state_dict"].update(roc_curve=[1.0, 2.0]), "not named tensors"),
        (lambda c: c["state_dict"].update(roc_curve=torch.zeros(3)), r"ROC curve is torch.float32 of shape \(3,\)"),
        (lambda c: c["state_dict"].update(roc_curve=torch.zeros(2, 9, dtype=torch.bfloat16)), "ROC curve is torch.bf"),
        (_three_channels, "net.in_channels=3, but cellseg feeds its networks one channel"),
        (lambda c: c["state_dict"].update(threshold=torch.tensor(float("nan"))), "threshold is nan"),
        (lambda c: c["state_dict"].update(threshold=torch.tensor(-1.0)), "threshold=-1.0 is out of range"),
        (_nan_weights, "NaN or infinite"),
        (lambda c: c["hyper_parameters"]["net"].update(out_channels="abc"), "cannot be built"),
        (lambda c: c["hyper_parameters"]["net"].update(out_channels=-1), "cannot be built"),
        (lambda c: c["hyper_parameters"]["postprocess"].update(h=-3.0), "postprocess.h=-3.0 is out of range"),
        (lambda c: c["hyper_parameters"]["postprocess"].update(min_size=-5), "postprocess.min_size=-5"),
        (lambda c: c["hyper_parameters"]["postprocess"].update(expand=-2), "postprocess.expand=-2"),
        (lambda c: c["hyper_parameters"]["postprocess"].update(colour="red"), "unknown options"),
        (lambda c: c["hyper_parameters"]["data"]["norm"].update(low=float("nan")), "data.norm.low is nan"),
        (lambda c: c["hyper_parameters"]["data"]["norm"].update(low=-50, high=300), "data.norm.low=-50"),
        (lambda c: c["hyper_parameters"]["data"]["norm"].update(low=99, high=1), "is not below data.norm.high"),
        (lambda c: c["hyper_parameters"]["data"].update(edge_width=-1), "data.edge_width=-1"),
    ],
)
def test_damaged_checkpoints_are_refused_in_one_line(trained_ckpt, tmp_path, edit, message):
    checkpoint = torch.load(trained_ckpt, weights_only=True)
    edit(checkpoint)
    torch.save(checkpoint, tmp_path / "damaged.ckpt")
    with pytest.raises(CellsegError, match=message):
        Predictor(tmp_path / "damaged.ckpt", device="cpu")


def test_flipped_bytes_in_the_weights_are_caught_by_the_checksum(trained_ckpt, tmp_path):
    import struct
    import zipfile

    data = bytearray(trained_ckpt.read_bytes())
    with zipfile.ZipFile(trained_ckpt) as archive:
        record = max(archive.infolist(), key=lambda info: info.file_size)  # the largest tensor
    name_length, extra_length = struct.unpack("<HH", data[record.header_offset + 26 : record.header_offset + 30])
    start = record.header_offset + 30 + name_length + extra_length  # the record's stored bytes
    data[start + 100 : start + 4196] = bytes(b ^ 0xFF for b in data[start + 100 : start + 4196])
    (tmp_path / "flipped.ckpt").write_bytes(bytes(data))
    with pytest.raises(CellsegError, match="fails its checksum"):
        Predictor(tmp_path / "flipped.ckpt", device="cpu")


def test_edge_values_training_can_store_load(trained_ckpt, tmp_path):
    """Threshold 0 (the ROC's lowest bin, which an early validation can pick), min_size 0,
    an integer h and integer percentiles are what train.py may write."""
    checkpoint = torch.load(trained_ckpt, weights_only=True)
    checkpoint["state_dict"]["threshold"] = torch.tensor(0.0)
    checkpoint["hyper_parameters"]["postprocess"].update(min_size=0, h=2)
    checkpoint["hyper_parameters"]["data"]["norm"] = {"low": 1, "high": 99}
    torch.save(checkpoint, tmp_path / "edge.ckpt")
    assert Predictor(tmp_path / "edge.ckpt", device="cpu").threshold == 0.0


def test_a_checkpoint_saved_without_checksums_loads(trained_ckpt, tmp_path):
    checkpoint = torch.load(trained_ckpt, weights_only=True)
    torch.serialization.set_crc32_options(False)
    try:
        torch.save(checkpoint, tmp_path / "nocrc.ckpt")
    finally:
        torch.serialization.set_crc32_options(True)
    assert Predictor(tmp_path / "nocrc.ckpt", device="cpu").threshold == float(checkpoint["state_dict"]["threshold"])


def test_mismatched_checkpoint_weights(trained_ckpt, tmp_path):
    checkpoint = torch.load(trained_ckpt, weights_only=True)
    net = checkpoint["hyper_parameters"]["net"]
    other = {"GoogLeNetSkip": "googlenet_fcn.GoogLeNetFCN", "GoogLeNetFCN": "googlenet_skip.GoogLeNetSkip"}
    net["_target_"] = "cellseg.models.nets." + other[net["_target_"].rsplit(".", 1)[-1]]
    for option in ("widths", "full_res"):  # googlenet_skip's own options
        net.pop(option, None)
    torch.save(checkpoint, tmp_path / "mismatch.ckpt")
    with pytest.raises(
        CellsegError, match=r"weights do not fit cellseg\.models\.nets\.\S+: \d+ (tensor\(s\) missing|unexpected) \("
    ):
        Predictor(tmp_path / "mismatch.ckpt")


def test_weights_of_another_shape_are_named_with_both_shapes(trained_ckpt, tmp_path):
    checkpoint = torch.load(trained_ckpt, weights_only=True)
    key = next(
        k for k, v in checkpoint["state_dict"].items() if k.startswith("net.") and v.ndim == 4 and v.shape[1] > 1
    )
    checkpoint["state_dict"][key] = checkpoint["state_dict"][key][:, :1].clone()
    torch.save(checkpoint, tmp_path / "reshaped.ckpt")
    wanted = tuple(torch.load(trained_ckpt, weights_only=True)["state_dict"][key].shape)
    message = (
        f"1 of another shape ({key.removeprefix('net.')} is {(wanted[0], 1, *wanted[2:])}, the network wants {wanted})"
    )
    with pytest.raises(CellsegError, match=re.escape(message)):
        Predictor(tmp_path / "reshaped.ckpt")


def test_output_into_the_input_folder_is_refused(trained_ckpt, tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", synthetic_frame(np.random.default_rng(0), 64)[0])
    with pytest.raises(CellsegError, match="is the input folder"):
        predict_run(trained_ckpt, tmp_path, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tif"]


def test_an_output_that_is_a_file_is_named_as_one(trained_ckpt, tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", synthetic_frame(np.random.default_rng(0), 64)[0])
    (tmp_path / "out").write_text("not a folder")
    with pytest.raises(CellsegError, match=r"out: is a file, not a folder; set output=DIR"):
        predict_run(trained_ckpt, tmp_path / "a.tif", tmp_path / "out")
    assert (tmp_path / "out").read_text() == "not a folder"


def test_unwritable_output(trained_ckpt, tmp_path):
    tifffile.imwrite(tmp_path / "a.tif", synthetic_frame(np.random.default_rng(0), 64)[0])
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(CellsegError, match="cannot be written"):
        predict_run(trained_ckpt, tmp_path / "a.tif", tmp_path / "file" / "out")


def test_cli_error_is_one_line_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "predict.py", f"ckpt={tmp_path / 'none.ckpt'}", f"input={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("cellseg: error:")
    assert "Traceback" not in result.stderr
