"""The inference rewrites compute what the plain network computes."""

from __future__ import annotations

from contextlib import contextmanager
from functools import partial

import pytest
import torch
from torch import nn

from cellseg.inference.optimize import ShiftedMaxPool2d, flush_subnormals, fold_batchnorm, optimize_for_inference
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


@pytest.mark.parametrize("net_class", [GoogLeNetFCN, GoogLeNetSkip, partial(GoogLeNetSkip, full_res=8)])
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


# Run in a fresh process, since the settings cannot be undone: how many blocks glibc maps
# for one malloc, before and after keep_freed_memory(). glibc maps a large block of its own
# (mmap) above a threshold that grows to the largest block freed so far (24 MB here).
MMAP_PROBE = """
import ctypes, ctypes.util, sys
libc = ctypes.CDLL(ctypes.util.find_library("c"))
if not hasattr(libc, "mallinfo2"):
    sys.exit(3)
names = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
libc.mallinfo2.restype = type("MallInfo2", (ctypes.Structure,), {"_fields_": [(n, ctypes.c_size_t) for n in names]})
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]

def mapped(mb):
    before = libc.mallinfo2().hblks
    block = libc.malloc(mb << 20)
    during = libc.mallinfo2().hblks
    libc.free(block)
    return during - before

before = [mapped(1), mapped(24), mapped(28)]
from cellseg.inference.malloc import keep_freed_memory
print(before, keep_freed_memory(), [mapped(30), mapped(31)])
"""


def test_malloc_keeps_freed_memory_where_libc_is_glibc():
    import platform
    import subprocess
    import sys

    from .conftest import ROOT

    if platform.libc_ver()[0] != "glibc":
        from cellseg.inference.malloc import keep_freed_memory

        assert keep_freed_memory() is False
        return
    result = subprocess.run([sys.executable, "-c", MMAP_PROBE], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if result.returncode == 3:
        pytest.skip("glibc without mallinfo2 (< 2.33)")
    assert result.returncode == 0, result.stderr
    # before: every block above the freed ones is mapped and unmapped again; after: up to 32 MB
    # come from the heap and stay there for the next frame
    assert result.stdout.split() == ["[1,", "1,", "1]", "True", "[0,", "0]"], result.stdout


def smallest_subnormal(count: int) -> torch.Tensor:
    """``count`` float32 subnormals (1.4e-45), made from their bits: no arithmetic, which the
    CPU's flush-to-zero mode would turn into 0."""
    return torch.ones(count, dtype=torch.int32).view(torch.float32)


@contextmanager
def subnormals_kept():
    """This thread with the flush-to-zero mode off (another test may have turned it on:
    the bench and Lightning's setup do), restored afterwards."""
    was_on = bool((smallest_subnormal(1) * 1).view(torch.int32).item() == 0)
    torch.set_flush_denormal(False)
    try:
        yield
    finally:
        torch.set_flush_denormal(was_on)


def is_subnormal(x: torch.Tensor) -> torch.Tensor:
    """Nonzero float32 with a zero exponent, read from the bits (comparisons read them as 0
    under the flush-to-zero mode)."""
    bits = x.detach().contiguous().view(torch.int32)
    return ((bits & 0x7F800000) == 0) & ((bits & 0x7FFFFF) != 0)


def test_flush_subnormals_zeroes_only_subnormal_weights():
    conv = nn.Conv2d(1, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.cat([smallest_subnormal(1), torch.tensor([1e-30])]).view(2, 1, 1, 1))
    flush_subnormals(conv)
    assert not is_subnormal(conv.weight).any()
    assert conv.weight.flatten().tolist() == [0.0, pytest.approx(1e-30)]


def test_folding_flushes_the_subnormal_weights_it_makes():
    # a dead branch, shrunk by weight decay: kernel and batch-norm scale near 0
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4)).eval()
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([1.0, 1e-19, 1.0, 1e-19]))
        net[0].weight[1].fill_(1e-19)  # 1e-19 * 1e-19 / sqrt(0 + 1e-5): 3e-36, normal ...
        net[0].weight[3].fill_(1e-23)  # ... and 3e-40, subnormal
        net[1].running_var.zero_()
    x = torch.randn(1, 1, 8, 8)
    with subnormals_kept(), torch.no_grad():
        expected = net(x)
        fold_batchnorm(net)
        got = net(x)
    weight = net[0].weight
    assert not is_subnormal(weight).any()
    assert (weight[1] > 0).all() and (weight[3] == 0).all()  # normal numbers stay, subnormals go
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-6)


# Run in a fresh process: the thread pool that PyTorch starts at its first parallel
# operation copies the calling thread's floating-point mode. argv[1] "late": a parallel
# operation runs before the setting, so the second thread never gets it.
SUBNORMAL_PROBE = """
import sys
import numpy as np
import torch
torch.set_num_threads(2)
from cellseg.utils.task import run_task
x = torch.from_numpy(np.full(2**22, 1e-39, np.float32))  # subnormal, made without PyTorch's threads
if sys.argv[1] == "late":
    torch.ones(2**22) * 1
y = run_task(lambda cfg: x * 1, None)  # two threads, a half each
from cellseg.utils.subnormals import flush_subnormals_to_zero
print(flush_subnormals_to_zero(), int((y.view(torch.int32) != 0).sum()), y.numel())  # bits: 0 where flushed
"""


@pytest.mark.parametrize("when", ["early", "late"])
def test_run_task_flushes_subnormals_in_every_thread(when):
    import subprocess
    import sys

    from .conftest import ROOT

    command = [sys.executable, "-c", SUBNORMAL_PROBE, when]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    supported, nonzero, total = result.stdout.split()
    if supported != "True":
        pytest.skip("this CPU has no flush-to-zero mode")
    nonzero, total = int(nonzero), int(total)
    # run_task's setting reaches both threads when it comes first; after the pool started,
    # only the main thread's half is flushed (this shows the probe sees the worker thread)
    assert nonzero == (0 if when == "early" else total // 2), result.stdout
