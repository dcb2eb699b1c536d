"""The napari plugin on real prediction outputs, headless (Qt's offscreen platform).

The plugin is registered from its manifest file in a plugin manager that discovers nothing
(npe2's ``npe2pm`` fixture), so the tests need no installed cellseg. The widget runs on a
canvas-less ``ViewerModel`` (pytest-qt's ``qtbot``), which needs no OpenGL; one test opens a
full napari window (``make_napari_viewer``) where Qt can make an OpenGL context.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellseg import review
from cellseg.data.layouts import find_frames
from cellseg.data.synthetic import synthetic_frame
from cellseg.data.synthetic_movie import generate_movie
from cellseg.errors import CellsegError
from cellseg.napari import MANIFEST
from cellseg.review import cells_to_review

from .conftest import ROOT, compose_cfg

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists
napari = pytest.importorskip("napari")
npe2 = pytest.importorskip("npe2")
pytest.importorskip("pytestqt")

from cellseg.napari.reader import get_reader, read_output_folder  # noqa: E402
from cellseg.napari.writer import MasksExist, save_corrections  # noqa: E402


def predict_run(ckpt: Path, input_path: Path, *extra: str) -> None:
    """``predict.py ckpt=... input=...`` in this process (its Hydra run folder beside the input)."""
    from cellseg.inference.predict_task import predict

    overrides = [f"ckpt={ckpt}", f"input={input_path}", "save_overlay=false", "save_rois=false", *extra]
    predict(compose_cfg(overrides, input_path.parent.parent / "hydra", config_name="predict"))


def copy_output(out: Path, to: Path) -> Path:
    """A copy of an output folder without its run.json: what an older cellseg wrote."""
    shutil.copytree(out, to, ignore=shutil.ignore_patterns("run.json"))
    return to


@pytest.fixture(scope="module")
def single(trained_ckpt, tmp_path_factory) -> SimpleNamespace:
    """One predicted image, its outputs in a folder away from it (only run.json leads back)."""
    root = tmp_path_factory.mktemp("napari_single")
    image = root / "images" / "cells.tif"
    image.parent.mkdir()
    tifffile.imwrite(image, synthetic_frame(np.random.default_rng(5), 256)[0])
    predict_run(trained_ckpt, image, f"output={root / 'results'}")
    return SimpleNamespace(image=image, out=root / "results")


@pytest.fixture(scope="module")
def movie(trained_ckpt, tmp_path_factory) -> SimpleNamespace:
    """A predicted movie folder of six frames, outputs in the default ``01/cellseg_out``."""
    folder = tmp_path_factory.mktemp("napari_movie") / "01"
    folder.mkdir()
    frames, _, _ = generate_movie(n_frames=6, shape=(160, 160), seed=4, divide_at=3)
    for t, frame in enumerate(frames):
        tifffile.imwrite(folder / f"t{t:03d}.tif", frame)
    predict_run(trained_ckpt, folder)
    return SimpleNamespace(folder=folder, frames=frames, out=folder / "cellseg_out")


def movie_copy(movie: SimpleNamespace, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the predicted movie folder and its outputs, to save corrections into."""
    folder = tmp_path / "01"
    folder.mkdir()
    for frame in movie.folder.glob("t*.tif"):
        shutil.copy(frame, folder / frame.name)
    return folder, copy_output(movie.out, folder / "cellseg_out")


def layers_of(path: Path) -> list:
    """The reader's layer data tuples made into napari layers."""
    reader = get_reader(str(path))
    assert reader is not None
    return [napari.layers.Layer.create(*layer) for layer in reader(str(path))]


def rows_of(out: Path, stem: str) -> pd.DataFrame:
    table = pd.read_csv(out / "measurements.csv", dtype={"image": str})
    return table[table["image"] == stem].reset_index(drop=True)


def kinds(layers: list) -> list[str]:
    return [type(layer).__name__ for layer in layers]


