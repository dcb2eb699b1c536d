"""A checkpoint as a bioimage.io model package: ``python -m cellseg.export ckpt=... output=... sample=...``.

The package (model description format 0.5) holds the network with its sigmoid inside, as
TorchScript and ONNX weights, so a consumer (deepImageJ, ilastik, QuPath, bioimageio.core)
gets the (interior, edge) probabilities that ``cellseg.inference.predictor.Predictor``
computes; the instance step (threshold, connected components, growth over the edge band)
stays in cellseg, and the checkpoint's threshold and post-processing options are stored
under ``config.cellseg`` and spelled out in the package's README.md.

Options:
    ckpt=PATH          a checkpoint written by train.py (required)
    output=PATH        ``NAME.zip`` for a zipped package, any other name for a folder (required)
    sample=IMAGE       a real 2-D frame; its centre crop is the test input, and cellseg's
                       probabilities of it the test output (required)
    crop=256           side of the square centre crop: a multiple of 32, reduced to the
                       frame's largest multiple of 32 where the frame is smaller
    name=...           the model's name (5 to 64 letters, digits, spaces and ``_+-()``)
    authors="A B;C D"  the people who trained the model, separated by ``;``
    description=...    one paragraph (at most 512 characters)
    tags=a,b           extra tags, e.g. ``tags=fluorescence-light-microscopy,nuclei``
    license=MIT        an SPDX licence identifier
    overwrite=false    replace an existing output
    test=true          run bioimageio.core's model test on the package before it gets its name

Example: ``python -m cellseg.export ckpt=logs/train/runs/<time>/checkpoints/best.ckpt
output=exports/nuclei.zip sample=data/synthetic/images/syn_006.tif authors="Jane Doe"``

The preprocessing is bioimage.io's ``scale_range`` over (y, x) of each sample with the
checkpoint's percentiles, ``(x - p_low) / (p_high - p_low + 1e-6)``, not clipped: cellseg's
``percentile_normalize`` up to that epsilon (cellseg divides by ``p_high - p_low``, and
where the two percentiles coincide it falls back to the frame's min and max).

Nothing is downloaded: the package has no URLs and no GitHub user names (bioimageio.spec
checks those online), and the exporter never asks bioimage.io for anything.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import string
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import cellseg
from cellseg.errors import CellsegError

# torch, bioimageio and the network are imported where they are needed, so a wrong option
# is answered at once.

MULTIPLE = 32  # the network's stride: every input side must be a multiple of it
CHANNELS = ("interior", "edge")
EPS = 1e-6  # scale_range's epsilon (the default, which bioimageio.core applies)
CHECK_ATOL = 1e-4  # largest difference in probability of the exported weights from the network
OPSET = 17
INPUT_ID, OUTPUT_ID = "raw", "probabilities"
NAME_CHARS = set(string.ascii_letters + string.digits + "_+- ()")
CITATIONS = (
    ("Szegedy et al. 2015, Going deeper with convolutions (GoogLeNet), CVPR", "10.1109/CVPR.2015.7298594"),
    ("Long, Shelhamer, Darrell 2015, Fully convolutional networks for semantic segmentation, CVPR",
     "10.1109/CVPR.2015.7298965"),
    ("Ronneberger, Fischer, Brox 2015, U-Net: convolutional networks for biomedical image segmentation "
     "(edge-weighted loss), MICCAI", "10.1007/978-3-319-24574-4_28"),
)  # fmt: skip
BASE_TAGS = ("cellseg", "2d", "pytorch", "inception", "googlenet", "fcn", "cells", "semantic-segmentation")
DEFAULTS = {
    "ckpt": None, "output": None, "sample": None, "crop": "256", "name": None, "authors": "cellseg user",
    "description": None, "tags": "", "license": "MIT", "overwrite": "false", "test": "true",
}  # fmt: skip
REQUIRED = ("ckpt", "output", "sample")
USAGE = "python -m cellseg.export ckpt=PATH output=PATH.zip sample=IMAGE [crop=256 name=... authors=...]"


@dataclass
class Options:
    ckpt: Path
    output: Path
    sample: Path
    crop: int = 256
    name: str | None = None
    authors: list[str] = field(default_factory=lambda: ["cellseg user"])
    description: str | None = None
    tags: list[str] = field(default_factory=list)
    license: str = "MIT"
    overwrite: bool = False
    test: bool = True


def _bool(key: str, value: str) -> bool:
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise CellsegError(f"{key}={value}: use true or false")


def parse(argv: list[str]) -> Options:
    """The options of ``python -m cellseg.export``, or one line saying which one is wrong."""
    values = dict(DEFAULTS)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in DEFAULTS:
            raise CellsegError(f"{arg}: unknown option; use key=value with one of {', '.join(DEFAULTS)}")
        values[key] = value
    for key in REQUIRED:
        if not values[key]:
            raise CellsegError(f"{key}= is missing; usage: {USAGE}")
    try:
        crop = int(values["crop"])
    except ValueError:
        raise CellsegError(f"crop={values['crop']}: give a whole number of pixels, a multiple of {MULTIPLE}") from None
    if crop < MULTIPLE or crop % MULTIPLE:
        raise CellsegError(f"crop={crop}: use a multiple of {MULTIPLE} (e.g. 256)")
    name = values["name"]
    if name is not None and (not 5 <= len(name) <= 64 or set(name) - NAME_CHARS):
        raise CellsegError(f"name={name}: use 5 to 64 letters, digits, spaces and _+-() (bioimage.io's rule)")
    authors = [a.strip() for a in values["authors"].split(";") if a.strip()]
    if not authors or any("/" in a for a in authors):
        raise CellsegError(
            f"authors={values['authors']}: give names separated by ';' (no '/'), e.g. authors=\"Jane Doe;John Roe\""
        )
    description = values["description"]
    if description is not None and not 1 <= len(description) <= 512:
        raise CellsegError(f"description=: {len(description)} characters; give 1 to 512")
    options = Options(
        ckpt=Path(values["ckpt"]).expanduser(),
        output=Path(values["output"]).expanduser(),
        sample=Path(values["sample"]).expanduser(),
        crop=crop,
        name=name,
        authors=authors,
        description=description,
        tags=[t.strip() for t in values["tags"].split(",") if t.strip()],
        license=values["license"],
        overwrite=_bool("overwrite", values["overwrite"]),
        test=_bool("test", values["test"]),
    )
    if not options.ckpt.is_file():
        raise CellsegError(f"ckpt={options.ckpt}: checkpoint not found; pass ckpt=PATH to a .ckpt from a training run")
    return options


# --- the network -------------------------------------------------------------------------------------------------


def probability_net(net: Any) -> Any:
    """``sigmoid(net(x))`` as a module: (N, 1, H, W) normalized frames -> (N, 2, H, W) interior and
    edge probabilities in fp32, as :class:`cellseg.inference.predictor.Predictor` computes them."""
    import torch

    class ProbabilityNet(torch.nn.Module):
        def __init__(self, net: torch.nn.Module):
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.net(x).float())

    return ProbabilityNet(net).eval()


def portable(net: Any) -> Any:
    """``net`` in eval mode with batch norm folded into the convolutions (as the Predictor runs it)
    and the matmul transposed convolution replaced by ``nn.ConvTranspose2d`` with the same weights
    (one ONNX ConvTranspose instead of a loop of slice additions): the same function either way."""
    import torch

    from cellseg.inference.optimize import fold_batchnorm
    from cellseg.models.nets.transposed_conv import MatmulConvTranspose2d

    net.eval()
    with torch.no_grad():
        fold_batchnorm(net)
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, MatmulConvTranspose2d):
                plain = torch.nn.ConvTranspose2d(
                    child.in_channels, child.out_channels, child.kernel_size, stride=child.stride, padding=child.padding
                )
                plain.load_state_dict(child.state_dict())
                setattr(module, name, plain.eval())
    return net


def load_model(ckpt: Path) -> tuple[dict, Any]:
    """The checkpoint (checked as the Predictor checks it) and its network with the sigmoid (fp32, CPU)."""

    from cellseg.checkpoint import load_checkpoint
    from cellseg.inference.predictor import check_saved_options, load_net, saved_threshold

    checkpoint = load_checkpoint(ckpt)
    check_saved_options(checkpoint["hyper_parameters"], ckpt)
    saved_threshold(checkpoint, ckpt)
    net = load_net(checkpoint, ckpt)
    out_channels = getattr(getattr(net, "head", None), "out_channels", len(CHANNELS))
    if out_channels != len(CHANNELS):
        raise CellsegError(f"{ckpt}: the network has {out_channels} output channels; cellseg exports (interior, edge)")
    return checkpoint, probability_net(portable(net))


def run(model: Any, normalized: np.ndarray) -> np.ndarray:
    """(N, 2, H, W) probabilities of a (N, 1, H, W) normalized batch."""
    import torch

    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(normalized))).numpy()


# --- the test tensors --------------------------------------------------------------------------------------------


def read_frame(path: Path) -> np.ndarray:
    """The sample: one 2-D frame at least 32 px on each side."""
    from cellseg.data.io import as_2d, read_image

    image = as_2d(read_image(path), path)
    if min(image.shape) < MULTIPLE:
        raise CellsegError(
            f"sample={path}: frame of shape {image.shape} is smaller than {MULTIPLE}x{MULTIPLE}; use a larger one"
        )
    return image


def center_crop(image: np.ndarray, crop: int) -> np.ndarray:
    """The square centre crop of side ``min(crop, the largest multiple of 32 that fits)``."""
    side = min(crop, min(image.shape) // MULTIPLE * MULTIPLE)
    y0, x0 = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    return image[y0 : y0 + side, x0 : x0 + side]


def crop_input(image: np.ndarray, crop: int, norm: dict, path: Path) -> np.ndarray:
    """The centre crop as float32 raw intensities, refused where its percentiles do not differ."""
    raw = center_crop(image, crop).astype(np.float32)
    low, high = np.percentile(raw, (norm["low"], norm["high"]))
    if not high > low:
        raise CellsegError(
            f"sample={path}: the centre crop's percentiles {norm['low']:g} and {norm['high']:g} are equal "
            f"({low:g}); pick a frame with more contrast or a larger crop="
        )
    return raw


def scale_range(raw: np.ndarray, low: float, high: float) -> np.ndarray:
    """bioimage.io's ``scale_range`` over (y, x): ``(x - p_low) / (p_high - p_low + eps)``, not clipped,
    with linearly interpolated percentiles (as bioimageio.core and cellseg compute them)."""
    p_low, p_high = np.percentile(raw, (low, high))
    return ((raw - p_low) / (p_high - p_low + EPS)).astype(np.float32)


# --- weights -----------------------------------------------------------------------------------------------------


@contextmanager
def quiet() -> Iterator[None]:
    """Silence the expected warnings: the tracer's (the traced shape arithmetic holds for multiples
    of 32, the only sizes the package accepts) and the deprecation notices of TorchScript and of
    the TorchScript-based ONNX exporter (both still supported)."""
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
        yield


def write_torchscript(model: Any, example: np.ndarray, path: Path) -> None:
    import torch

    with quiet(), torch.no_grad():
        torch.jit.trace(model, torch.from_numpy(example), check_trace=False).save(str(path))


def write_onnx(model: Any, example: np.ndarray, path: Path) -> None:
    """ONNX with dynamic batch, y and x. The TorchScript-based exporter: ``dynamo=True`` gives
    the same graph but takes minutes on two CPU cores for what this does in seconds."""
    import torch

    with quiet():
        torch.onnx.export(
            model, (torch.from_numpy(example),), str(path), input_names=[INPUT_ID], output_names=[OUTPUT_ID],
            dynamic_axes={INPUT_ID: {0: "batch", 2: "y", 3: "x"}, OUTPUT_ID: {0: "batch", 2: "y", 3: "x"}},
            opset_version=OPSET, do_constant_folding=True, dynamo=False,
        )  # fmt: skip


def check_weights(
    model: Any, torchscript: Path, onnx: Path, normalized: np.ndarray, prob: np.ndarray
) -> dict[str, float]:
    """Largest difference of each exported format from the network (whose output of ``normalized``
    is ``prob``), at the test size and at a second multiple of 32 with a batch of two
    (side/2 x side); a mismatch is a CellsegError."""
    import onnxruntime as ort
    import torch

    side = normalized.shape[-1]
    height = max(MULTIPLE, side // 2 // MULTIPLE * MULTIPLE)
    other = np.concatenate([normalized[..., :height, :], normalized[..., side - height :, :]])
    with quiet():
        scripted = torch.jit.load(str(torchscript), map_location="cpu").eval()
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    worst = {"torchscript": 0.0, "onnx": 0.0}
    for batch in (normalized, np.ascontiguousarray(other)):
        expected = prob if batch is normalized else run(model, batch)
        results = {"torchscript": run(scripted, batch), "onnx": session.run(None, {INPUT_ID: batch})[0]}
        for fmt, result in results.items():
            if result.shape != expected.shape:
                raise CellsegError(
                    f"{fmt} export: output {result.shape} for input {batch.shape}, expected {expected.shape}"
                )
            worst[fmt] = max(worst[fmt], float(np.abs(result - expected).max()))
    for fmt, diff in worst.items():
        if not diff <= CHECK_ATOL:
            raise CellsegError(f"{fmt} export differs from the network by {diff:.2g} in probability (> {CHECK_ATOL:g})")
    return worst


# --- cover and documentation -------------------------------------------------------------------------------------


def cover_image(normalized: np.ndarray, prob: np.ndarray, labels: np.ndarray, size: int = 256) -> np.ndarray:
    """A 2:1 RGB picture: the package's output over the sample (interior green, edge magenta),
    and the cells cellseg makes of it outlined (``size`` px high, well under bioimage.io's 500 kB)."""
    from skimage.transform import resize

    from cellseg.visualize import grey_rgb, outline_overlay

    if normalized.shape[0] != size:
        normalized = resize(normalized, (size, size), order=1, anti_aliasing=True).astype(np.float32)
        prob = resize(prob, (prob.shape[0], size, size), order=1, anti_aliasing=True)
        labels = resize(labels, (size, size), order=0, preserve_range=True, anti_aliasing=False).astype(labels.dtype)
    grey = grey_rgb(normalized).astype(np.float32) * 0.4
    colour = np.stack([prob[1], prob[0], prob[1]], axis=-1) * 0.6 * 255
    left = np.clip(grey + colour, 0, 255).astype(np.uint8)
    return np.concatenate([left, outline_overlay(normalized, labels)], axis=1)


def best_validation(checkpoint: dict) -> dict[str, float]:
    """The validation metrics of the step the checkpoint was saved at (plain numbers only)."""
    history = (checkpoint.get("callbacks") or {}).get("ValidationHistory") or {}
    rows = history.get("rows") if isinstance(history, dict) else None
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and row.get("step") == checkpoint.get("global_step"):
            return {k: float(v) for k, v in row.items() if str(k).startswith("val/") and isinstance(v, (int, float))}
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
        "trained_steps": int(checkpoint.get("global_step") or 0),
        "validation": best_validation(checkpoint),
        "checkpoint": {"file": ckpt.name, "sha256": digest.hexdigest()},
    }


