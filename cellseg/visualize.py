"""Pictures for a quick look: cell outlines over the image, error maps, ROC curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cellseg.morphology import inner_boundaries

PALETTE = np.array(
    [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
     [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255]],
    np.uint8,
)  # fmt: skip


def grey_rgb(normalized: np.ndarray) -> np.ndarray:
    """A normalized (0..1) image as uint8 RGB."""
    grey = (np.clip(normalized, 0, 1) * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def outline_overlay(normalized: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The image in grey with each cell's outline in a colour of its own."""
    rgb = grey_rgb(normalized)
    edge = inner_boundaries(labels)
    rgb[edge] = PALETTE[labels[edge] % len(PALETTE)]
    return rgb


ERROR_COLOURS = {
    "correct": (60, 200, 75),
    "false_positives": (230, 25, 75),
    "misses": (0, 130, 255),
    "merges": (255, 150, 0),
    "splits": (240, 50, 230),
}


def error_overlay(
    normalized: np.ndarray, truth: np.ndarray, pred: np.ndarray, errors: dict[str, np.ndarray]
) -> np.ndarray:
    """Predicted outlines coloured by verdict; missed and split reference cells outlined.

    Green: correct; red: false positive; orange: merge; magenta: split (the reference
    cell's outline); blue: miss (the reference cell's outline).
    """
    rgb = grey_rgb(normalized)
    pred_edge = inner_boundaries(pred)
    rgb[pred_edge] = ERROR_COLOURS["correct"]
    for kind, source in (("false_positives", pred), ("merges", pred), ("misses", truth), ("splits", truth)):
        ids = errors[kind]
        if ids.size:
            mask = np.isin(source, ids)
            rgb[inner_boundaries(np.where(mask, source, 0))] = ERROR_COLOURS[kind]
    return rgb


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> None:
    """Plot ROC curves ``{label: (fpr, tpr)}`` to a PNG file."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    for label, (fpr, tpr) in curves.items():
        axis.plot(fpr, tpr, label=label)
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    axis.set(xlabel="false positive rate", ylabel="true positive rate", title="pixel ROC, cell interior")
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120, format="png")
    plt.close(figure)