def test_reader_opens_a_single_image_through_run_json(single):
    layers = layers_of(single.out)
    assert kinds(layers) == ["Image", "Image", "Labels"]
    image, prob, labels = layers
    assert np.array_equal(image.data, tifffile.imread(single.image))
    assert not prob.visible and np.allclose(prob.data, tifffile.imread(single.out / "cells_prob.tif"))
    assert np.array_equal(labels.data, tifffile.imread(single.out / "cells_labels.tif"))
    rows = rows_of(single.out, "cells")
    assert len(rows) == len(np.unique(labels.data)) - 1 > 3
    features = labels.features
    assert list(features["index"]) == list(rows["label"])  # one row per label value
    pd.testing.assert_frame_equal(features.drop(columns="index"), rows, check_dtype=False)
    recorded = json.loads((single.out / "run.json").read_text())["sources"][0]["paths"]
    assert labels.metadata["cellseg"]["image_paths"] == recorded == [str(single.image)]


def test_run_json_of_a_relative_input_leads_back_from_another_folder(trained_ckpt, tmp_path, monkeypatch):
    """``predict.py input=frames/cells.tif`` run in one folder, napari started in another that
    has a ``frames/cells.tif`` of its own: the layers and saved corrections are the first's."""
    for root, value in ((tmp_path / "experiment", 5), (tmp_path / "elsewhere", 7)):
        (root / "frames").mkdir(parents=True)
        tifffile.imwrite(root / "frames" / "cells.tif", synthetic_frame(np.random.default_rng(value), 128)[0])
    monkeypatch.chdir(tmp_path / "experiment")
    predict_run(trained_ckpt, Path("frames/cells.tif"), "output=results")
    monkeypatch.chdir(tmp_path / "elsewhere")
    image, _, labels = layers_of(tmp_path / "experiment" / "results")
    mine = tmp_path / "experiment" / "frames" / "cells.tif"
    assert np.array_equal(image.data, tifffile.imread(mine))
    assert labels.metadata["cellseg"]["image_paths"] == [str(mine)]


def test_corrections_are_not_saved_beside_an_image_that_no_longer_fits(single, tmp_path):
    """run.json's image was cropped since: the reader shows no image, and saving the labels
    there would pair them with a frame of another size, which fine-tuning refuses."""
    out = shutil.copytree(single.out, tmp_path / "out")
    cropped = tmp_path / "cells.tif"
    tifffile.imwrite(cropped, tifffile.imread(single.image)[:100])
    record = json.loads((out / "run.json").read_text())
    record["sources"][0]["paths"] = [str(cropped)]
    (out / "run.json").write_text(json.dumps(record))
    with pytest.warns(UserWarning):
        layers = layers_of(out)
    assert kinds(layers) == ["Image", "Labels"]  # the probability and the labels
    with pytest.raises(CellsegError, match="was not found \\(or did not fit them\\)"):
        save_corrections(layers[-1])
    assert not (tmp_path / "cells_masks.tif").exists()


def test_reader_without_run_json_finds_the_image_beside_the_folder(single, tmp_path):
    shutil.copy(single.image, tmp_path / "cells.tif")
    layers = layers_of(copy_output(single.out, tmp_path / "cellseg_out"))
    assert kinds(layers) == ["Image", "Image", "Labels"]
    assert np.array_equal(layers[0].data, tifffile.imread(single.image))
    assert layers[2].metadata["cellseg"]["image_paths"] == [str(tmp_path / "cells.tif")]
    # nothing beside it and no run.json: labels and probability still open, with a warning
    with pytest.warns(UserWarning, match="no image found"):
        layers = layers_of(copy_output(single.out, tmp_path / "far" / "out"))
    assert [layer.name for layer in layers] == ["cells probability", "cells labels"]
    assert layers[1].metadata["cellseg"]["image_paths"] == []


