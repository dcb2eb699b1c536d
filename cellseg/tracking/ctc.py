"""Cell Tracking Challenge folders: a simple writer, the validator and the metrics.

The metrics are those of py-ctcmetrics (``ctc_metrics``), the CTC's own definitions:
TRA, DET, LNK, BC(i) and SEG from a result folder (``maskNNN.tif`` + ``res_track.txt``)
against a ground-truth folder (``TRA/man_trackNNN.tif`` + ``TRA/man_track.txt``,
``SEG/man_segNNN.tif``).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tifffile
from ctc_metrics.scripts.evaluate import calculate_metrics, load_data
from ctc_metrics.scripts.validate import validate_sequence

from cellseg.errors import CellsegError
from cellseg.tracking.tables import ctc_frame_labels, ctc_res_track_lines
from cellseg.tracking.tracker import Track

METRICS = ("TRA", "DET", "LNK", "BC(2)", "SEG")


def frame_digits(n_frames: int) -> int:
    """Digits of the frame number in CTC file names: three, or four for longer movies."""
    return max(3, len(str(n_frames - 1)))


def write_ctc_folder(res_dir: str | Path, label_frames: Sequence[np.ndarray], tracks: Iterable[Track]) -> Path:
    """Write track-id label frames and their tracks as a CTC result folder; return it."""
    res_dir = Path(res_dir)
    res_dir.mkdir(parents=True, exist_ok=True)
    tracks = list(tracks)
    lines = ctc_res_track_lines(tracks)
    if any(int(line.split()[0]) > np.iinfo(np.uint16).max for line in lines):
        raise ValueError(f"{res_dir}: CTC labels are 16-bit, but the tracks use labels above 65535")
    digits = frame_digits(len(label_frames))
    for frame, labels in enumerate(label_frames):
        mask = ctc_frame_labels(np.asarray(labels), frame, tracks).astype(np.uint16)
        tifffile.imwrite(res_dir / f"mask{frame:0{digits}d}.tif", mask, compression="zlib")
    (res_dir / "res_track.txt").write_text("".join(f"{line}\n" for line in lines))
    return res_dir


def validate_res(res_dir: str | Path) -> bool:
    """Whether a CTC result folder is valid (py-ctcmetrics' ``validate_sequence``)."""
    with contextlib.redirect_stdout(io.StringIO()):  # it prints progress
        return bool(validate_sequence(str(res_dir), threads=1)["Valid"])


def score_ctc(gt_dir: str | Path, res_dir: str | Path, metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """CTC metrics of a result folder against a ground-truth folder (``XX_GT``), as floats.

    SEG is left out when the ground truth has no ``SEG`` folder, and a metric the package
    cannot compute (BC(2) of a movie without divisions) is left out.
    """
    metrics = [m for m in metrics if m != "SEG" or (Path(gt_dir) / "SEG").is_dir()]
    comp, ref, traj, segm, _, valid = load_data(
        str(res_dir), str(gt_dir), trajectory_data=True, segmentation_data="SEG" in metrics, threads=1
    )
    if not valid:
        raise CellsegError(f"{res_dir} is not a valid CTC result (res_track.txt disagrees with the masks)")
    results = calculate_metrics(comp, ref, traj, segm, metrics=list(metrics), is_valid=valid)
    return {m: float(results[m]) for m in metrics if results[m] is not None}
