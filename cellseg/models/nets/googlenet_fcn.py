"""The faithful model: GoogLeNet encoder and one transposed convolution back to full size."""

from __future__ import annotations

import torch
from torch import nn

from cellseg.models.nets.encoder import CHANNELS, GoogLeNetEncoder, pad_to_multiple
from cellseg.models.nets.transposed_conv import MatmulConvTranspose2d


class GoogLeNetFCN(nn.Module):
    """Stride-32 GoogLeNet features -> ``ConvTranspose2d(1024, out, 64, stride=32)`` logits.

    The head (17 GFLOP on a 1024x1024 frame, 29% on top of the encoder) is computed as a
    matrix product plus shifted adds (:class:`MatmulConvTranspose2d`): under bf16
    autocast that is several times faster than oneDNN's transposed convolution in either
    precision.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 2, encoder_weights: str | None = None):
        super().__init__()
        self.encoder = GoogLeNetEncoder(in_channels, encoder_weights)
        self.head = MatmulConvTranspose2d(CHANNELS["s32"], out_channels, kernel_size=64, stride=32, padding=16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, out_channels, H, W) for any H, W."""
        x, (height, width) = pad_to_multiple(x)
        logits = self.head(self.encoder(x)["s32"])
        return logits[..., :height, :width]
