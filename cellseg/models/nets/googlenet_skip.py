"""The skip variant: GoogLeNet encoder with a light FPN/U-Net-style decoder.

Stride-32 masks are coarse on 60-px nuclei; this head fuses features from strides 16, 8,
4 and 2 (1x1 lateral projections, bilinear upsampling, one 3x3 convolution per stage)
before a final transposed convolution to full size. It adds about 15% to the encoder's
FLOPs.

``full_res=N`` replaces that last transposed convolution with a stride-1 stage: two 3x3
convolutions of ``N`` channels on the input image itself, fused with the upsampled
stride-2 features by one more 3x3 convolution, then a 1x1 to the outputs. Edges between
objects 3-5 px apart (packed bacteria) need features of full resolution; the finest skip
of the encoder is stride 2.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from cellseg.models.nets.encoder import CHANNELS, GoogLeNetEncoder, pad_to_multiple


def _conv_bn_relu(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class GoogLeNetSkip(nn.Module):
    """GoogLeNet encoder, decoder over strides 32 -> 2, transposed conv to full size."""

    SKIPS = ("s16", "s8", "s4", "stem")

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        encoder_weights: str | None = None,
        widths: tuple[int, ...] = (128, 64, 32, 16),
        full_res: int = 0,
    ):
        super().__init__()
        self.encoder = GoogLeNetEncoder(in_channels, encoder_weights)
        self.top = _conv_bn_relu(CHANNELS["s32"], widths[0], 1)
        self.laterals = nn.ModuleList(_conv_bn_relu(CHANNELS[s], w, 1) for s, w in zip(self.SKIPS, widths))
        previous = (widths[0], *widths[:-1])
        self.fuse = nn.ModuleList(_conv_bn_relu(p + w, w, 3) for p, w in zip(previous, widths))
        if full_res:
            self.full = nn.Sequential(_conv_bn_relu(in_channels, full_res, 3), _conv_bn_relu(full_res, full_res, 3))
            self.full_fuse = _conv_bn_relu(widths[-1] + full_res, full_res, 3)
            self.head = nn.Conv2d(full_res, out_channels, 1)
        else:
            self.head = nn.ConvTranspose2d(widths[-1], out_channels, kernel_size=4, stride=2, padding=1)
        self.full_res = full_res

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, out_channels, H, W) for any H, W."""
        x, (height, width) = pad_to_multiple(x)
        features = self.encoder(x)
        y = self.top(features["s32"])
        for skip, lateral, fuse in zip(self.SKIPS, self.laterals, self.fuse):
            y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
            y = fuse(torch.cat([y, lateral(features[skip])], dim=1))
        if self.full_res:
            y = F.interpolate(y, scale_factor=2.0, mode="bilinear", align_corners=False)
            y = self.full_fuse(torch.cat([y, self.full(x)], dim=1))
        with torch.autocast(x.device.type, enabled=False):
            logits = self.head(y.float())
        return logits[..., :height, :width]
