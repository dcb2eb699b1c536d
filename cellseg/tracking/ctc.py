"""Cell Tracking Challenge folders: a simple writer, the validator and the metrics.

The metrics are those of py-ctcmetrics (``ctc_metrics``), the CTC's own definitions:
TRA, DET, LNK, BC(i) and SEG from a result folder (``maskNNN.tif`` + ``res_track.txt``)
against a ground-truth folder (``TRA/man_trackNNN.tif`` + ``TRA/man_track.txt``,
``SEG/man_segNNN.tif``).
"""

from __future__ import annotations

import contextlib
import io
import re
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


_TRA_MASK = re.compile(r"^man_track(\d+)\.tiff?$")


def check_ground_truth(gt_dir: str | Path) -> tuple[int, tuple[int, ...]]:
    """Frame count and frame shape of a CTC ground truth (``XX_GT``), or one line that says
    what is wrong with it, before any movie is segmented: ``TRA/man_track.txt`` must be
    ``L B E P`` integers (parents among the labels), ``TRA/man_trackNNN.tif`` numbered
    0..N-1, the first of them a 2-D integer image."""
    tra = Path(gt_dir) / "TRA"
    table = tra / "man_track.txt"
    if not table.is_file():
        raise CellsegError(f"{table}: not found; a CTC ground truth lists its tracks there (L B E P per line)")
    labels, parents = set(), set()
    for number, line in enumerate(table.read_text(errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            label, begin, end, parent = map(int, fields)
        except ValueError:  # not four integers
            label = begin = end = parent = -1
        if label < 1 or not 0 <= begin <= end or parent < 0:
            raise CellsegError(
                f"{table}: line {number} is not 'L B E P' (four integers, L >= 1, B <= E): {line[:60]!r}"
            )
        labels.add(label)
        parents.add(parent)
    if not labels:
        raise CellsegError(f"{table}: no tracks; a CTC ground truth has one 'L B E P' line per track")
    if parents - labels - {0}:
        raise CellsegError(f"{table}: parent {min(parents - labels - {0})} is not a track of the file")
    masks = {int(m[1]): p for p in tra.iterdir() if (m := _TRA_MASK.match(p.name))}
    numbers = sorted(masks)
    if not numbers:
        raise CellsegError(f"{tra}: no man_trackNNN.tif masks; a CTC ground truth has one per frame")
    if numbers != list(range(len(numbers))):
        raise CellsegError(f"{tra}: man_trackNNN.tif numbered {numbers[0]}..{numbers[-1]} with gaps; expected 0..N-1")
    first = masks[0]
    try:
        with tifffile.TiffFile(first) as tif:
            shape, dtype = tif.series[0].shape, tif.series[0].dtype
    except Exception as err:  # a damaged TIFF raises many kinds
        raise CellsegError(f"{first}: cannot be read ({type(err).__name__}); replace it") from err
    if len(shape) != 2 or not np.issubdtype(dtype, np.integer):
        raise CellsegError(f"{first}: a CTC mask is a 2-D integer image, this is {dtype} of shape {shape}")
    return len(numbers), tuple(shape)


def score_ctc(gt_dir: str | Path, res_dir: str | Path, metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """CTC metrics of a result folder against a ground-truth folder (``XX_GT``), as floats.

    SEG is left out when the ground truth has no ``SEG`` folder, and a metric the package
    cannot compute (BC(2) of a movie without divisions) is left out.
    """
    metrics = [m for m in metrics if m != "SEG" or (Path(gt_dir) / "SEG").is_dir()]
    table = Path(res_dir) / "res_track.txt"
    if table.is_file() and not table.read_text().strip():  # py-ctcmetrics fails on a zero-size array
        raise CellsegError(
            f"{res_dir}: no cell was found in any frame, so there is nothing to score; look at a frame's "
            "probabilities (save_prob=true) and the post-processing options"
        )
    try:
        comp, ref, traj, segm, _, valid = load_data(
            str(res_dir), str(gt_dir), trajectory_data=True, segmentation_data="SEG" in metrics, threads=1
        )
        if not valid:
            raise CellsegError(f"{res_dir} is not a valid CTC result (res_track.txt disagrees with the masks)")
        results = calculate_metrics(comp, ref, traj, segm, metrics=list(metrics), is_valid=valid)
    except CellsegError:
        raise
    except Exception as err:  # py-ctcmetrics asserts, and damaged masks raise many kinds
        detail = str(err).splitlines()[0][:150] if str(err) else ""
        raise CellsegError(
            f"gt={gt_dir}: cannot score {Path(res_dir).name} against it ({type(err).__name__}: {detail}); "
            "check its TRA and SEG masks"
        ) from err
    return {m: float(results[m]) for m in metrics if results[m] is not None}
