"""Where the faithful model's network time goes: per stage, and as each optimisation is added."""

from __future__ import annotations

import contextlib
import copy
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cellseg.bench.hardware import native_bf16, sync
from cellseg.inference.malloc import keep_freed_memory
from cellseg.inference.optimize import optimize_for_inference
from cellseg.models.nets.googlenet_fcn import GoogLeNetFCN


class Float32(nn.Module):
    """Run ``module`` in fp32 outside autocast."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            return self.module(x.float())


def conv_transpose_head(net: GoogLeNetFCN) -> nn.ConvTranspose2d:
    """oneDNN's transposed convolution with the weights of ``net.head``."""
    head = net.head
    plain = nn.ConvTranspose2d(
        head.in_channels, head.out_channels, head.kernel_size, stride=head.stride, padding=head.padding
    )
    plain.load_state_dict(head.state_dict())
    return plain.to(head.weight.device)


@dataclass
class Variant:
    """One way of running the network."""

    name: str
    bf16: bool
    channels_last: bool = True
    head: str = "matmul"  # matmul | conv_transpose | conv_transpose_fp32
    optimized: bool = False
    malloc: bool = False  # glibc keeps freed blocks (irreversible for the process: run these last)
    compiled: bool = False


VARIANTS = (
    Variant("fp32, NCHW, ConvTranspose2d head (the seed)", False, channels_last=False, head="conv_transpose"),
    Variant("fp32, channels_last", False, head="conv_transpose"),
    Variant("bf16 autocast everywhere (ConvTranspose2d head in bf16)", True, head="conv_transpose"),
    Variant("bf16 encoder, ConvTranspose2d head in fp32 (previous release)", True, head="conv_transpose_fp32"),
    Variant("bf16, head as matmul + shifted adds", True),
    Variant("bf16, matmul head, BN folded, shifted max pools", True, optimized=True),
    Variant("fp32, matmul head, BN folded, shifted max pools", False, optimized=True),
    Variant("bf16, all of the above + glibc malloc keeps freed blocks (predict.py)", True, optimized=True, malloc=True),
    Variant("bf16, ... + encoder compiled (compile=true)", True, optimized=True, malloc=True, compiled=True),
)


HEADS = ("head (matmul + shifted adds)", "head (oneDNN ConvTranspose2d)")


def build_variant(net: GoogLeNetFCN, variant: Variant, device: torch.device) -> nn.Module:
    """A copy of ``net`` run the way ``variant`` says."""
    model = copy.deepcopy(net).eval()
    if variant.head != "matmul":
        plain = conv_transpose_head(model)
        model.head = Float32(plain) if variant.head == "conv_transpose_fp32" else plain
    if variant.optimized:
        optimize_for_inference(model, compile_encoder=variant.compiled)
    return model.to(device, memory_format=torch.channels_last if variant.channels_last else torch.contiguous_format)


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` calls, after one warm-up call."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _runner(module: nn.Module, x: torch.Tensor, bf16: bool) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        context = torch.autocast(x.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with torch.inference_mode(), context:
            return module(x)

    return run


def ablation(net: GoogLeNetFCN, frame: torch.Tensor, device: torch.device, repeats: int = 5) -> list[dict]:
    """Network seconds per frame for each of :data:`VARIANTS` (bf16 ones only with native bf16).

    ``frame`` is one normalized (1, 1, H, W) frame. Call this before anything in the
    process has changed malloc's settings (a :class:`Predictor` does). The compiled
    variant also reports its compile time (the first call, less one steady call).
    """
    rows = []
    for variant in VARIANTS:
        if variant.bf16 and not native_bf16(device):
            continue
        if variant.malloc and device.type == "cpu":
            keep_freed_memory()
        module = build_variant(net, variant, device)
        layout = torch.channels_last if variant.channels_last else torch.contiguous_format
        run = _runner(module, frame.to(device).contiguous(memory_format=layout), variant.bf16)
        start = time.perf_counter()
        run()
        sync(device)
        first = time.perf_counter() - start
        seconds = median_seconds(run, device, repeats)
        row = {"variant": variant.name, "network_s": seconds}
        if variant.compiled:
            row["compile_s"] = first - seconds
        rows.append(row)
    return rows


def stage_times(net: GoogLeNetFCN, frame: torch.Tensor, device: torch.device, repeats: int = 5) -> dict:
    """Milliseconds per frame of each encoder stage and of the head, in fp32 and in bf16
    (where native), as predict.py runs them; the oneDNN transposed-convolution head
    alongside for comparison."""
    fast = build_variant(net, Variant("", False, optimized=True), device)
    plain_head = conv_transpose_head(fast).to(memory_format=torch.channels_last)
    table: dict[str, dict[str, float]] = {}
    for precision in ("fp32", "bf16") if native_bf16(device) else ("fp32",):
        bf16 = precision == "bf16"
        x = frame.to(device).contiguous(memory_format=torch.channels_last)
        for name, stage in fast.encoder.stages.items():
            table.setdefault(name, {})[precision] = 1e3 * median_seconds(_runner(stage, x, bf16), device, repeats)
            x = _runner(stage, x, bf16)()
        for name, head in zip(HEADS, (fast.head, plain_head)):
            table.setdefault(name, {})[precision] = 1e3 * median_seconds(_runner(head, x, bf16), device, repeats)
    return table
