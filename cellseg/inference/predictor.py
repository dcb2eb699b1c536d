"""From a checkpoint to probabilities and instance labels for raw frames."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch

from cellseg.checkpoint import load_checkpoint
from cellseg.data.normalize import percentile_normalize
from cellseg.errors import CellsegError
from cellseg.inference.optimize import optimize_for_inference
from cellseg.inference.tiling import predict_tiled
from cellseg.models.registry import build_net
from cellseg.postprocess import probabilities_to_labels


def resolve_device(device: str) -> torch.device:
    """``auto`` is CUDA when present, else CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise CellsegError("device=cuda but no CUDA GPU is visible; use device=cpu or device=auto")
    return torch.device(device)


FIXED_PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: ``auto`` is bf16 where the hardware computes it natively, else fp32 (CPU)
    or fp16 (GPU)."""
    if precision == "fp32":
        return None
    if precision in FIXED_PRECISIONS:
        return FIXED_PRECISIONS[precision]
    if precision != "auto":
        raise CellsegError(f"precision={precision!r}; use auto, fp32, bf16 or fp16")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if torch.ops.mkldnn._is_mkldnn_bf16_supported() else None


def load_net(checkpoint: dict, ckpt: str | Path) -> torch.nn.Module:
    """The network of a loaded checkpoint (see :func:`load_checkpoint`), in eval mode on the CPU."""
    net_cfg = checkpoint["hyper_parameters"]["net"]
    net = build_net(net_cfg, str(ckpt), encoder_weights=None)
    weights = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
    problem = weights_mismatch(net.state_dict(), weights)
    if problem:
        raise CellsegError(
            f"{ckpt}: weights do not fit {net_cfg['_target_']}: {problem}; use a .ckpt written by train.py"
        )
    net.load_state_dict(weights)
    return net.eval()


def weights_mismatch(expected: dict, weights: dict) -> str | None:
    """What keeps ``weights`` from loading into a network whose state dict is ``expected``:
    tensors missing, unexpected, or of another shape (the first of each named), or None."""
    missing = [k for k in expected if k not in weights]
    unexpected = [k for k in weights if k not in expected]
    reshaped = [k for k in expected if k in weights and weights[k].shape != expected[k].shape]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing ({missing[0]}, ...)")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({unexpected[0]}, ...)")
    if reshaped:
        key = reshaped[0]
        problems.append(
            f"{len(reshaped)} of another shape ({key} is {tuple(weights[key].shape)}, "
            f"the network wants {tuple(expected[key].shape)})"
        )
    return "; ".join(problems) or None


def saved_threshold(checkpoint: dict, ckpt: str | Path) -> float:
    """The probability threshold validation chose, stored in the checkpoint."""
    threshold = checkpoint["state_dict"].get("threshold")
    if not isinstance(threshold, torch.Tensor) or threshold.numel() != 1:
        raise CellsegError(f"{ckpt}: no probability threshold stored; use a .ckpt written by train.py")
    return float(threshold)


class Predictor:
    """A trained network with everything needed to use it on raw frames.

    Args:
        ckpt: path to a checkpoint written by ``train.py``.
        device: ``auto``, ``cpu`` or ``cuda``.
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (GPUs without bf16).
        tile, overlap, batch_size: tiled inference (tile and overlap in px).
        tta: average over the 4 flips (test-time augmentation).
        norm: override of the checkpoint's percentile normalization (``low``/``high``).
        threshold: override of the checkpoint's probability threshold.
        postprocess: override of the checkpoint's post-processing options.
        compile_encoder: compile the encoder with torch.compile (pays off on long runs only).
    """

    def __init__(
        self,
        ckpt: str | Path,
        device: str = "auto",
        precision: str = "auto",
        tile: int = 1024,
        overlap: int = 128,
        batch_size: int = 1,
        tta: bool = False,
        norm: dict | None = None,
        threshold: float | None = None,
        postprocess: dict | None = None,
        compile_encoder: bool = False,
    ):
        checkpoint = load_checkpoint(ckpt)
        hparams = checkpoint["hyper_parameters"]
        self.device = resolve_device(device)
        self.autocast = resolve_precision(precision, self.device)
        net = optimize_for_inference(load_net(checkpoint, ckpt), compile_encoder=compile_encoder)
        self.net = net.to(self.device, memory_format=torch.channels_last)
        saved_norm = hparams["data"]["norm"]
        self.norm = {k: v if v is not None else saved_norm[k] for k, v in {**saved_norm, **(norm or {})}.items()}
        self.threshold = float(threshold if threshold is not None else saved_threshold(checkpoint, ckpt))
        overrides = {k: v for k, v in (postprocess or {}).items() if v is not None}
        self.postprocess = {**hparams["postprocess"], **overrides}
        self.tile, self.overlap, self.batch_size, self.tta = tile, overlap, batch_size, tta
        self.edge_width = int(hparams["data"]["edge_width"])
        roc = checkpoint["state_dict"].get("roc_curve")
        self.val_roc = roc.numpy() if roc is not None and roc.abs().sum() > 0 else None
        if tile % 32 or overlap >= tile:
            raise CellsegError(f"tile={tile}, overlap={overlap}: tile must be a multiple of 32 and exceed overlap")

    @torch.inference_mode()
    def _forward(self, batch: torch.Tensor) -> np.ndarray:
        batch = batch.to(self.device).contiguous(memory_format=torch.channels_last)
        context = torch.autocast(self.device.type, dtype=self.autocast) if self.autocast else contextlib.nullcontext()
        flips = [(), (-1,), (-2,), (-2, -1)] if self.tta else [()]
        total = None
        with context:
            for dims in flips:
                x = batch.flip(dims) if dims else batch
                prob = torch.sigmoid(self.net(x).float())
                prob = prob.flip(dims) if dims else prob
                total = prob if total is None else total + prob
        return (total / len(flips)).cpu().numpy()

    def normalize(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """A raw 2-D frame normalized as the network expects it."""
        return percentile_normalize(image, self.norm["low"], self.norm["high"], name)

    def predict_normalized(self, normalized: np.ndarray) -> np.ndarray:
        """(2, H, W) float32 interior and edge probabilities of a normalized frame."""
        return predict_tiled(self._forward, normalized, self.tile, self.overlap, self.batch_size)

    def probabilities(self, image: np.ndarray, name: str = "image") -> np.ndarray:
        """(2, H, W) float32 interior and edge probabilities of one raw 2-D frame."""
        return self.predict_normalized(self.normalize(image, name))

    def labels(self, prob: np.ndarray, cell_prob: np.ndarray | None = None) -> np.ndarray:
        """Instance labels from probabilities, with this predictor's threshold and options
        (``cell_prob``: the frame's cell probability, where the caller has it already)."""
        return probabilities_to_labels(prob, self.threshold, **self.postprocess, cell_prob=cell_prob)