def documentation(name: str, config: dict, side: int, checks: dict[str, float]) -> str:
    """The package's README.md."""
    norm, post, t = config["normalization"], config["postprocess"], config["threshold"]
    rows = "\n".join(f"| `{k}` | {v:.3f} |" for k, v in config["validation"].items())
    validation = (
        f"Validation metrics of the checkpoint (step {config['trained_steps']}). Validation chose this checkpoint "
        f"and its threshold, so these are not test results.\n\n| metric | value |\n|---|---|\n{rows}\n"
        if rows
        else "The checkpoint holds no validation metrics.\n"
    )
    call = ", ".join(f"{k}={v!r}" for k, v in post.items())
    method = post.get("method", "threshold")
    splitting = (
        "These four steps are the whole instance step of this checkpoint (`method: threshold`)."
        if method == "threshold"
        else f"This checkpoint's `method: {method}` also splits merged neighbours between steps 2 and 3 "
        "(see `cellseg/postprocess.py`); steps 1-4 alone are the plain `threshold` method."
    )
    return f"""# {name}

A cellseg model: a fully convolutional GoogLeNet (`{config["network"].rsplit(".", 1)[-1]}`) that gives, for every
pixel of a 2-D one-channel frame, the probability of **cell interior** and of **cell edge**.
Exported by cellseg {config["version"]} from `{config["checkpoint"]["file"]}` (sha256
`{config["checkpoint"]["sha256"][:16]}...`, {config["trained_steps"]} training steps).

## Input and output

- Input `{INPUT_ID}`: axes (batch, channel, y, x), one channel, float32 raw intensities; y and x
  any multiple of 32 (32, 64, 96, ...): pad or crop other sizes to a multiple of 32.
- Preprocessing (in the package): `scale_range` over y and x of each image, mapping percentile
  {norm["low"]:g} to 0 and percentile {norm["high"]:g} to 1, **not clipped**:
  `(x - p_low) / (p_high - p_low + 1e-6)`. That is cellseg's own normalization (which has
  no 1e-6), where the percentiles are those of the whole frame; bioimageio.core also takes
  them over the whole image before it tiles, other tools may take them per tile.
- Output `{OUTPUT_ID}`: axes (batch, channel, y, x), float32 in [0, 1]; channel 0 `interior`,
  channel 1 `edge`. The sigmoid is inside the weights.
- Weights: TorchScript (`torch.jit.trace`) and ONNX (opset {OPSET}; batch, y and x dynamic), the
  function cellseg's predictor computes (largest difference at export: TorchScript
  {checks["torchscript"]:.1e}, ONNX {checks["onnx"]:.1e}).

## What deepImageJ, ilastik or QuPath give you

Probabilities, not cells: a two-channel 32-bit image (interior, edge) of the size of the
input (deepImageJ: *Install Model* from this zip, then *Run*; ilastik: the Neural Network
Classification workflow; QuPath: the bioimage.io extension, as a pixel classifier). Turning
them into cells is cellseg's step, below.

The package declares no halo, so a tool that tiles a frame runs each tile without its
neighbours' context, and the probabilities change near tile borders. Give the model whole
frames where memory allows (cellseg itself predicts 1024-px tiles overlapping by 128 px),
else tiles of 512 px or more, overlapping if the tool offers it.

## From probabilities to cells

cellseg's instance step with this checkpoint's options (`config.cellseg` in `rdf.yaml`):

1. threshold the interior: `interior > {t:.4f}` (the threshold validation chose);
2. fill holes, then connected components (4-connected): one component per cell interior;
3. grow each component by up to {post.get("expand")} px into the foreground `interior + edge > {t:.4f}`
   (the network separates touching cells by the edge band between them);
4. drop objects smaller than {post.get("min_size")} px.

{splitting}
In Fiji: threshold channel 0 at {t:.4f}, *Fill Holes*, *Analyze Particles* with size
{post.get("min_size")}-Infinity (steps 1, 2 and 4). In Python, with `prob` the (2, H, W) output of one frame:

```python
from cellseg.postprocess import probabilities_to_labels
labels = probabilities_to_labels(prob, threshold={t:.4f}, {call})
```

Or let cellseg do all of it from the checkpoint, which holds these options:
`python predict.py ckpt={config["checkpoint"]["file"]} input=frames/` (labels, outlines, measurements).

## Validation

{validation}
To validate on your own annotated frames, run cellseg with the checkpoint and your masks
(`python predict.py ckpt=... input=frames/ gt=masks/` writes SEG, AP50, merges and misses to
`metrics.json`), or compare the cells of the steps above with your annotations. The test
input is the {side}x{side} centre crop of a real frame; `bioimageio test <package>` reproduces
the test output with both weight formats.
"""


