"""Test a trained checkpoint on a whole Cell Tracking Challenge sequence it did not choose.

After training, ``data.test_sequence`` (a folder like ``ctc/Fluo-N2DH-GOWT1/02`` with its
``02_GT`` beside it) is segmented and tracked the way ``predict.py`` does it, and scored by
py-ctcmetrics: DET from the tracking markers of every frame (misses, merges and false
cells over the whole movie), SEG from the reference nuclei of ``02_GT/SEG`` (partial
annotations count only their annotated nuclei, as the challenge's SEG does), TRA.

Reference masks of frames that trained or validated the model, or lie within ``gap``
time points of one, are left out of SEG (a linked folder of the others is scored), so SEG
counts only frames that chose nothing. DET and TRA need the whole movie and still include
those few frames.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from pathlib import Path

from cellseg.data.datamodule import near
from cellseg.errors import CellsegError
from cellseg.inference.inputs import plan_sources
from cellseg.inference.predictor import Predictor
from cellseg.inference.run import OutputOptions, PredictionRun
from cellseg.outputs.atomic import remove
from cellseg.tracking.tracker import OverlapTracker

log = logging.getLogger(__name__)
_SEG = re.compile(r"man_seg_?(\d+)\.tif+$")


def ground_truth_of(sequence: Path) -> Path:
    """The ``XX_GT`` folder beside a CTC sequence folder ``XX``."""
    gt = sequence.parent / f"{sequence.name}_GT"
    if not sequence.is_dir() or not (gt / "TRA").is_dir():
        raise CellsegError(
            f"data.test_sequence={sequence}: not a Cell Tracking Challenge sequence folder with "
            f"{gt.name}/TRA beside it; point it at e.g. ctc/Fluo-N2DH-GOWT1/02 or set it to null"
        )
    return gt


def unseen_reference(gt: Path, sequence: str, seen: Iterable[str], gap: int, out: Path) -> tuple[Path, list[int]]:
    """A ground-truth folder of links: all of ``TRA``, and the ``SEG`` masks of frames not
    within ``gap`` of a ``seen`` frame (named ``<sequence>_tNNN``). Returns it and the times kept."""
    seen = list(seen)
    remove(out)
    out.mkdir(parents=True)
    os.symlink((gt / "TRA").resolve(), out / "TRA", target_is_directory=True)
    kept = []
    for path in sorted((gt / "SEG").glob("man_seg*.tif*")) if (gt / "SEG").is_dir() else []:
        match = _SEG.match(path.name)
        if match and not near(f"{sequence}_t{int(match[1]):03d}", seen, gap):
            (out / "SEG").mkdir(exist_ok=True)
            os.symlink(path.resolve(), out / "SEG" / path.name)
            kept.append(int(match[1]))
    return out, kept


def score_sequence(ckpt: Path, sequence: str | Path, seen: Iterable[str], gap: int, out_dir: Path) -> dict:
    """Segment, track and score ``sequence`` with ``ckpt``; outputs go to ``out_dir``.

    The tracker has its ``conf/tracker/overlap.yaml`` defaults; everything else is the
    checkpoint's (threshold, normalization, post-processing), as a user's ``predict.py``.
    """
    sequence = Path(sequence).expanduser()
    gt = ground_truth_of(sequence)
    reference, kept = unseen_reference(gt, sequence.name, seen, gap, out_dir / "unseen_GT")
    log.info("Testing on %s: SEG on the reference masks of frames %s (%d frames)", sequence, kept, len(kept))
    options = OutputOptions(save_prob=False, save_overlay=False, save_rois=False, overwrite=True)
    run = PredictionRun(Predictor(ckpt), out_dir, options, None, OverlapTracker, reference)
    stats = run.run(plan_sources(str(sequence), True, None))
    if stats.failed or not stats.tracking_metrics:
        raise CellsegError(f"data.test_sequence={sequence}: could not be segmented (see above)")
    scores = next(iter(stats.tracking_metrics.values()))
    return {**scores, "seg_frames": kept, "frames": stats.frames, "sequence": str(sequence)}
