"""What ``input=`` means (axes, movies, names) and the start-up checks of every option."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tifffile

from cellseg.errors import CellsegError
from cellseg.inference.inputs import BadFrame, decide_axes, header, is_movie_folder, plan_sources, unique_names
from cellseg.inference.options import check_options
from cellseg.utils.task import check_arguments

from .conftest import ROOT, compose_cfg


def sources_of(path, track="auto", channel=None):
    return plan_sources(str(path), track, channel)


@pytest.mark.parametrize(
    ("shape", "axes", "expected"),
    [
        ((64, 48), None, ("YX", 1)),
        ((5, 64, 48), None, ("TYX", 5)),
        ((1, 64, 48, 1), None, ("YX", 1)),
        ((7, 64, 48, 3), None, ("TYXC", 7)),
        ((3, 64, 48), "TYX", ("TYX", 3)),
        ((3, 1, 64, 48), "TCYX", ("TYX", 3)),
    ],
)
def test_axes_from_metadata_or_shape_rules(tmp_path, shape, axes, expected):
    channel = 0 if "C" in expected[0] else None
    assert decide_axes(shape, axes, tmp_path / "x.tif", channel) == expected


@pytest.mark.parametrize(
    ("shape", "axes", "message"),
    [
        ((64, 48, 2), None, "2 channels"),
        ((2, 64, 48), "CYX", "pass channel=K"),
        ((4, 64, 48), "ZYX", "Z-stack"),
        ((3, 2, 64, 48), "TZYX", "Z-stack"),
        ((2, 3, 4, 5, 6), None, "cannot tell the axes"),
        ((1, 1), None, r"shape \(1, 1\) is not an image \(y and x need 2 px or more\)"),
        ((1, 300), None, r"shape \(1, 300\) is not an image"),
        ((5, 1, 1), "TYX", r"shape \(5, 1, 1\) is not an image"),
    ],
)
def test_ambiguous_or_unsupported_axes_are_refused(tmp_path, shape, axes, message):
    with pytest.raises(CellsegError, match=message):
        decide_axes(shape, axes, tmp_path / "x.tif", None)


def test_a_channel_above_0_of_a_one_channel_image_is_refused(tmp_path):
    assert decide_axes((64, 48), None, tmp_path / "x.tif", 0) == ("YX", 1)
    with pytest.raises(CellsegError, match="x.tif: channel=1 but the image has one channel"):
        decide_axes((64, 48), None, tmp_path / "x.tif", 1)


def test_two_channel_image_is_not_read_as_a_movie(tmp_path):
    """tifffile stores (Y, X, 2) as 64 pages without axis names: the shape rule applies."""
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((64, 48, 2), np.uint16))
    (source,) = sources_of(tmp_path / "two.tif")
    assert source.error and "2 channels" in source.error
    (chosen,) = sources_of(tmp_path / "two.tif", channel=1)
    assert chosen.n_frames == 1 and chosen.error is None


def test_channel_selection_reads_that_channel(tmp_path):
    image = np.stack([np.full((32, 32), 1, np.uint16), np.full((32, 32), 7, np.uint16)], axis=-1)
    np.save(tmp_path / "two.npy", image)
    (source,) = sources_of(tmp_path / "two.npy", channel=1)
    ((_, frame),) = list(source.frames())
    assert frame.shape == (32, 32) and np.all(frame == 7)


def test_ome_and_imagej_axes_are_read(tmp_path):
    tifffile.imwrite(tmp_path / "z.tif", np.zeros((3, 2, 32, 32), np.uint16), imagej=True, metadata={"axes": "TZYX"})
    tifffile.imwrite(tmp_path / "t.ome.tif", np.zeros((4, 32, 32), np.uint16), ome=True, metadata={"axes": "TYX"})
    assert header(tmp_path / "z.tif")[1] == "TZYX"
    (z, t) = sorted(sources_of(tmp_path), key=lambda s: s.name)[::-1]
    assert "Z-stack" in z.error
    assert t.n_frames == 4 and t.error is None


def test_movie_folder_frames_are_ordered_by_number(tmp_path):
    for t in (0, 1, 2, 9, 10, 3, 4, 5, 6, 7, 8):
        tifffile.imwrite(tmp_path / f"t{t}.tif", np.full((16, 16), t, np.uint16))
    (movie,) = sources_of(tmp_path)
    assert movie.n_frames == 11
    assert [int(frame[0, 0]) for _, frame in movie.frames()] == list(range(11))


def test_frames_written_one_page_at_a_time_are_a_stack(tmp_path):
    """``TiffWriter.write`` once per frame stores one-page series; the first is not the movie."""
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tif:
        for t in range(5):
            tif.write(np.full((16, 16), t, np.uint16))
    (stack,) = sources_of(tmp_path / "pages.tif")
    assert (stack.n_frames, stack.axes) == (5, "TYX")
    assert [int(frame[0, 0]) for _, frame in stack.frames()] == list(range(5))


def test_a_four_frame_uint8_stack_stored_as_one_page_is_four_frames(tmp_path):
    """tifffile stores a (4, Y, X) uint8 stack as one page of 4 samples even with axes TYX."""
    tifffile.imwrite(
        tmp_path / "four.tif",
        np.arange(4, dtype=np.uint8)[:, None, None] * np.ones((4, 16, 16), np.uint8),
        metadata={"axes": "TYX"},
    )
    with tifffile.TiffFile(tmp_path / "four.tif") as tif:
        assert len(tif.series[0].pages) == 1  # the layout this test is about
    (stack,) = sources_of(tmp_path / "four.tif")
    assert (stack.n_frames, stack.axes) == (4, "TYX")
    assert [(frame.shape, int(frame[0, 0])) for _, frame in stack.frames()] == [((16, 16), t) for t in range(4)]


@pytest.mark.parametrize("dtype", [bool, np.complex64])
def test_stacks_of_non_intensity_dtypes_are_refused_by_name(tmp_path, dtype):
    tifffile.imwrite(tmp_path / "odd.tif", np.ones((3, 16, 16), dtype))
    (source,) = sources_of(tmp_path / "odd.tif")
    assert (
        source.error
        == f"{tmp_path / 'odd.tif'}: unsupported dtype {np.dtype(dtype)}; save it as an integer or float image"
    )


def test_a_damaged_first_frame_is_a_bad_frame_of_the_movie(tmp_path):
    for t in range(4):
        tifffile.imwrite(tmp_path / f"t{t:03d}.tif", np.full((16, 16), t, np.uint16))
    (tmp_path / "t000.tif").write_bytes(b"not a tiff")
    (movie,) = sources_of(tmp_path)
    frames = list(movie.frames())
    assert (
        movie.n_frames == 4 and isinstance(frames[0][1], BadFrame) and "t000.tif: cannot be read" in str(frames[0][1])
    )
    assert [int(frame[0, 0]) for _, frame in frames[1:]] == [1, 2, 3]
    tifffile.imwrite(tmp_path / "t000.tif", np.zeros((16, 16, 3), np.uint8))  # colour, without channel=
    assert isinstance(next(sources_of(tmp_path)[0].frames())[1], BadFrame)
    for t in range(1, 4):
        (tmp_path / f"t{t:03d}.tif").write_bytes(b"")
    with pytest.raises(CellsegError, match="t000.tif: 3 channels"):  # no good frame: the first problem
        sources_of(tmp_path)


def test_corrected_masks_beside_their_frames_are_not_inputs(tmp_path):
    """A movie folder with a corrected ``t002_masks.tif`` (the napari plugin's) stays a movie."""
    for t in range(4):
        tifffile.imwrite(tmp_path / f"t{t:03d}.tif", np.full((16, 16), t, np.uint16))
    tifffile.imwrite(tmp_path / "t002_masks.tif", np.ones((16, 16), np.uint16))
    (movie,) = sources_of(tmp_path)
    assert movie.n_frames == 4 and all(not p.stem.endswith("_masks") for p in movie.paths)
    assert len(sources_of(tmp_path / "t*.tif")) == 4  # a glob leaves them out too


def test_folder_of_unrelated_images_is_left_alone(tmp_path):
    for name in ("02_t001", "02_t052", "02_t055"):  # numbered, but not consecutive frames
        tifffile.imwrite(tmp_path / f"{name}.tif", np.zeros((16, 16), np.uint16))
    assert not is_movie_folder(sorted(tmp_path.iterdir()))
    assert [s.n_frames for s in sources_of(tmp_path)] == [1, 1, 1]
    assert [s.n_frames for s in sources_of(tmp_path, track=True)] == [3]
    for t in range(3):
        tifffile.imwrite(tmp_path / f"t{t:03d}.tif", np.zeros((16, 16), np.uint16))
    assert len(sources_of(tmp_path / "t*.tif")) == 3  # a glob is never one movie


def test_consecutive_frames_with_track_false_are_separate_images(tmp_path):
    for t in range(3):
        tifffile.imwrite(tmp_path / f"t{t:03d}.tif", np.zeros((16, 16), np.uint16))
    assert [s.n_frames for s in sources_of(tmp_path)] == [3]
    assert [s.name for s in sources_of(tmp_path, track=False)] == ["t000", "t001", "t002"]


def test_same_stems_get_distinct_output_names(tmp_path):
    paths = [tmp_path / "a" / "pos1.tif", tmp_path / "b" / "pos1.tif", tmp_path / "x.tif", tmp_path / "x.png"]
    names = unique_names(paths)
    assert names == ["a_pos1", "b_pos1", "x_tif", "x_png"]
    assert unique_names([tmp_path / "solo.tif"]) == ["solo"]


def test_tilde_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    tifffile.imwrite(tmp_path / "frame.tif", np.zeros((16, 16), np.uint16))
    (source,) = sources_of("~/frame.tif")
    assert source.paths[0] == tmp_path / "frame.tif"


def predict_cfg(*overrides):
    return compose_cfg(["ckpt=m.ckpt", "input=x.tif", *overrides], config_name="predict")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+thresold=0.3", r"unknown option thresold \(did you mean threshold\?\)"),
        ("+norm.lo=1", r"unknown option norm.lo \(did you mean norm.low\?\); `python predict.py --cfg job` lists them"),
        ("overlap=-5", "overlap=-5: out of range"),
        ("overlap=1024", "overlap=1024: out of range"),
        ("threshold=2", "threshold=2: out of range"),
        ("threshold=0", "threshold=0: out of range"),
        ("tile=100", "multiple of 32"),
        ("batch_size=0", "batch_size=0"),
        ("overlay_every=0", r"overlay_every=0: out of range; use an integer in \[1, 2147483648\]"),
        ("min_size=-1", "min_size=-1"),
        ("min_size=big", "min_size='big'"),
        ("h=0", "h=0"),
        ("min_prob=1.5", "min_prob=1.5: out of range"),
        ("postprocess=threshold postprocess.min_prob=-0.1", "postprocess.min_prob=-0.1"),
        ("norm.low=50 norm.high=40", "must be below norm.high"),
        ("norm.high=101", "norm.high=101"),
        ("device=gpu", "use one of auto, cpu, cuda"),
        ("track=sometimes", "track='sometimes'"),
        ("tta=maybe", "tta='maybe'"),
        ("postprocess=watershed postprocess.h=-1", "postprocess.h=-1"),
        ("tracker.max_distance=-3", "max_distance"),
        ("tracker.max_distance=nan", "tracker.max_distance=nan: out of range"),
        ("tracker.max_distance=null", "tracker.max_distance=None: must be a number"),
        ("tracker.gap_closing=null", "tracker.gap_closing=None: must be an integer"),
        ("tracker.min_overlap=nan", "tracker.min_overlap=nan: out of range"),
        ("tracker.divisions=maybe", "tracker.divisions='maybe'; use true or false"),
        ("track=0", "track=0; use one of true, false, auto"),
        ("track=1", "track=1; use one of true, false, auto"),
        ("threshold=nan", "threshold=nan: out of range"),
    ],
)
def test_bad_options_are_refused_at_start_up(override, message):
    cfg = predict_cfg(*override.split())
    with pytest.raises(CellsegError, match=message):
        check_options(cfg)


