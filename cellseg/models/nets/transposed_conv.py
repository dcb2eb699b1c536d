"""A transposed convolution computed as one matrix product and a few shifted adds.

When the kernel is a whole multiple ``m`` of the stride, every input position writes an
(out_channels, kernel, kernel) patch that overlaps its neighbours' patches in an m x m
grid of stride-sized blocks. So the layer is one ``(H*W, C_in) @ (C_in, C_out*k*k)``
matrix product followed by m^2 shifted block adds. The matrix product runs at the
machine's matmul speed in any precision (in bf16 too, where oneDNN's transposed
convolution is several times slower than in fp32), and the weights keep the layout and
names of :class:`torch.nn.ConvTranspose2d`, so checkpoints are unchanged. The weight stays
contiguous when the model moves to channels_last: the matrix product reads it as a
``(C_in, C_out*k*k)`` matrix, which a channels_last weight would have to be copied into
on every call (12 ms of a 55 ms head on a 1024x1024 frame).
"""

from __future__ import annotations

import torch
from torch import nn


class MatmulConvTranspose2d(nn.ConvTranspose2d):
    """``nn.ConvTranspose2d`` (square kernel a multiple of the stride, no groups, dilation
    or output padding), computed as matmul + shifted adds; same weights, same result."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, padding: int = 0):
        if kernel_size % stride:
            raise ValueError(f"kernel_size={kernel_size} must be a multiple of stride={stride}")
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding)

    def _apply(self, fn, recurse: bool = True):
        """As ``nn.Module._apply`` (``.to``, ``.cuda``, ...), then the weight made contiguous again."""
        super()._apply(fn, recurse)
        if not self.weight.is_contiguous():
            self.weight.data = self.weight.data.contiguous()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, H, W) -> (N, C_out, (H-1)*stride + kernel - 2*padding, same for W)."""
        n, c, h, w = x.shape
        k, s, p = self.kernel_size[0], self.stride[0], self.padding[0]
        m, o = k // s, self.out_channels
        # (N, H, W, C_in) is a free view of a channels_last tensor
        cols = x.permute(0, 2, 3, 1).reshape(n, h * w, c) @ self.weight.reshape(c, o * k * k).to(x.dtype)
        cols = cols.view(n, h, w, o, m, s, m, s)  # patch axes: (out, block row, row, block col, col)
        dtype = torch.promote_types(cols.dtype, torch.float32)  # the overlaps add up in at least fp32
        out = self.bias.to(dtype).view(1, o, 1, 1, 1, 1).repeat(n, 1, h + m - 1, s, w + m - 1, s)
        for a in range(m):
            for b in range(m):  # add_ on the view: ``+=`` on a slice would copy it back onto itself
                out[:, :, a : a + h, :, b : b + w, :].add_(cols[:, :, :, :, a, :, b, :].permute(0, 3, 1, 4, 2, 5))
        full = out.view(n, o, (h + m - 1) * s, (w + m - 1) * s)
        height, width = (h - 1) * s + k - 2 * p, (w - 1) * s + k - 2 * p
        return full[..., p : p + height, p : p + width]
