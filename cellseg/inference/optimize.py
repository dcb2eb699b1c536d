"""Rewrite a trained network into an equivalent one that runs faster at inference.

Two rewrites, both exact up to floating-point rounding, and optionally torch.compile:

- batch norm folded into the convolution before it (``fuse_conv_bn_eval``), which
  removes a full pass over every feature map;
- max pools computed as running maxima of shifted views, one axis at a time. ATen's
  pooling kernel slows down several-fold on channels_last maps whose row stride is a
  power of two (GoogLeNet's 64x512x512 stem and 256x128x128 inception3b maps: 13-16 ms
  against 2-3 ms for 192x128x128); the shifted maxima run at memory speed on all of them.
"""

from __future__ import annotations

import logging
import math

import torch
import torch._inductor.config as inductor_config
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

log = logging.getLogger(__name__)


class ShiftedMaxPool2d(nn.Module):
    """Inference-only ``nn.MaxPool2d`` (square kernel, no dilation) as separable maxima."""

    def __init__(self, pool: nn.MaxPool2d):
        super().__init__()
        self.kernel = _single(pool.kernel_size)
        self.stride = _single(pool.stride or pool.kernel_size)
        self.padding = _single(pool.padding)
        self.ceil_mode = pool.ceil_mode

    def _out_size(self, length: int) -> int:
        span = length + 2 * self.padding - self.kernel
        size = (math.ceil if self.ceil_mode else math.floor)(span / self.stride) + 1
        if self.ceil_mode and (size - 1) * self.stride >= length + self.padding:
            size -= 1  # the last window must start inside the image or its left padding
        return size

    def _pool_axis(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """Max over the window along ``dim`` (-1 or -2), at the output positions only."""
        length = x.shape[dim]
        size = self._out_size(length)
        right = max((size - 1) * self.stride + self.kernel - length - self.padding, 0)
        pad = (self.padding, right) if dim == -1 else (0, 0, self.padding, right)
        x = F.pad(x, pad, value=float("-inf"))
        stop = (size - 1) * self.stride + 1

        def window(offset: int) -> torch.Tensor:
            index = slice(offset, offset + stop, self.stride)
            return x[..., index] if dim == -1 else x[..., index, :]

        out = window(0)
        for offset in range(1, self.kernel):
            out = torch.maximum(out, window(offset))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._pool_axis(self._pool_axis(x, -1), -2)


class CompiledEncoder(nn.Module):
    """``encoder`` compiled by inductor with frozen weights (folded and pre-packed for oneDNN).

    Inductor reads its ``freezing`` setting when a graph compiles, which is at the first
    call of each new input shape, so every call sets it for its own duration only.
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.eager = encoder
        self.compiled = torch.compile(encoder)
        self.failed = False

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.failed:
            return self.eager(x)
        try:
            with inductor_config.patch(freezing=True):
                return self.compiled(x)
        except Exception as err:  # no working C++ toolchain, an unsupported backend, ...
            log.warning("torch.compile failed (%s); the encoder runs uncompiled", str(err).splitlines()[0][:200])
            self.failed = True
            return self.eager(x)


def _single(value: int | tuple[int, ...]) -> int:
    values = (value,) if isinstance(value, int) else tuple(value)
    if len(set(values)) != 1:
        raise ValueError(f"only square pooling windows are supported, got {value}")
    return values[0]


def fold_batchnorm(net: nn.Module) -> None:
    """Fold every BatchNorm2d that directly follows a Conv2d into that convolution (in place).

    Covers torchvision's ``BasicConv2d`` (``conv`` then ``bn``) and ``Sequential`` pairs.
    """
    for module in list(net.modules()):
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            module.conv, module.bn = fuse_conv_bn_eval(conv, bn), nn.Identity()
        if isinstance(module, nn.Sequential):
            children = list(module)
            for index, (first, second) in enumerate(zip(children, children[1:])):
                if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
                    module[index], module[index + 1] = fuse_conv_bn_eval(first, second), nn.Identity()


def shifted_max_pools(net: nn.Module) -> None:
    """Replace every square, undilated ``nn.MaxPool2d`` by :class:`ShiftedMaxPool2d` (in place)."""
    for module in list(net.modules()):
        for name, child in module.named_children():
            if isinstance(child, nn.MaxPool2d) and child.dilation in (1, (1, 1)) and not child.return_indices:
                setattr(module, name, ShiftedMaxPool2d(child))


def optimize_for_inference(net: nn.Module, compile_encoder: bool = False) -> nn.Module:
    """``net`` in eval mode with batch norm folded; returns ``net``.

    Then either its max pools are shifted, or (``compile_encoder``) its ``encoder`` is
    compiled by inductor with frozen weights, which fuses pools, ReLUs and concatenations
    into the convolutions around them. The head stays eager: compiled, its large matrix
    product runs several times slower than ATen's.
    """
    net.eval()
    with torch.no_grad():
        fold_batchnorm(net)
    if compile_encoder:
        net.encoder = CompiledEncoder(net.encoder)
    else:
        shifted_max_pools(net)
    return net
