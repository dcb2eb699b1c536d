"""The checkpoint's network, made portable, with its sigmoid: what the package's weights compute."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cellseg.errors import CellsegError

MULTIPLE = 32  # the network's stride: every input side must be a multiple of it
CHANNELS = ("interior", "edge")


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
    from cellseg.inference.predictor import load_net, saved_threshold

    checkpoint = load_checkpoint(ckpt)
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
