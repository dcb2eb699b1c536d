"""``python -m cellseg.export``: a bioimage.io package that passes bioimageio.core's own model test,
whose outputs are cellseg's probabilities, and one-line refusals of bad input.

One export and one model test (both weight formats) for the module; the refusals run the
command as a subprocess; all but one stop before a checkpoint is loaded."""

from __future__ import annotations

import io
import re
import shutil
import socket
import subprocess
import sys
import zipfile
from pathlib import Path
from types import SimpleNamespace

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch
import yaml

from cellseg.checkpoint import load_checkpoint
from cellseg.data.synthetic import synthetic_frame
from cellseg.errors import CellsegError
from cellseg.export import CITATIONS, center_crop, check_bioimageio, export, model_test, parse, quiet
from cellseg.export.architectures import ARCHITECTURES
from cellseg.export.description import best_validation, trained_steps
from cellseg.inference.predictor import Predictor
from cellseg.models.registry import NETS

from .conftest import ROOT

CROP = 128


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """A real-looking frame whose sides are not multiples of 32 (the crop must find one)."""
    image, _ = synthetic_frame(np.random.default_rng(7), 256)
    path = tmp_path_factory.mktemp("sample") / "frame.tif"
    tifffile.imwrite(path, image[:230, :250])
    return path


@pytest.fixture(scope="module")
def package(request, sample, tmp_path_factory):
    """The package of the trained checkpoint and bioimageio.core's test of it, every socket
    connection refused and recorded (the export and the test must run offline)."""
    import bioimageio.core

    check_bioimageio(tmp_path_factory.mktemp("probe"))  # an unusable bioimageio fails here, before any training
    trained_ckpt = request.getfixturevalue("trained_ckpt")
    out = tmp_path_factory.mktemp("export") / "model.zip"
    attempts = []

    def refuse(self, address, *args):
        attempts.append(address)
        raise OSError(f"network access attempted: {address}")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket.socket, "connect_ex", refuse)
        export(parse([f"ckpt={trained_ckpt}", f"output={out}", f"sample={sample}", f"crop={CROP}",
                      "authors=Test Author", "test=false"]))  # fmt: skip
        with quiet():  # torch.jit.load's deprecation notice
            summary = bioimageio.core.test_model(out)  # every weight format in the package
    with zipfile.ZipFile(out) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    return SimpleNamespace(path=out, summary=summary, attempts=attempts, files=files,
                           rdf=yaml.safe_load(files["rdf.yaml"]))  # fmt: skip


def array(package, name: str) -> np.ndarray:
    return np.load(io.BytesIO(package.files[name]))


def test_package_passes_bioimageio_model_test_offline(package):
    summary = package.summary
    failed = [(d.name, [e.msg[:300] for e in d.errors]) for d in summary.details if d.status != "passed"]
    assert summary.status == "passed", failed
    status = {d.name: d.status for d in summary.details}
    for fmt in ("torchscript", "onnx"):  # both formats reproduced the test output and ran at other sizes
        assert status[f"Reproduce test outputs from test inputs ({fmt})"] == "passed"
        sizes = [name for name in status if name.startswith(f"Run {fmt} inference for inputs with batch_size")]
        assert len(sizes) == 6 and all(status[name] == "passed" for name in sizes), sizes
    assert package.attempts == []
    assert not list(package.path.parent.glob(".*tmp*")), "the temporary package was left behind"


def test_test_output_is_cellseg_probabilities(package, trained_ckpt, sample):
    """The packaged output of the packaged input is what cellseg's Predictor computes of the crop."""
    raw, output = array(package, "test_input.npy"), array(package, "test_output.npy")
    crop = center_crop(tifffile.imread(sample), CROP)
    assert raw.shape == (1, 1, CROP, CROP) and raw.dtype == np.float32
    assert np.array_equal(raw[0, 0], crop.astype(np.float32))
    predictor = Predictor(trained_ckpt, device="cpu", precision="fp32")
    expected = predictor.probabilities(crop)
    assert output.shape == (1, 2, CROP, CROP) and output.dtype == np.float32
    assert np.abs(output[0] - expected).max() < 1e-4
    assert expected[0].min() < 0.2 and expected[0].max() > 0.8  # a trained model: not a comparison of constants


