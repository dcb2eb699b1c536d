"""Pictures of a tracked movie: growth curves and the lineage tree (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402


def growth_figure(rows: pd.DataFrame, path: Path) -> None:
    """Area and mean intensity of every track over time, one line per track."""
    figure, (area, intensity) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for _, track in rows.groupby("track_id", sort=True) if len(rows) else []:
        area.plot(track["frame"], track["area"], lw=0.8)
        intensity.plot(track["frame"], track["mean_intensity"], lw=0.8)
    area.set(xlabel="frame", ylabel="area (px)", title="area per track")
    intensity.set(xlabel="frame", ylabel="mean intensity (raw)", title="mean intensity per track")
    figure.savefig(path, dpi=100, format="png")
    plt.close(figure)


def lineage_figure(tracks: pd.DataFrame, path: Path) -> None:
    """Each track as a horizontal bar from its first to its last frame, daughters joined to
    their mother; tracks are ordered so that a lineage stays together."""
    children: dict[int, list[int]] = {}
    for track_id, parent in zip(tracks["TRACK_ID"], tracks["PARENT_ID"]):
        children.setdefault(int(parent), []).append(int(track_id))
    known = set(int(t) for t in tracks["TRACK_ID"])
    order: list[int] = []
    stack = sorted((t for p, kids in children.items() if p not in known for t in kids), reverse=True)
    while stack:
        track_id = stack.pop()
        order.append(track_id)
        stack += sorted(children.get(track_id, []), reverse=True)
    row = {track_id: i for i, track_id in enumerate(order)}
    spans = tracks.set_index("TRACK_ID")
    figure, axes = plt.subplots(figsize=(8, max(3, 0.18 * len(order) + 1)), constrained_layout=True)
    for track_id in order:
        start, stop = spans.loc[track_id, "TRACK_START"], spans.loc[track_id, "TRACK_STOP"]
        axes.plot([start, stop], [row[track_id]] * 2, color="tab:blue", lw=2, marker="|", ms=4)  # | : 1-frame tracks
        parent = int(spans.loc[track_id, "PARENT_ID"])
        if parent in row:
            axes.plot([spans.loc[parent, "TRACK_STOP"], start], [row[parent], row[track_id]], color="tab:red", lw=1)
    axes.set(xlabel="frame", ylabel="track", title=f"lineages ({len(order)} tracks)")
    axes.set_yticks(range(len(order)), [str(t) for t in order], fontsize=6)
    axes.invert_yaxis()
    figure.savefig(path, dpi=100, format="png")
    plt.close(figure)
