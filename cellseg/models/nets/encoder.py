"""torchvision's GoogLeNet as a fully convolutional encoder (stride 32, no pooling/fc)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn
from torchvision.models import googlenet
from torchvision.models.googlenet import BasicConv2d

from cellseg.errors import CellsegError

# Encoder stages and the stride/channels of what each returns.
STAGES = {
    "stem": ("conv1",),  # stride 2, 64 channels
    "s4": ("maxpool1", "conv2", "conv3"),  # stride 4, 192
    "s8": ("maxpool2", "inception3a", "inception3b"),  # stride 8, 480
    "s16": ("maxpool3", "inception4a", "inception4b", "inception4c", "inception4d", "inception4e"),
    "s32": ("maxpool4", "inception5a", "inception5b"),  # stride 32, 1024
}
CHANNELS = {"stem": 64, "s4": 192, "s8": 480, "s16": 832, "s32": 1024}
SKIPPED = ("fc.", "aux1.", "aux2.")  # classifier heads the encoder drops
MIN_MATCHED = 0.5  # fraction of the encoder's tensors a weights file must fill

log = logging.getLogger(__name__)


class GoogLeNetEncoder(nn.Module):
    """GoogLeNet up to inception5b, with its first convolution taking ``in_channels``.

    ``weights`` is an optional local torchvision GoogLeNet state dict (nothing can be
    downloaded); a 3-channel first convolution is summed over RGB for one-channel input.
    """

    def __init__(self, in_channels: int = 1, weights: str | None = None):
        super().__init__()
        base = googlenet(weights=None, aux_logits=False, init_weights=True, transform_input=False)
        if weights:
            _load_weights(base, weights)
        if in_channels != 3:
            rgb = base.conv1.conv.weight.data
            base.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
            if weights:  # keep the pretrained filters' response to grey input
                base.conv1.conv.weight.data = rgb.sum(1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels
        self.stages = nn.ModuleDict(
            {name: nn.Sequential(*(getattr(base, layer) for layer in layers)) for name, layers in STAGES.items()}
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features of every stage, keyed by stage name."""
        features = {}
        for name, stage in self.stages.items():
            x = stage(x)
            features[name] = x
        return features


def _load_weights(base: nn.Module, path: str) -> None:
    """Load a torchvision GoogLeNet state dict into ``base``; warn about what did not match and
    refuse a file that fills less than :data:`MIN_MATCHED` of the encoder's tensors."""
    file = Path(path)
    if not file.is_file():
        raise CellsegError(f"{file}: encoder weights not found; set model.encoder_weights=PATH or null")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CellsegError(f"{file}: not a readable torch state dict ({err})") from err
    state = state.get("state_dict", state) if isinstance(state, dict) else None
    if not isinstance(state, dict):
        raise CellsegError(f"{file}: not a state dict (a dict of tensors); save model.state_dict() of a GoogLeNet")
    state = {k: v for k, v in state.items() if not str(k).startswith(SKIPPED)}
    try:
        result = base.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise CellsegError(f"{file}: does not fit torchvision GoogLeNet ({str(err).splitlines()[0]})") from err
    missing = [k for k in result.missing_keys if not k.startswith(SKIPPED) and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in result.unexpected_keys if not k.endswith("num_batches_tracked")]
    expected = [k for k in base.state_dict() if not k.startswith(SKIPPED) and not k.endswith("num_batches_tracked")]
    matched = len(expected) - len(missing)
    if missing or unexpected:
        log.warning(
            "%s: %d of %d encoder tensors loaded; %d missing (e.g. %s), %d unexpected (e.g. %s)",
            file, matched, len(expected), len(missing), missing[:3], len(unexpected), unexpected[:3],
        )  # fmt: skip
    if matched < MIN_MATCHED * len(expected):
        raise CellsegError(
            f"{file}: only {matched} of {len(expected)} encoder tensors match torchvision GoogLeNet's names "
            f"(e.g. {(unexpected or missing)[:1]}); use torchvision's googlenet().state_dict() or "
            "model.encoder_weights=null"
        )


def pad_to_multiple(x: torch.Tensor, multiple: int = 32) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad the last two dims up to a multiple of ``multiple``; return the original size."""
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = nn.functional.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, (height, width)
