"""The machine's side of the benchmark: what it is, its matmul peak, and FLOP counts."""

from __future__ import annotations

import platform
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cellseg.inference.predictor import resolve_precision

MATMUL_SIZES = (1024, 2048, 4096)


def device_name(device: torch.device) -> str:
    """The GPU card, or the CPU model with its thread count and vector extension."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or "cpu"
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return f"{cpu}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall-clock times are real."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def native_bf16(device: torch.device) -> bool:
    """Whether bf16 runs in hardware here, i.e. ``precision=auto`` picks it (emulated bf16
    on a CPU is many times slower)."""
    return resolve_precision("auto", device) == torch.bfloat16


def matmul_gflops(device: torch.device, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """Best sustained square matmul throughput over a few sizes, in GFLOP/s."""
    sizes = MATMUL_SIZES if dtype != torch.bfloat16 or native_bf16(device) else (256,)  # emulated: tiny
    best = 0.0
    for size in sizes:
        a = torch.randn(size, size, device=device, dtype=dtype)
        b = torch.randn(size, size, device=device, dtype=dtype)
        torch.mm(a, b)
        sync(device)
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            torch.mm(a, b)
            runs += 1
        sync(device)
        best = max(best, 2 * size**3 * runs / (time.perf_counter() - start) / 1e9)
    return best


def gflops(net: nn.Module, side: int) -> float:
    """FLOPs (2 per multiply-add) of ``net`` on one side x side single-channel frame."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 1, side, side))
    return counter.get_total_flops() / 1e9
