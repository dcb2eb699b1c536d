"""Rewrite a trained network into an equivalent one that runs faster at inference.

Two rewrites, both exact up to floating-point rounding, and optionally torch.compile:

- batch norm folded into the convolution before it (``fuse_conv_bn_eval``), which
  removes a full pass over every feature map; folded weights below float32's smallest
  normal number (subnormals) become 0. Folding makes them: a branch whose input a dead
  ReLU zeroes gets no gradient, weight decay shrinks its kernel and batch-norm scale
  towards 0 (around 1e-18 and 1e-14), and their product underflows (1.6 million folded
  weights of a trained ``mes_edge_weight`` GoogLeNet), which Intel cores compute many
  times slower (figures in :mod:`cellseg.utils.subnormals`);
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
        """Max over the window along ``dim`` (-1 or -2), at the output positions only.

        Window offset ``j`` of output ``o`` reads ``x[o * stride - padding + j]``; each offset
        updates, in place, the outputs whose read falls inside ``x`` (the padding is -inf, so
        the others are left alone). No padded copy: on the stem's 64x512x512 map that copy
        cost more than the maxima themselves."""
        length, size = x.shape[dim], self._out_size(x.shape[dim])

        def along(t: torch.Tensor, start: int, count: int, step: int) -> torch.Tensor:
            index = slice(start, start + (count - 1) * step + 1, step)
            return t[..., index] if dim == -1 else t[..., index, :]

        spans = []  # (offset, first output, last output) of the reads inside x
        for offset in range(self.kernel):
            first = max(0, -((offset - self.padding) // self.stride))
            last = min(size - 1, (length - 1 - offset + self.padding) // self.stride)
            if first <= last:
                spans.append((offset, first, last))
        whole = [offset for offset, first, last in spans if (first, last) == (0, size - 1)][:2]
        reads = [along(x, offset - self.padding, size, self.stride) for offset in whole]
        if len(reads) == 2:
            out = torch.maximum(*reads)
        elif reads:
            out = reads[0].clone()
        else:
            shape = list(x.shape)
            shape[dim] = size
            out = x.new_full(shape, float("-inf"))
        for offset, first, last in spans:
            if offset not in whole:
                part = along(out, first, last - first + 1, 1)
                torch.maximum(
                    part, along(x, first * self.stride - self.padding + offset, last - first + 1, self.stride), out=part
                )
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

    Covers torchvision's ``BasicConv2d`` (``conv`` then ``bn``) and ``Sequential`` pairs;
    subnormal results are flushed to 0 (:func:`flush_subnormals`).
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
    flush_subnormals(net)


def flush_subnormals(net: nn.Module) -> None:
    """Set every float32 parameter under float32's smallest normal number (1.2e-38: nothing a
    frame can see) to 0, in place. The test ``abs() < tiny`` also holds where the CPU's
    flush-to-zero mode reads subnormals as 0, where a ``!= 0`` test would miss them."""
    tiny = torch.finfo(torch.float32).tiny
    with torch.no_grad():
        for param in net.parameters():
            if param.dtype == torch.float32:
                param.masked_fill_(param.abs() < tiny, 0.0)


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