def test_reader_opens_a_tracked_movie(movie, tmp_path):
    layers = layers_of(movie.out)
    assert kinds(layers) == ["Image", "Image", "Labels", "Tracks"]
    image, prob, labels, tracks = layers
    assert np.array_equal(image.data, movie.frames)
    assert prob.data.shape == movie.frames.shape
    assert np.array_equal(labels.data, tifffile.imread(movie.out / "01_labels.tif"))
    napari_tracks = pd.read_csv(movie.out / "01_napari_tracks.csv").sort_values(["track_id", "t"])
    assert np.array_equal(tracks.data, napari_tracks.to_numpy(float))
    graph = json.loads((movie.out / "01_napari_graph.json").read_text())
    assert tracks.graph == {int(child): parents for child, parents in graph.items()}
    # features: one row per track (label = track id); the per-frame rows are in the metadata
    rows = rows_of(movie.out, "01")
    pd.testing.assert_frame_equal(labels.metadata["cellseg"]["measurements"], rows)
    features = labels.features.set_index("index")
    by_track = rows.groupby("track_id")
    assert sorted(features.index) == sorted(by_track.groups) == sorted(set(np.unique(labels.data)) - {0})
    assert features["frames"].to_dict() == by_track.size().to_dict()
    assert features["min_prob"].to_dict() == pytest.approx(by_track["mean_prob"].min().to_dict())
    # an older folder (no run.json) inside the movie folder finds the frames around it
    old = layers_of(copy_output(movie.out, movie.folder / "old_out"))
    assert kinds(old) == kinds(layers) and np.array_equal(old[0].data, movie.frames)


def test_reader_declines_what_is_not_a_cellseg_output(single, tmp_path):
    tifffile.imwrite(tmp_path / "a_labels.tif", np.zeros((8, 8), np.uint16))
    assert get_reader(str(tmp_path)) is None  # labels but no measurements.csv
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "measurements.csv").write_text("image,frame,label\n")
    assert get_reader(str(tmp_path / "labels")) is None  # a table but no labels
    assert get_reader(str(tmp_path / "a_labels.tif")) is None
    assert get_reader([str(single.out), str(tmp_path)]) is None
    assert get_reader(str(single.out / "measurements.csv")) is read_output_folder
    assert get_reader([str(single.out)]) is read_output_folder


def test_manifest_validates_and_is_the_installed_entry_point():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    manifest.validate_imports()  # every python_name imports
    contributions = manifest.contributions
    assert manifest.name == "cellseg"
    assert [r.command for r in contributions.readers] == ["cellseg.get_reader"]
    assert [w.command for w in contributions.writers] == ["cellseg.write_labels"]
    assert [w.display_name for w in contributions.widgets] == ["Cells to review"]
    for command in contributions.commands:
        module, name = command.python_name.split(":")
        assert callable(getattr(__import__(module, fromlist=[name]), name))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["napari.manifest"] == {"cellseg": "cellseg.napari:napari.yaml"}
    assert "napari.yaml" in project["tool"]["setuptools"]["package-data"]["cellseg.napari"]


