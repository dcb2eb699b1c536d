"""The inference rewrites compute what the plain network computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cellseg.inference.optimize import ShiftedMaxPool2d, optimize_for_inference
from cellseg.models.nets.googlenet_fcn import GoogLeNetFCN
from cellseg.models.nets.googlenet_skip import GoogLeNetSkip

from .conftest import calibrate_batchnorm


@pytest.mark.parametrize("kernel", [2, 3, 5])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("padding", [0, 1])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_shifted_max_pool_matches_max_pool2d(kernel, stride, padding, ceil_mode):
    if padding > kernel // 2:
        pytest.skip("torch refuses padding over half the kernel")
    pool = nn.MaxPool2d(kernel, stride, padding, ceil_mode=ceil_mode)
    x = torch.randn(2, 3, 13, 16).contiguous(memory_format=torch.channels_last)
    expected, got = pool(x), ShiftedMaxPool2d(pool)(x)
    assert got.shape == expected.shape and torch.equal(got, expected)


@pytest.mark.parametrize("net_class", [GoogLeNetFCN, GoogLeNetSkip])
def test_optimized_net_gives_the_same_logits(net_class):
    torch.manual_seed(0)
    net = calibrate_batchnorm(net_class())
    x = torch.randn(1, 1, 96, 160)
    with torch.no_grad():
        expected = net(x)
        optimize_for_inference(net)
        got = net(x)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.MaxPool2d)) for m in net.modules())
    assert expected.std() > 0.1  # not just the bias
    assert torch.allclose(got, expected, rtol=0, atol=1e-4 * expected.abs().max().item())  # fp32 reordering


def test_malloc_keeps_freed_memory_where_libc_is_glibc():
    import platform

    from cellseg.inference.malloc import keep_freed_memory

    assert keep_freed_memory() is (platform.libc_ver()[0] == "glibc")