# --- the package -------------------------------------------------------------------------------------------------


def _temporary(final: Path) -> Path:
    """A hidden name beside ``final`` that keeps its suffix (bioimageio recognizes a zip by it)."""
    return final.parent / f".{final.stem}.tmp{final.suffix}"


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def check_bioimageio(work: Path) -> None:
    """Refuse early where bioimageio.spec cannot write a package: 0.5.12 (the release
    bioimageio.core 0.11 requires) hands its serialization info to pydantic's wrap handler
    where pydantic-core 2.50 (pydantic 2.14) takes an index, so no weights entry serializes."""
    import pydantic
    from bioimageio.spec import __version__ as spec_version
    from bioimageio.spec.model import v0_5

    probe = work / "probe.txt"
    probe.write_text("probe")
    try:
        v0_5.TorchscriptWeightsDescr(source=probe, pytorch_version=v0_5.Version("2.0")).model_dump(mode="json")
    except Exception as err:
        raise CellsegError(
            f"bioimageio.spec {spec_version} cannot write packages with pydantic {pydantic.VERSION} "
            f"({str(err).splitlines()[0][:80]}...); install pydantic<2.14: pip install 'pydantic>=2.10.3,<2.14'"
        ) from None
    finally:
        probe.unlink()


def check_license(license: str) -> None:
    """Refuse a licence that is not an SPDX identifier, before the export does any work."""
    import pydantic
    from bioimageio.spec.model import v0_5

    for kind in (v0_5.LicenseId, v0_5.DeprecatedLicenseId):
        try:
            kind(license)
            return
        except (pydantic.ValidationError, ValueError):
            pass
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
            f"Per-pixel probabilities of cell interior and cell edge from a fully convolutional GoogLeNet "
            f"({net_name}) trained with cellseg; cells follow by thresholding the interior at "
            f"{config['threshold']:.3f} and connected components (see the documentation)."
        )
        return v0_5.ModelDescr(
            name=name,
            description=description,
            authors=[v0_5.Author(name=a) for a in options.authors],
            cite=[v0_5.CiteEntry(text=text, doi=v0_5.Doi(doi)) for text, doi in CITATIONS],
            license=v0_5.LicenseId(options.license),
            tags=list(dict.fromkeys([*BASE_TAGS, *options.tags])),
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
                    architecture_type=f"GoogLeNet FCN ({net_name})"[:32],
                    architecture_description="torchvision's GoogLeNet without pooling and classifier as the "
                    "encoder, a transposed-convolution head back to full resolution",
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
        raise CellsegError(f"the package description is invalid at {where}{hint}: {first['msg']}") from None


def failures(summary: Any) -> list[str]:
    """``name: first error`` of every failed detail of a bioimageio ValidationSummary."""
    lines = []
    for detail in summary.details:
        if detail.status == "failed":
            message = detail.errors[0].msg if detail.errors else ""
            lines.append(f"{detail.name}: {message.splitlines()[0] if message else 'failed'}")
    return lines


def model_test(package: Path) -> Any:
    """bioimageio.core's model test of a package (zip or folder) with every weight format in it:
    the test output reproduced from the test input, and inference at 32, 64 and 96 px with
    batches of 1 and 2. Returns the ValidationSummary; a failure is a CellsegError."""
    from bioimageio.core import test_model

    with quiet():
        summary = test_model(package / "rdf.yaml" if package.is_dir() else package)
    if summary.status != "passed":
        problems = failures(summary) or [f"status {summary.status}"]
        raise CellsegError(f"{package}: bioimageio.core's model test failed ({problems[0]})")
    return summary


def export(options: Options) -> Path:
    """Write the package for ``options`` under a temporary name, test it, rename it; return the name."""
    output = options.output
    if (output.exists() or output.is_symlink()) and not options.overwrite:
        raise CellsegError(f"output={output}: already exists; choose another output= or pass overwrite=true")
    image = read_frame(options.sample)
    check_license(options.license)
    checkpoint, model = load_model(options.ckpt)
    from bioimageio.spec import save_bioimageio_package, save_bioimageio_package_as_folder

    tmp = _temporary(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        _remove(tmp)
        with tempfile.TemporaryDirectory(prefix="cellseg_export_") as work:
            check_bioimageio(Path(work))
            descr = describe(options, checkpoint, model, image, Path(work))
            with quiet():
                if output.suffix.lower() == ".zip":  # stored: float weights barely compress, and deflating takes long
                    save_bioimageio_package(descr, output_path=tmp, compression=zipfile.ZIP_STORED)
                else:
                    save_bioimageio_package_as_folder(descr, output_path=tmp)
        if options.test:
            model_test(tmp)
        if output.exists() or output.is_symlink():
            _remove(output)
        os.replace(tmp, output)
    except OSError as err:
        _remove(tmp)
        raise CellsegError(f"output={output}: cannot write the package ({err})") from err
    except BaseException:
        _remove(tmp)
        raise
    return output


def main(argv: list[str]) -> None:
    options = parse(argv)
    output = export(options)
    tested = "; it passes bioimageio.core's model test (torchscript and onnx)" if options.test else ""
    print(f"bioimage.io model package in {output}{tested}")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except CellsegError as err:
        print(f"cellseg: error: {err}".splitlines()[0], file=sys.stderr)
        sys.exit(2)