def test_import_cellseg_loads_neither_napari_nor_qt():
    code = (
        "import sys, cellseg, cellseg.review, cellseg.napari.reader, cellseg.napari.writer;"
        "print(sorted(m for m in ('napari', 'qtpy', 'PyQt5', 'magicgui') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.fixture
def plugin(npe2pm):
    """A plugin manager holding only the cellseg plugin, registered from its manifest file."""
    npe2pm.register(npe2.PluginManifest.from_file(MANIFEST))
    return npe2pm


@pytest.fixture
def review_widget(plugin, qtbot):
    """A viewer without a canvas (no OpenGL here) and the manifest's "Cells to review" widget on it,
    given the viewer as napari gives it to dock widgets (a proxy that hides private attributes)."""
    from napari.utils._proxies import PublicOnlyProxy

    viewer = napari.components.ViewerModel()
    (contribution,) = plugin.get_manifest("cellseg").contributions.widgets
    widget = contribution.get_callable()(napari_viewer=PublicOnlyProxy(viewer))
    qtbot.addWidget(widget)
    return viewer, widget


def table_cells(widget, column: str) -> list[str]:
    j = review.REVIEW_COLUMNS.index(column)
    return [widget.table.item(i, j).text() for i in range(widget.table.rowCount())]


@pytest.mark.filterwarnings("error:Private attribute access")
def test_widget_lists_cells_to_review_and_goes_to_them(review_widget, movie, single, monkeypatch):
    monkeypatch.setattr(review, "UNSURE", 1.01)  # every cell counts as unsure: a long list, over all frames
    viewer, widget = review_widget
    assert widget.layer is None and widget.table.rowCount() == 0
    viewer.open(str(movie.out), plugin="cellseg")
    labels = viewer.layers["01 labels"]
    rows = rows_of(movie.out, "01")
    expected = cells_to_review(rows, 20)
    assert widget.layer is labels and len(expected) == min(20, len(rows))
    pd.testing.assert_frame_equal(widget.rows, expected)
    assert table_cells(widget, "label") == [str(v) for v in expected["label"]]
    assert table_cells(widget, "frame") == [str(v) for v in expected["frame"]]
    elsewhere = [i for i, f in enumerate(expected["frame"]) if f != viewer.dims.current_step[0]]
    assert elsewhere, "every listed cell is in the frame shown already"
    for row in (elsewhere[0], 0):
        widget.table.selectRow(row)
        frame, label = int(expected.loc[row, "frame"]), int(expected.loc[row, "label"])
        assert viewer.dims.current_step[0] == frame and labels.selected_label == label
        cell = rows[(rows["frame"] == frame) & (rows["label"] == label)].iloc[0]
        assert viewer.camera.center[-2:] == pytest.approx((cell["centroid_y"], cell["centroid_x"]))
    # another cellseg labels layer made active: the widget lists its cells instead
    viewer.open(str(single.out), plugin="cellseg")
    assert widget.layer is viewer.layers["cells labels"]
    pd.testing.assert_frame_equal(widget.rows, cells_to_review(rows_of(single.out, "cells"), 20))
    assert widget.table.rowCount() == len(widget.rows) > 0
    viewer.layers.selection.active = viewer.layers["01 tracks"]  # not a labels layer: the list stays
    assert widget.layer is viewer.layers["cells labels"]
    viewer.layers.selection.active = labels
    assert widget.layer is labels and widget.table.rowCount() == len(expected)


def test_save_corrections_writes_masks_beside_the_image_and_keeps_existing_ones(single, tmp_path):
    shutil.copy(single.image, tmp_path / "cells.tif")
    copy_output(single.out, tmp_path / "cellseg_out")
    labels = layers_of(tmp_path / "cellseg_out")[2]
    labels.data[labels.data == 1] = 0  # a false cell erased
    labels.data[5:15, 5:15] = labels.data.max() + 1  # a missed one painted
    (written,) = save_corrections(labels)
    assert written == tmp_path / "cells_masks.tif"
    saved = tifffile.imread(written)
    assert saved.dtype == np.uint16 and np.array_equal(saved, labels.data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.tif", "cells_masks.tif", "cellseg_out"]
    labels.data = labels.data.astype(np.uint32)
    labels.data[20:30, 20:30] = 70_000  # more than uint16 holds
    save_corrections(labels)  # the layer's own file: saving again goes on from it
    again = tifffile.imread(written)
    assert again.dtype == np.uint32 and np.array_equal(again, labels.data)
    tifffile.imwrite(written, saved)  # somebody else changed it since
    labels.data[40:45, 40:45] = 0
    with pytest.raises(MasksExist, match="exists already"):
        save_corrections(labels)
    assert np.array_equal(tifffile.imread(written), saved)  # untouched
    save_corrections(labels, overwrite=True)
    assert np.array_equal(tifffile.imread(written), labels.data)


def test_reopening_shows_the_saved_corrections_and_saves_on_from_them(single, movie, tmp_path):
    shutil.copy(single.image, tmp_path / "cells.tif")
    out = copy_output(single.out, tmp_path / "cellseg_out")
    labels = layers_of(out)[2]
    predicted = labels.data.copy()
    labels.data[5:15, 5:15] = labels.data.max() + 1
    (written,) = save_corrections(labels)
    reopened = layers_of(out)[2]
    assert reopened.name == "cells labels (saved corrections)"
    assert np.array_equal(reopened.data, tifffile.imread(written)) and not np.array_equal(reopened.data, predicted)
    reopened.data[5:15, 5:15] = 0  # a second session's correction, saved without "replace"
    save_corrections(reopened)
    assert np.array_equal(tifffile.imread(written), reopened.data)
    tifffile.imwrite(written, np.zeros((3, 3), np.uint16))  # a mask that no longer fits is not shown
    with pytest.warns(UserWarning, match="saved corrections .* not shown"):
        labels = layers_of(out)[2]
    assert labels.name == "cells labels" and np.array_equal(labels.data, predicted)
    with pytest.raises(MasksExist):  # nor replaced unasked
        save_corrections(labels)
    # a movie folder: the frames saved before come back, the others stay the prediction
    folder, out = movie_copy(movie, tmp_path)
    predicted = tifffile.imread(out / "01_labels.tif")
    corrected = predicted[4].copy()
    corrected[corrected == corrected.max()] = 0
    tifffile.imwrite(folder / "t004_masks.tif", corrected)
    shown = layers_of(out)[2].data
    assert np.array_equal(shown[4], corrected) and np.array_equal(np.delete(shown, 4, 0), np.delete(predicted, 4, 0))


def test_corrections_of_a_stack_file_train_on_the_corrected_frames(trained_ckpt, movie, tmp_path):
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, movie.frames, photometric="minisblack")
    predict_run(trained_ckpt, stack, "track=false")
    labels = layers_of(tmp_path / "cellseg_out")[2]
    assert labels.data.shape == movie.frames.shape
    labels.data[1, 10:20, 10:20] = 55
    labels.data[4, 30:40, 30:40] = 99
    (written,) = save_corrections(labels)
    assert written == tmp_path / "stack_masks.tif"
    with tifffile.TiffFile(written) as tif:
        assert tif.shaped_metadata[0]["corrected_frames"] == [1, 4] and np.array_equal(tif.asarray(), labels.data)
    frames = find_frames(tmp_path)  # what +experiment=finetune data.root=... trains on
    assert [f.name for f in frames] == ["stack_t001", "stack_t004"]
    image, mask = frames[1].load()
    assert np.array_equal(image, movie.frames[4]) and np.array_equal(mask, labels.data[4])
    reopened = layers_of(tmp_path / "cellseg_out")[2]
    assert np.array_equal(reopened.data, labels.data)
    reopened.data[2, 50:60, 50:60] = 77
    save_corrections(reopened)
    assert [f.name for f in find_frames(tmp_path)] == ["stack_t001", "stack_t002", "stack_t004"]


def test_a_stack_reopened_over_a_new_prediction_keeps_exactly_its_corrected_frames(tmp_path):
    """After fine-tuning and predicting again, the uncorrected frames show the new model's
    labels, and the frames corrected before stay corrected whatever the new model does."""
    from cellseg.napari.reader import saved_masks

    rng = np.random.default_rng(0)
    tifffile.imwrite(tmp_path / "mov.tif", (rng.random((4, 64, 64)) * 1000).astype(np.uint16), photometric="minisblack")
    old = np.zeros((4, 64, 64), np.uint16)
    old[:, 10:20, 10:20] = 1
    tifffile.imwrite(tmp_path / "old_labels.tif", old, photometric="minisblack")
    meta = {"image_paths": [str(tmp_path / "mov.tif")], "labels_path": str(tmp_path / "old_labels.tif"), "name": "mov"}
    first = SimpleNamespace(metadata={"cellseg": meta}, data=old.copy())
    first.data[1, 40:50, 40:50] = 2
    save_corrections(first, frames=[0, 1])  # frame 0: the prediction was right, saved as checked
    new = np.zeros((4, 64, 64), np.uint16)
    new[:, 10:22, 10:22] = 1
    new[1] = first.data[1]  # the fine-tuned model now draws frame 1 as corrected
    tifffile.imwrite(tmp_path / "new_labels.tif", new, photometric="minisblack")
    shown, used = saved_masks("mov", [tmp_path / "mov.tif"], new)
    assert np.array_equal(shown[2], new[2]) and np.array_equal(shown[0], old[0]) and np.array_equal(shown[1], new[1])
    second = SimpleNamespace(
        metadata={"cellseg": dict(meta, labels_path=str(tmp_path / "new_labels.tif"), saved_masks=used)},
        data=shown.copy(),
    )
    second.data[3, 50:60, 50:60] = 3
    save_corrections(second)  # frame 3 only differs from the new prediction
    assert [f.name for f in find_frames(tmp_path)] == ["mov_t000", "mov_t001", "mov_t003"]
    saved = tifffile.imread(tmp_path / "mov_masks.tif")
    assert np.array_equal(saved[0], old[0]) and np.array_equal(saved[3], second.data[3])


@pytest.mark.filterwarnings("error:Private attribute access")
def test_save_button_writes_the_changed_frames_of_a_movie_folder(review_widget, movie, single, tmp_path):
    viewer, widget = review_widget
    folder, out = movie_copy(movie, tmp_path)
    viewer.open(str(out), plugin="cellseg")
    labels = widget.layer
    widget.save_button.click()
    assert "no frame differs" in widget.status.text() and not list(folder.glob("*_masks.tif"))
    labels.data[2, 10:20, 10:20] = 999
    widget.save_button.click()
    assert sorted(p.name for p in folder.glob("*_masks.tif")) == ["t002_masks.tif"]  # only the corrected frame
    assert np.array_equal(tifffile.imread(folder / "t002_masks.tif"), labels.data[2])
    labels.data[2, 10:20, 10:20] = 998
    widget.save_button.click()  # its own file: saved again
    assert tifffile.imread(folder / "t002_masks.tif")[15, 15] == 998
    tifffile.imwrite(folder / "t002_masks.tif", labels.data[2] * 0)  # changed by somebody else since
    labels.data[2, 10:20, 10:20] = 997
    widget.save_button.click()
    assert "exists already" in widget.status.text()
    assert tifffile.imread(folder / "t002_masks.tif")[15, 15] == 0
    widget.overwrite.setChecked(True)
    widget.save_button.click()
    assert tifffile.imread(folder / "t002_masks.tif")[15, 15] == 997
    viewer.open(str(single.out), plugin="cellseg")  # another image: "replace" is asked again
    assert widget.layer is not labels and not widget.overwrite.isChecked()
    # napari's File > Save with the cellseg writer: the whole layer, as uint16
    labels.save(str(tmp_path / "all.tif"), plugin="cellseg")
    saved = tifffile.imread(tmp_path / "all.tif")
    assert saved.dtype == np.uint16 and np.array_equal(saved, labels.data)


def test_reopened_corrections_leave_the_cells_they_changed_off_the_review_list(
    review_widget, movie, tmp_path, monkeypatch
):
    monkeypatch.setattr(review, "UNSURE", 1.01)  # every cell is unsure: all of them are listed
    viewer, widget = review_widget
    folder, out = movie_copy(movie, tmp_path)
    predicted = tifffile.imread(out / "01_labels.tif")
    erased, kept = (int(v) for v in np.unique(predicted[2])[1:3])
    corrected = predicted[2].copy()
    corrected[corrected == erased] = 0  # a false cell removed in an earlier session
    tifffile.imwrite(folder / "t002_masks.tif", corrected)
    widget.count.setValue(10_000)
    viewer.open(str(out), plugin="cellseg")
    rows = rows_of(out, "01")
    listed = set(zip(widget.rows["frame"], widget.rows["label"]))
    assert (2, erased) not in listed and (2, kept) in listed  # the untouched neighbour stays
    assert len(widget.rows) == len(rows) - 1
    assert "1 cells your saved corrections changed are left out" in widget.title.text()
    assert list(widget.layer.metadata["cellseg"]["measurements"]["label"]) == list(rows["label"])  # go_to's rows


def opengl_context() -> bool:
    """Whether Qt can make an OpenGL context (napari's canvas needs one; offscreen Qt may not have it)."""
    from qtpy.QtGui import QOpenGLContext

    return QOpenGLContext().create()


@pytest.mark.filterwarnings("error:Private attribute access")
def test_plugin_in_a_full_napari_window(plugin, qapp, make_napari_viewer, movie, monkeypatch):
    monkeypatch.setattr(review, "UNSURE", 1.01)  # every cell listed
    if not opengl_context():
        pytest.skip("no OpenGL context for napari's canvas (xvfb-run gives offscreen Qt one)")
    viewer = make_napari_viewer()
    viewer.open(str(movie.out), plugin="cellseg")
    _, widget = viewer.window.add_plugin_dock_widget("cellseg", "Cells to review")
    assert [layer.name for layer in viewer.layers] == ["01", "01 probability", "01 labels", "01 tracks"]
    labels = viewer.layers["01 labels"]
    expected = cells_to_review(rows_of(movie.out, "01"), 20)
    assert widget.layer is labels and widget.table.rowCount() == len(expected) > 1
    widget.table.selectRow(len(expected) - 1)
    assert viewer.dims.current_step[0] == expected["frame"].iloc[-1]
    assert labels.selected_label == expected["label"].iloc[-1]
