"""The faithful model: GoogLeNet encoder and one transposed convolution back to full size."""

from __future__ import annotations

import torch
from torch import nn

from cellseg.models.nets.encoder import CHANNELS, GoogLeNetEncoder, pad_to_multiple


class GoogLeNetFCN(nn.Module):
    """Stride-32 GoogLeNet features -> ``ConvTranspose2d(1024, out, 64, stride=32)`` logits.

    The head runs in float32 outside autocast: in bf16 the 64x64 transposed convolution
    is several times slower on CPU than in fp32, and it is a small share of the FLOPs.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 2, encoder_weights: str | None = None):
        super().__init__()
        self.encoder = GoogLeNetEncoder(in_channels, encoder_weights)
        self.head = nn.ConvTranspose2d(CHANNELS["s32"], out_channels, kernel_size=64, stride=32, padding=16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, out_channels, H, W) for any H, W."""
        x, (height, width) = pad_to_multiple(x)
        features = self.encoder(x)["s32"]
        with torch.autocast(x.device.type, enabled=False):
            logits = self.head(features.float())
        return logits[..., :height, :width]