@pytest.mark.parametrize(
    ("overrides", "missing"),
    [(["input=x.tif"], "ckpt"), (["ckpt=m.ckpt"], "input"), (["ckpt=null", "input=x.tif"], "ckpt")],
)
def test_ckpt_and_input_are_required(overrides, missing):
    cfg = compose_cfg(overrides, config_name="predict")
    with pytest.raises(CellsegError, match=f"^{missing}= is required: python predict.py ckpt=PATH input=PATH"):
        check_options(cfg)


def test_good_options_pass():
    check_options(predict_cfg("threshold=0.4", "min_size=auto", "postprocess=watershed", "postprocess.h=3"))
    check_options(predict_cfg("tracker=none", "track=true"))  # no tracker options to check


def test_postprocess_options_given_at_prediction_are_used():
    from cellseg.inference.predict_task import postprocess_overrides

    cfg = predict_cfg("postprocess=watershed", "postprocess.min_size=300", "postprocess.h=3")
    assert postprocess_overrides(cfg) == {"method": "watershed", "min_size": 300, "min_prob": 0.5, "h": 3}
    assert postprocess_overrides(predict_cfg("postprocess=watershed", "h=4"))["h"] == 4
    assert "min_size" not in postprocess_overrides(predict_cfg("min_size=auto"))  # the checkpoint's
    assert postprocess_overrides(predict_cfg("min_prob=0"))["min_prob"] == 0