def test_weights_take_another_multiple_of_32(package, trained_ckpt, sample, tmp_path):
    """Both weight files on a 64x96 input (batch of 2) give the Predictor's probabilities."""
    import onnxruntime as ort

    predictor = Predictor(trained_ckpt, device="cpu", precision="fp32")
    normalized = predictor.normalize(center_crop(tifffile.imread(sample), CROP))
    tiles = [normalized[:64, :96], normalized[32:96, 16:112]]
    expected = np.stack([predictor.predict_normalized(np.ascontiguousarray(t)) for t in tiles])
    batch = np.ascontiguousarray(np.stack(tiles)[:, None])
    weights = package.rdf["weights"]
    (tmp_path / "ts.pt").write_bytes(package.files[weights["torchscript"]["source"]])
    with quiet():
        scripted = torch.jit.load(str(tmp_path / "ts.pt"), map_location="cpu")
    with torch.inference_mode():
        results = {"torchscript": scripted(torch.from_numpy(batch)).numpy()}
    session = ort.InferenceSession(package.files[weights["onnx"]["source"]], providers=["CPUExecutionProvider"])
    results["onnx"] = session.run(None, {session.get_inputs()[0].name: batch})[0]
    for fmt, result in results.items():
        assert result.shape == (2, 2, 64, 96), fmt
        assert np.abs(result - expected).max() < 1e-4, fmt


def test_description_carries_the_checkpoint(package, trained_ckpt):
    checkpoint = load_checkpoint(trained_ckpt)
    hparams, rdf = checkpoint["hyper_parameters"], package.rdf
    (raw,), (out,) = rdf["inputs"], rdf["outputs"]
    assert [a["type"] for a in raw["axes"]] == ["batch", "channel", "space", "space"]
    assert [a["size"] for a in raw["axes"][2:]] == [{"min": 32, "step": 32}] * 2
    (scale,) = [p for p in raw["preprocessing"] if p["id"] == "scale_range"]
    assert scale["kwargs"]["axes"] == ["y", "x"]
    assert scale["kwargs"]["min_percentile"] == hparams["data"]["norm"]["low"]
    assert scale["kwargs"]["max_percentile"] == hparams["data"]["norm"]["high"]
    assert not [p for p in raw["preprocessing"] if p["id"] == "clip"]  # cellseg does not clip
    assert out["axes"][1]["channel_names"] == ["interior", "edge"]
    assert set(rdf["weights"]) == {"torchscript", "onnx"}
    config = rdf["config"]["cellseg"]
    assert config["threshold"] == pytest.approx(float(checkpoint["state_dict"]["threshold"]), abs=1e-6)
    assert hparams["postprocess"].items() <= config["postprocess"].items()
    assert {c["doi"] for c in rdf["cite"]} == {doi for _, doi in CITATIONS}
    assert rdf["license"] == "MIT" and rdf["authors"] == [{"name": "Test Author"}]
    cover = package.files[rdf["covers"][0]["source"]]
    assert len(cover) < 500_000 and iio.imread(cover).shape == (256, 512, 3)  # bioimage.io: 2:1, under 500 kB
    readme = package.files[rdf["documentation"]["source"]].decode()
    assert "## Validation" in readme and f"{config['threshold']:.4f}" in readme
    arch = ARCHITECTURES[hparams["net"]["_target_"]]  # the trained net is googlenet_skip
    assert rdf["config"]["bioimageio"]["architecture_description"] == arch.details and arch.phrase in readme
    assert "decoder" in arch.details and set(arch.tags) <= set(rdf["tags"])


def test_failed_model_test_is_one_line(package, tmp_path):
    """A package whose test output was swapped after packaging fails bioimageio's test: refused."""
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tampered, "w") as archive:
        for name, data in package.files.items():
            if name == "test_output.npy":
                buffer = io.BytesIO()
                np.save(buffer, 1 - array(package, name))
                data = buffer.getvalue()
            archive.writestr(name, data)
    with pytest.raises(CellsegError, match="model test failed") as error:
        model_test(tampered)
    assert "\n" not in str(error.value)


def export_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cellseg.export", *args], cwd=ROOT, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def foreign_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("foreign") / "resnet.ckpt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "epoch": 3}, path)
    return path


