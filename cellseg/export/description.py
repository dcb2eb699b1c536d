"""The package's description (bioimage.io model format 0.5) and the files it names."""

from __future__ import annotations

import hashlib
import inspect
import math
from pathlib import Path
from typing import Any

import numpy as np

import cellseg
from cellseg.errors import CellsegError
from cellseg.export.architectures import ARCHITECTURES
from cellseg.export.documentation import cover_image, documentation
from cellseg.export.network import CHANNELS, MULTIPLE, run
from cellseg.export.options import Options
from cellseg.export.sample import EPS, crop_input, scale_range
from cellseg.export.weights import INPUT_ID, OPSET, OUTPUT_ID, check_weights, write_onnx, write_torchscript
from cellseg.utils.numbers import number_problem

CITATIONS = (
    ("Szegedy et al. 2015, Going deeper with convolutions (GoogLeNet), CVPR", "10.1109/CVPR.2015.7298594"),
    ("Long, Shelhamer, Darrell 2015, Fully convolutional networks for semantic segmentation, CVPR",
     "10.1109/CVPR.2015.7298965"),
    ("Ronneberger, Fischer, Brox 2015, U-Net: convolutional networks for biomedical image segmentation "
     "(edge-weighted loss), MICCAI", "10.1007/978-3-319-24574-4_28"),
)  # fmt: skip
BASE_TAGS = ("cellseg", "2d", "pytorch", "cells", "semantic-segmentation")


def is_number(value: Any) -> bool:
    """A plain finite number a float holds (not a bool, NaN, or an int past float's range)."""
    return number_problem("value", value, (int, float), -math.inf, math.inf) is None


def trained_steps(checkpoint: dict) -> int:
    """The checkpoint's ``global_step``; 0 where it is not a plain count (a crafted file)."""
    step = checkpoint.get("global_step")
    return step if number_problem("global_step", step, int, 0, 2**63 - 1) is None else 0


def best_validation(checkpoint: dict) -> dict[str, float]:
    """The validation metrics of the step the checkpoint was saved at (finite plain numbers only;
    a checkpoint is someone else's file, so anything else in it is left out)."""
    callbacks = checkpoint.get("callbacks")
    history = callbacks.get("ValidationHistory") if isinstance(callbacks, dict) else None
    rows = history.get("rows") if isinstance(history, dict) else None
    step = trained_steps(checkpoint)
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("step") == step:
            return {k: float(v) for k, v in row.items() if isinstance(k, str) and k.startswith("val/") and is_number(v)}
    return {}


def cellseg_config(checkpoint: dict, ckpt: Path) -> dict[str, Any]:
    """What cellseg's instance step needs to make the same cells of the package's probabilities."""
    from cellseg.postprocess import probabilities_to_labels

    hparams = checkpoint["hyper_parameters"]
    defaults = {
        name: p.default
        for name, p in inspect.signature(probabilities_to_labels).parameters.items()
        if p.default is not inspect.Parameter.empty and name != "threshold"
    }
    digest = hashlib.sha256()
    with ckpt.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    norm = hparams["data"]["norm"]
    return {
        "version": cellseg.__version__,
        "network": hparams["net"]["_target_"],
        "net": {k: v for k, v in hparams["net"].items() if k != "encoder_weights"},
        "channels": list(CHANNELS),
        "normalization": {"low": float(norm["low"]), "high": float(norm["high"]), "clip": False},
        "threshold": round(float(checkpoint["state_dict"]["threshold"]), 6),
        "threshold_method": str(hparams.get("threshold_method", "")),
        "postprocess": {**defaults, **hparams["postprocess"]},
        "edge_width": int(hparams["data"]["edge_width"]),
        "trained_steps": trained_steps(checkpoint),
        "validation": best_validation(checkpoint),
        "checkpoint": {"file": ckpt.name, "sha256": digest.hexdigest()},
    }


def check_license(license: str) -> None:
    """Refuse a licence that is not an SPDX identifier, before the export does any work."""
    import pydantic
    from bioimageio.spec.model import v0_5

    for kind in (v0_5.LicenseId, v0_5.DeprecatedLicenseId):
        try:
            kind(license)
        except (pydantic.ValidationError, ValueError):
            continue
        if kind is v0_5.LicenseId:
            return
        raise CellsegError(
            f"license={license}: a deprecated SPDX identifier, which bioimage.io model packages refuse; "
            "use its current form (GPL-2.0 is GPL-2.0-only or GPL-2.0-or-later)"
        )
    raise CellsegError(f"license={license}: not an SPDX licence identifier; use e.g. MIT, BSD-3-Clause or CC-BY-4.0")