@pytest.mark.parametrize("value", ["my file.tif", "données.tif"])
def test_unquoted_paths_get_one_line_on_how_to_quote(value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        check_arguments([f"input={value}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"input=\"'{value}'\"" in err


@pytest.mark.parametrize(
    ("value", "quoted"),
    [("in/it's.tif", 'input="\\"in/it\'s.tif\\""'), ("in/pos,1.tif", "input=\"'in/pos,1.tif'\"")],
)
def test_paths_with_hydra_syntax_get_one_line_on_how_to_quote(value, quoted, capsys):
    with pytest.raises(SystemExit) as exit_info:
        check_arguments([f"input={value}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and quoted in err, err


@pytest.mark.parametrize(
    ("config", "argv", "message"),
    [
        ("predict", ["ckpt=a", "input=b", "thresold=0.3"], "unknown option thresold (did you mean threshold?)"),
        (
            "predict",
            ["ckpt=a", "input=b", "postprocess=foo"],
            "postprocess=foo: no such postprocess config; use one of hysteresis, threshold, watershed",
        ),  # fmt: skip
        ("train", ["hardware=nonexistent"], "hardware=nonexistent: no such hardware config; use one of auto, cpu"),
        ("train", ["trainer.max_stepz=5"], "unknown option trainer.max_stepz (did you mean trainer.max_steps?)"),
        ("train", ["+experiment=nope"], "experiment=nope: no such experiment config; use one of bacteria_edge"),
        ("train", ["-m", "nope=1"], "unknown option nope;"),  # a sweep's jobs are composed first
        ("train", ["-m", "+sweep=nope"], "sweep=nope: no such sweep config; use one of mes_edge_weight"),
        ("train", ["-m", "seed=1,2", "model=googlenet_fcn,nope"], "model=nope: no such model config"),
        ("train", ["+sweep=mes_edge_weight", "hardware=nope"], "hardware=nope: no such hardware config"),
        ("train", ["seed=1,2"], "seed=1,2 is a sweep: add -m to run one job for each value; for one value write"),
        ("train", ["model=glob(*)"], "model=glob(*) is a sweep: add -m to run one job for each value"),
        (
            "predict",
            ["ckpt=a", "input=b", "postprocess.h=3"],
            "postprocess.h=3: no postprocess is chosen to set it on; choose one first: "
            "postprocess=hysteresis|threshold|watershed postprocess.h=3",
        ),
    ],
)
def test_options_hydra_cannot_compose_are_one_line(config, argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        check_arguments(argv, config)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


@pytest.mark.parametrize(
    "argv",
    [
        ["+experiment=mes_edge_weight", "seed=3", "data.test_sequence=null", "hydra.run.dir=/tmp/x"],
        ["-m", "seed=1,2"],
        ["--cfg", "job"],
        ["+sweep=mes_edge_weight", "seed=1,2"],  # the sweep config sets hydra.mode itself
        ["hydra.mode=MULTIRUN", "seed=1,2"],
        ["-m", "data.root=/a,/b"],  # a sweep over paths
        ["hydra.searchpath=[file:///nowhere]", "+experiment=mine"],  # left to Hydra
        ["+hparams_search=mes_optuna", "trainer.max_steps=1"],
        ["-m", "seed=range(1,3)", "model=glob(*)", "loss.edge_weight=interval(1,2)", "hydra.sweep.dir=/tmp/x"],
    ],
)
def test_commands_hydra_accepts_pass_the_check(argv):
    check_arguments(argv, "train")  # no exit


@pytest.mark.parametrize(("key", "below"), [("hydra.run.dir", ""), ("hydra.sweep.dir", "/sub")])
def test_run_and_sweep_folders_under_a_file_are_one_line(tmp_path, key, below, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("kept")
    argv = [f"{key}={afile}{below}", *(["-m", "seed=1,2"] if "sweep" in key else [])]
    with pytest.raises(SystemExit) as exit_info:
        check_arguments(argv, "train")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{afile} is a file; give a folder path" in err, err
    assert afile.read_text() == "kept"
    check_arguments([f"{key}={tmp_path / 'new' / 'run'}"], "train")  # a new folder passes


def test_quoted_paths_pass_and_reach_the_file(tmp_path):
    check_arguments([f"input='{tmp_path / 'my file é.tif'}'"])  # no exit
    folder = tmp_path / "my data é"
    folder.mkdir()
    result = subprocess.run(
        [sys.executable, "predict.py", f"ckpt={tmp_path / 'none.ckpt'}", f"input='{folder}'"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert "my data é" in result.stderr and "Traceback" not in result.stderr
