"""A compact U-Net trained from scratch, for cells only a few pixels apart.

Packed rods in phase contrast are 10-14 px wide with 3-5 px between neighbours, so the
outline must be right to the pixel. The GoogLeNet decoders reach full resolution only
through a transposed convolution from stride 2; here every level keeps its own features
(two 3x3 convolutions, batch norm, ReLU) and the decoder fuses each one back on the way up
(Ronneberger et al. 2015). ``widths`` sets the channels per level, so ``len(widths) - 1``
poolings: the default (16 ... 256) is a stride-16 bottom with a receptive field of about
140 px and a third of the FLOPs of the GoogLeNet encoder per pixel.
"""

from __future__ import annotations

import torch
from torch import nn

from cellseg.errors import CellsegError
from cellseg.models.nets.encoder import pad_to_multiple


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class UNetEncoder(nn.Module):
    """The contracting path: the features of every level, finest first."""

    def __init__(self, in_channels: int, widths: tuple[int, ...]):
        super().__init__()
        self.levels = nn.ModuleList(_double_conv(c, w) for c, w in zip((in_channels, *widths[:-1]), widths))
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One feature map per level, each at half the size of the one before."""
        features = []
        for index, level in enumerate(self.levels):
            x = level(x if index == 0 else self.pool(x))
            features.append(x)
        return features


class UNet(nn.Module):
    """Contracting path of ``widths`` channels per level, expanding path back to full size.

    ``encoder_weights`` exists so every cellseg network takes the same options; a U-Net
    has no pretrained encoder to load, so anything but ``None`` is refused.
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 2,
        widths: tuple[int, ...] = (16, 32, 64, 128, 256),
        encoder_weights: str | None = None,
    ):
        super().__init__()
        widths = tuple(widths)  # a Hydra ListConfig has no reversed slices
        if encoder_weights:
            raise CellsegError("model=unet trains from scratch; set model.encoder_weights=null")
        if len(widths) < 2:
            raise CellsegError(f"model.widths={list(widths)}: a U-Net needs at least two levels")
        self.encoder = UNetEncoder(in_channels, widths)
        self.up = nn.ModuleList(nn.ConvTranspose2d(w, w // 2, 2, stride=2) for w in widths[:0:-1])
        self.decoder = nn.ModuleList(_double_conv(w // 2 + s, s) for w, s in zip(widths[:0:-1], widths[-2::-1]))
        self.head = nn.Conv2d(widths[0], out_channels, 1)
        self.multiple = 2 ** (len(widths) - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, out_channels, H, W) for any H, W."""
        x, (height, width) = pad_to_multiple(x, self.multiple)
        *skips, x = self.encoder(x)
        for up, level, skip in zip(self.up, self.decoder, reversed(skips)):
            x = level(torch.cat([up(x), skip], dim=1))
        with torch.autocast(x.device.type, enabled=False):
            logits = self.head(x.float())
        return logits[..., :height, :width]