def describe(options: Options, checkpoint: dict, model: Any, image: np.ndarray, work: Path) -> Any:
    """Write weights, test tensors, cover and README into ``work``; return the ModelDescr."""
    import imageio.v3 as iio
    import pydantic
    import tifffile
    import torch
    from bioimageio.spec.model import v0_5

    from cellseg.postprocess import probabilities_to_labels

    config = cellseg_config(checkpoint, options.ckpt)
    norm = config["normalization"]
    raw = crop_input(image, options.crop, norm, options.sample)
    side = raw.shape[0]
    normalized = scale_range(raw, norm["low"], norm["high"])[None, None]
    prob = run(model, normalized)
    np.save(work / "test_input.npy", raw[None, None])
    np.save(work / "test_output.npy", prob)
    tifffile.imwrite(work / "sample_input.tif", raw)
    tifffile.imwrite(work / "sample_output.tif", prob[0])

    write_torchscript(model, normalized, work / "weights_torchscript.pt")
    write_onnx(model, normalized, work / "weights.onnx")
    checks = check_weights(model, work / "weights_torchscript.pt", work / "weights.onnx", normalized, prob)

    labels = probabilities_to_labels(prob[0], config["threshold"], **config["postprocess"])
    iio.imwrite(work / "cover.png", cover_image(normalized[0, 0], prob[0], labels))
    net_name = config["network"].rsplit(".", 1)[-1]
    arch = ARCHITECTURES[config["network"]]
    name = options.name or f"cellseg {net_name} interior and edge"
    (work / "README.md").write_text(documentation(name, config, side, checks), encoding="utf-8")

    def file(name: str) -> Any:
        return v0_5.FileDescr(source=work / name)

    def same_as_input(axis: str) -> Any:
        return v0_5.SizeReference(tensor_id=v0_5.TensorId(INPUT_ID), axis_id=v0_5.AxisId(axis))

    size = v0_5.ParameterizedSize(min=MULTIPLE, step=MULTIPLE)
    try:
        inputs = v0_5.InputTensorDescr(
            id=v0_5.TensorId(INPUT_ID),
            description="one 2-D frame, raw intensities (y and x any multiple of 32)",
            axes=[
                v0_5.BatchAxis(),
                v0_5.ChannelAxis(channel_names=[INPUT_ID]),
                v0_5.SpaceInputAxis(id=v0_5.AxisId("y"), size=size),
                v0_5.SpaceInputAxis(id=v0_5.AxisId("x"), size=size),
            ],
            data=v0_5.IntervalOrRatioDataDescr(type="float32"),
            preprocessing=[
                v0_5.ScaleRangeDescr(
                    kwargs=v0_5.ScaleRangeKwargs(
                        axes=[v0_5.AxisId("y"), v0_5.AxisId("x")],
                        min_percentile=norm["low"],
                        max_percentile=norm["high"],
                        eps=EPS,
                    )
                )
            ],
            test_tensor=file("test_input.npy"),
            sample_tensor=file("sample_input.tif"),
        )
        outputs = v0_5.OutputTensorDescr(
            id=v0_5.TensorId(OUTPUT_ID),
            description="probability of cell interior (channel 0) and of cell edge (channel 1)",
            axes=[
                v0_5.BatchAxis(),
                v0_5.ChannelAxis(channel_names=list(CHANNELS)),
                v0_5.SpaceOutputAxis(id=v0_5.AxisId("y"), size=same_as_input("y")),
                v0_5.SpaceOutputAxis(id=v0_5.AxisId("x"), size=same_as_input("x")),
            ],
            data=v0_5.IntervalOrRatioDataDescr(type="float32", range=(0.0, 1.0)),
            test_tensor=file("test_output.npy"),
            sample_tensor=file("sample_output.tif"),
        )
        description = options.description or (
            f"Per-pixel probabilities of cell interior and cell edge from {arch.phrase} "
            f"({net_name}) trained with cellseg; cells follow by thresholding the interior at "
            f"{config['threshold']:.3f} and connected components (see the documentation)."
        )
        return v0_5.ModelDescr(
            name=name,
            description=description,
            authors=[v0_5.Author(name=a) for a in options.authors],
            cite=[v0_5.CiteEntry(text=text, doi=v0_5.Doi(doi)) for text, doi in CITATIONS],
            license=v0_5.LicenseId(options.license),
            tags=list(dict.fromkeys([*BASE_TAGS, *arch.tags, *options.tags])),
            documentation=file("README.md"),
            covers=[file("cover.png")],
            inputs=[inputs],
            outputs=[outputs],
            weights=v0_5.WeightsDescr(
                torchscript=v0_5.TorchscriptWeightsDescr(
                    source=work / "weights_torchscript.pt",
                    pytorch_version=v0_5.Version(torch.__version__.split("+")[0]),
                    comment="torch.jit.trace of the network with its sigmoid (batch norm folded)",
                ),
                onnx=v0_5.OnnxWeightsDescr(
                    source=work / "weights.onnx",
                    opset_version=OPSET,
                    parent="torchscript",
                    comment=f"torch.onnx.export (TorchScript-based exporter, opset {OPSET}) of the same network",
                ),
            ),
            config=v0_5.Config(
                bioimageio=v0_5.BioimageioConfig(
                    architecture_type=f"{arch.kind} ({net_name})"[:32],
                    architecture_description=arch.details,
                    task="semantic-segmentation",
                    target_structure=["cells"],
                    model_parameter_count=sum(p.numel() for p in model.parameters()),
                ),
                cellseg=config,
            ),
        )
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the model"
        hint = f" (license={options.license}?)" if "license" in where else ""
        message = str(first["msg"]).splitlines()[0][:200]  # pydantic may list every allowed value
        raise CellsegError(f"the package description is invalid at {where}{hint}: {message}") from None
