"""The weights: TorchScript and ONNX of the network, checked against it."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from cellseg.errors import CellsegError
from cellseg.export.network import MULTIPLE, run

CHECK_ATOL = 1e-4  # largest difference in probability of the exported weights from the network
OPSET = 17
INPUT_ID, OUTPUT_ID = "raw", "probabilities"


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
