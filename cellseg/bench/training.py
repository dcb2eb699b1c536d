"""Training speed: crops per second in fp32 and bf16-mixed, and time to the best val/seg."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pandas as pd
import torch
from hydra.utils import instantiate

from cellseg.bench.hardware import sync
from cellseg.models.losses import EdgeWeightedBCE


def crops_per_s(
    target: str, device: torch.device, bf16: bool, steps: int = 4, crop: int = 256, batch: int = 8
) -> float:
    """Training steps of ``target`` at the default crop size and batch, as crops/s."""
    net = instantiate({"_target_": target}).to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.RMSprop(net.parameters(), lr=1e-4)
    criterion = EdgeWeightedBCE()
    x = torch.randn(batch, 1, crop, crop, device=device).contiguous(memory_format=torch.channels_last)
    target_maps = torch.rand(batch, 2, crop, crop, device=device).round()
    border, valid = torch.zeros(batch, crop, crop, device=device), torch.ones(batch, crop, crop, device=device)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = criterion(net(x), target_maps, border, valid)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        sync(device)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times[1:])


def time_to_best(run_dir: Path) -> dict[str, float] | None:
    """From a training run's validation.csv: when it reached its best val/seg."""
    history = run_dir / "validation.csv"
    if not history.is_file():
        return None
    rows = pd.read_csv(history)
    best = rows.loc[rows["val/seg"].idxmax()]
    return {
        "best_val_seg": float(best["val/seg"]),
        "step": int(best["step"]),
        "elapsed_s": float(best["elapsed_s"]),
        "last_step": int(rows["step"].iloc[-1]),
        "last_elapsed_s": float(rows["elapsed_s"].iloc[-1]),
    }