@pytest.mark.parametrize(
    "case",
    [
        "unknown_option",
        "bad_crop",
        "missing_ckpt",
        "existing_output",
        "unreadable_sample",
        "bad_license",
        "foreign_ckpt",
        "nan_sample",
    ],
)
def test_refusals_are_one_line_and_exit_2(case, trained_ckpt, foreign_ckpt, sample, tmp_path):
    output = tmp_path / "model.zip"
    args = {"ckpt": str(trained_ckpt), "output": str(output), "sample": str(sample)}
    expect = None
    if case == "unknown_option":
        args["colour"], expect = "red", "colour=red: unknown option"
    elif case == "bad_crop":
        args["crop"], expect = "100", "crop=100"
    elif case == "missing_ckpt":
        args["ckpt"] = expect = str(tmp_path / "nothing.ckpt")
    elif case == "existing_output":
        output.write_text("keep me")
        expect = f"output={output}: already exists"
    elif case == "unreadable_sample":
        (tmp_path / "frame.tif").write_text("not a tiff")
        args["sample"] = expect = str(tmp_path / "frame.tif")
    elif case == "nan_sample":
        image = tifffile.imread(sample).astype(np.float32)
        image[40, 40] = np.nan
        tifffile.imwrite(tmp_path / "nan.tif", image)
        args["sample"], expect = str(tmp_path / "nan.tif"), "nan.tif: 1 NaN or infinite pixels"
    elif case == "bad_license":
        args["license"], expect = "Foo", "license=Foo: not an SPDX licence identifier"
    else:
        args["ckpt"], expect = str(foreign_ckpt), "not a cellseg model checkpoint"
    result = export_cli(*(f"{k}={v}" for k, v in args.items()))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cellseg: error: ") and expect in lines[0], result.stderr
    if case == "existing_output":
        assert output.read_text() == "keep me"
    else:
        assert not output.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left


@pytest.mark.parametrize("case", ["foreign_folder", "holds_the_sample", "not_a_package_file"])
def test_overwrite_replaces_only_an_earlier_package(case, trained_ckpt, sample, tmp_path):
    """overwrite=true must not delete a folder of other files, nor the ckpt or sample it holds."""
    output = tmp_path / "out"
    output.mkdir()
    (output / "notes.txt").write_text("keep me")
    args = {"ckpt": trained_ckpt, "output": output, "sample": sample, "overwrite": "true", "test": "false"}
    expect = "exists and is not a bioimage.io package (no rdf.yaml)"
    if case == "holds_the_sample":
        (output / "rdf.yaml").write_text("a package")
        args["sample"] = shutil.copy(sample, output / "frame.tif")
        expect = "holds sample="
    elif case == "not_a_package_file":
        args["output"] = output = tmp_path / "notes.zip"
        output.write_text("keep me")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(CellsegError, match=re.escape(expect)):
        export(parse([f"{k}={v}" for k, v in args.items()]))
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert (output if output.is_file() else output / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("name", ["     ", "abc", "a/b/c/d"])
def test_unusable_package_names_are_refused(name):
    with pytest.raises(CellsegError, match=re.escape(f"name={name!r}: use 5 to 64 letters")):
        parse(["ckpt=a.ckpt", "output=b.zip", "sample=c.tif", f"name={name}"])


def test_crafted_training_records_are_left_out_of_the_description():
    checkpoint = {"global_step": "abc", "callbacks": "abc"}
    assert best_validation(checkpoint) == {} and trained_steps(checkpoint) == 0
    rows = [{"step": 7, "val/seg": 10**400, "val/ap50": float("nan"), "val/f1": True, "val/auc": 0.9}]
    checkpoint = {"global_step": 7, "callbacks": {"ValidationHistory": {"rows": rows}}}
    assert best_validation(checkpoint) == {"val/auc": 0.9} and trained_steps(checkpoint) == 7


def test_every_network_has_a_package_description():
    """A network cellseg can build but not describe would fail at export, after the work."""
    assert set(NETS) == set(ARCHITECTURES)


def test_a_deprecated_licence_id_is_refused_before_any_work(trained_ckpt, sample, tmp_path):
    """bioimage.io packages take current SPDX ids only: GPL-2.0 must be refused by name at
    start-up, not after the export as a description error listing every licence."""
    output = tmp_path / "model.zip"
    args = {"ckpt": trained_ckpt, "output": output, "sample": sample, "license": "GPL-2.0"}
    with pytest.raises(CellsegError) as caught:
        export(parse([f"{k}={v}" for k, v in args.items()]))
    assert str(caught.value).startswith("license=GPL-2.0: a deprecated SPDX identifier")
    assert "GPL-2.0-only" in str(caught.value) and len(str(caught.value)) < 300
    assert list(tmp_path.iterdir()) == []
