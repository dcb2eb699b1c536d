"""Run a predictor over sources (images, stacks, movies) one frame at a time: read ->
normalize -> network -> labels -> track -> measure -> write.

Memory does not grow with a movie's length: frames are read ahead one at a time, pages go
to background writers, and per-cell table rows go to ``measurements.csv`` as they come.
Every output is written under a temporary name and renamed when its source is complete;
the labels are committed last, so ``<stem>_labels.tif`` existing means that source is done
(``skip_existing``). A bad frame of a stack (blank, constant, NaN, unreadable) gets empty
labels and a warning; gap closing bridges it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import tifffile
from rich.progress import Progress

from cellseg.data.normalize import check_finite, contrast_to_noise
from cellseg.errors import CellsegError
from cellseg.evaluate import Evaluator, find_mask
from cellseg.inference.inputs import BadFrame, Source
from cellseg.inference.predictor import Predictor
from cellseg.measure import COLUMNS, measure
from cellseg.outputs.atomic import commit, remove, temp_name
from cellseg.outputs.overlays import is_overlay_of, overlay_frames, overlay_name
from cellseg.outputs.rois import RoiZip
from cellseg.outputs.streams import CsvStream, FileQueue, TiffStream
from cellseg.outputs.tracks import TrackOutputs
from cellseg.postprocess import cell_probability
from cellseg.tracking.ctc import score_ctc
from cellseg.visualize import outline_overlay

log = logging.getLogger(__name__)
TABLE_COLUMNS = [*COLUMNS[:3], "track_id", *COLUMNS[3:]]
PROB_STEPS = 1024  # <stem>_prob.tif: probabilities in steps of 1/1024


@dataclass
class OutputOptions:
    """What to write besides the labels and measurements."""

    save_prob: bool = True
    save_overlay: bool = True
    overlay_every: int = 10  # stacks: an overlay PNG every N frames (and the last frame)
    save_tracks: bool = True  # tracked movies: tracks table, napari tables, CTC folder, plots
    save_rois: bool = True  # Fiji ROI Manager zip, one polygon per cell (per frame of a stack)
    overwrite: bool = False
    skip_existing: bool = False
    min_snr: float = 8.0  # frames whose signal rises less above the noise are blank (empty labels)


@dataclass
class RunStats:
    """What the summary line reports."""

    images: int = 0
    frames: int = 0
    bad_frames: int = 0
    cells: int = 0
    tracks: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failed: list[str] = field(default_factory=list)
    metrics: dict | None = None  # with ground truth: the overall evaluation
    tracking_metrics: dict = field(default_factory=dict)  # per movie: CTC TRA, DET, ...
    unscored: list[str] = field(default_factory=list)  # why movies could not be scored against gt=


def read_ahead(frames: Iterator) -> Iterator:
    """Iterate ``frames`` with the next item read in a background thread."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        ahead = pool.submit(next, frames, None)
        while (item := ahead.result()) is not None:
            ahead = pool.submit(next, frames, None)
            yield item


def labels_dtype(first: np.ndarray, n_frames: int) -> np.dtype:
    """uint16 labels unless there are too many cells (uint32): exact for one frame; for
    stacks decided on the first frame, with room for new ids (later overflow is an error)."""
    largest = int(first.max()) if first.size else 0
    limit = 2**16 if n_frames == 1 else 2**14
    return np.dtype(np.uint32 if largest >= limit else np.uint16)


# files of the whole run, rewritten at its end: measurements.csv first
RUN_FILES = ("measurements.csv", "run.json", "report.html", "metrics.json", "roc.png")


class PredictionRun:
    """Segment (and track) every source with one predictor; files appear only when complete."""

    def __init__(
        self,
        predictor: Predictor,
        out_dir: Path,
        options: OutputOptions | None = None,
        evaluator: Evaluator | None = None,
        make_tracker: Callable[[], object] | None = None,
        ctc_gt: Path | None = None,
    ):
        self.predictor = predictor
        self.out_dir = out_dir
        self.options = options or OutputOptions()
        self.evaluator = evaluator
        self.make_tracker = make_tracker
        self.ctc_gt = ctc_gt
        self.stats = RunStats()
        self.table: CsvStream | None = None  # measurements.csv, streamed
        self.files = FileQueue()

    def prepare(self) -> Path:
        """Create the output folder, check it is writable; return the measurements path."""
        self.created = not self.out_dir.exists()
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise CellsegError(f"{self.out_dir}: is a file, not a folder; set output=DIR to a folder for the outputs")
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            probe = self.out_dir / ".cellseg_write_test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as err:
            raise CellsegError(
                f"{self.out_dir}: output folder cannot be written ({err.strerror}); set output=DIR"
            ) from err
        existing = [self.out_dir / name for name in RUN_FILES if (self.out_dir / name).exists()]
        check_kinds(existing)
        if existing and not (self.options.overwrite or self.options.skip_existing):
            raise CellsegError(
                f"{existing[0]}: exists already; pass skip_existing=true to finish an interrupted run, "
                "overwrite=true to redo it, or choose another output=DIR"
            )
        self.earlier_scores = earlier_scored_names(self.out_dir) if self.options.overwrite else set()
        self.outputs_of_run: set[Path] = set()  # every input's planned outputs (run() fills it)
        return self.out_dir / RUN_FILES[0]

    def check_same_run(self, sources: list[Source]) -> None:
        """``skip_existing`` finishes the run ``run.json`` records: refuse inputs that leave out
        one of its sources, whose rows ``measurements.csv`` would lose."""
        record = self.out_dir / "run.json"
        if not (self.options.skip_existing and record.exists()):
            return
        try:
            earlier = [s["name"] for s in json.loads(record.read_text())["sources"]]
        except (ValueError, KeyError, TypeError) as err:
            raise CellsegError(
                f"{record}: cannot be read ({type(err).__name__}); skip_existing=true needs the record of the "
                "earlier run: pass overwrite=true to redo it, or choose another output=DIR"
            ) from err
        missing = sorted(set(earlier) - {source.name for source in sources})
        if missing:
            raise CellsegError(
                f"{record}: the run there also segmented {', '.join(missing[:3])}"
                f"{' ...' if len(missing) > 3 else ''}, which this input does not hold; skip_existing=true "
                "finishes the same run: pass the same input=, or choose another output=DIR"
            )

    def clear_stale_scores(self) -> None:
        """``overwrite=true``: scores of the earlier run that this run did not write again
        (``metrics.json``, ``roc.png``, ``<name>_errors.png``) describe replaced outputs; remove them."""
        scored = set(self.evaluator.per_image) if self.evaluator is not None else set()
        for name in self.earlier_scores - scored:
            (self.out_dir / f"{name}_errors.png").unlink(missing_ok=True)
        if self.stats.metrics is None:
            remove(self.out_dir / "roc.png")
            if not self.stats.tracking_metrics:
                remove(self.out_dir / "metrics.json")

    def run(self, sources: list[Source]) -> RunStats:
        """Process all sources; one that fails is reported on stderr and skipped. When none
        succeeds, nothing is written: the error is raised (one source) or summed up."""
        measurements = self.prepare()
        self.check_same_run(sources)
        self.outputs_of_run = {path for source in sources if not source.error for path in self.planned(source)}
        self.table = CsvStream(measurements, TABLE_COLUMNS)
        errors = []
        try:
            with Progress(transient=True) as progress:
                task = progress.add_task("images", total=len(sources), visible=len(sources) > 1)
                for source in sources:
                    try:
                        self.process(source, progress)
                    except CellsegError as err:
                        if len(sources) > 1:
                            print(f"cellseg: error: {err}", file=sys.stderr)
                        errors.append(str(err))
                        self.stats.failed.append(source.label)
                    progress.advance(task)
        except BaseException:
            self.table.discard()
            raise
        finally:
            self.files.shutdown()
        if errors and not (self.stats.images or self.stats.skipped):
            self.table.discard()
            if self.created and not any(self.out_dir.iterdir()):
                self.out_dir.rmdir()
            raise CellsegError(errors[0] if len(errors) == 1 else f"all {len(errors)} inputs failed (reported above)")
        self.table.commit()
        if self.evaluator is not None and self.evaluator.per_image:
            self.stats.metrics = self.evaluator.finish()
        if self.options.overwrite:
            self.clear_stale_scores()
        return self.stats

    def tracked(self, source: Source) -> bool:
        """Whether this source is tracked (a stack or movie, with a tracker configured)."""
        return self.make_tracker is not None and source.n_frames > 1

    def planned(self, source: Source) -> list[Path]:
        """The final paths this source writes (labels last)."""
        out, stem, opts = self.out_dir, source.name, self.options
        paths = []
        if opts.save_prob:
            paths.append(out / f"{stem}_prob.tif")
        if opts.save_overlay:
            paths += [self.overlay_path(source, t) for t in sorted(overlay_frames(source.n_frames, opts.overlay_every))]
        if self.tracked(source) and opts.save_tracks:
            paths += TrackOutputs.paths(out, stem)
        if opts.save_rois:
            paths.append(out / f"{stem}_rois.zip")
        return [*paths, out / f"{stem}_labels.tif"]

    def remove_stale_outputs(self, source: Source) -> None:
        """``overwrite=true``: what an earlier run wrote for this source and this run does not
        write again (overlays of other frames, a probability, ROI or tracks file it no longer
        saves) described the replaced labels; remove it. What another input of this run
        writes stays: it may own a look-alike name (``pos_t001_overlay.png``)."""
        stem = source.name
        candidates = [p for p in self.out_dir.iterdir() if is_overlay_of(stem, p.name)]
        candidates += [self.out_dir / f"{stem}_prob.tif", self.out_dir / f"{stem}_rois.zip"]
        candidates += TrackOutputs.paths(self.out_dir, stem)
        for path in set(candidates) - self.outputs_of_run:  # this source's planned outputs among them
            remove(path)

    def overlay_path(self, source: Source, index: int) -> Path:
        return self.out_dir / overlay_name(source.name, source.n_frames, index)

    def process(self, source: Source, progress: Progress | None = None) -> None:
        """Segment one source frame by frame, with a progress bar over the frames of a stack."""
        if source.error:
            raise CellsegError(source.error)
        planned = self.planned(source)
        labels_path = planned[-1]
        if self.options.skip_existing and labels_path.exists():
            self.table.add(self.remeasure(source, labels_path))
            self.stats.skipped += 1
            if self.tracked(source) and self.ctc_gt is not None:
                self.score_tracks(source.name, TrackOutputs.res_path(self.out_dir, source.name))
            return
        existing = [p for p in planned if p.exists()]
        check_kinds(existing, folders=[TrackOutputs.res_path(self.out_dir, source.name)])
        # without its labels (committed last) a source was interrupted: skip_existing redoes it
        if existing and not (self.options.overwrite or self.options.skip_existing):
            raise CellsegError(
                f"{existing[0]}: exists already; pass overwrite=true to replace it or skip_existing=true to keep it"
            )
        writer = SourceWriter(self, source)
        start = time.perf_counter()
        frame_task = progress.add_task(source.name, total=source.n_frames) if progress and source.n_frames > 1 else None
        try:
            self.segment_frames(source, writer, progress, frame_task)
            writer.commit()
            if self.options.overwrite:
                self.remove_stale_outputs(source)
        except BaseException:
            writer.discard()
            raise
        finally:
            if frame_task is not None:
                progress.remove_task(frame_task)
        self.stats.images += 1
        self.stats.frames += source.n_frames
        self.stats.seconds += time.perf_counter() - start
        if writer.tracks is not None:
            self.stats.tracks += writer.tracks.count
            if self.ctc_gt is not None:
                self.score_tracks(source.name, writer.tracks.res)

    def score_tracks(self, name: str, res: Path) -> None:
        """CTC scores of a movie's committed ``_RES`` folder against ``gt=``; a failure leaves
        the movie's outputs complete and only its scores missing."""
        if not res.is_dir():  # a kept movie written with save_tracks=false
            self.stats.unscored.append(f"{res}: missing, so the kept movie cannot be scored; pass overwrite=true")
            return
        try:
            self.stats.tracking_metrics[name] = score_ctc(self.ctc_gt, res)
        except CellsegError as err:
            self.stats.unscored.append(str(err))

    def scorer(self, source: Source) -> Callable | None:
        """``score(index, normalized, prob, labels)`` for the frames of ``source`` against
        ``gt=`` (``prob`` None: labels of an earlier run), or None without ground truth."""
        if self.evaluator is None:
            return None
        if len(source.paths) > 1:
            return lambda index, normalized, prob, labels: self.score_movie_frame(
                source.paths[index], normalized, prob, labels
            )
        truth = []  # the masks of a one-file source, read at its first scored frame

        def score(index: int, normalized: np.ndarray, prob: np.ndarray | None, labels: np.ndarray) -> None:
            if not truth:
                truth.append(self.evaluator.masks_for(source.paths[0], source.n_frames, labels.shape))
            stem = source.name if source.n_frames == 1 else f"{source.name}_t{index:03d}"
            self.evaluator.add(stem, normalized, truth[0][index], prob, labels)

        return score

    def segment_frames(self, source: Source, writer: SourceWriter, progress, frame_task) -> None:
        """The per-frame pipeline of one source."""
        score = self.scorer(source)
        for index, raw in read_ahead(source.frames()):
            name = source.label if source.n_frames == 1 else f"{source.label} frame {index}"
            try:
                if isinstance(raw, BadFrame):
                    raise CellsegError(str(raw))
                check_frame(raw, name, writer.shape, self.options.min_snr)
                normalized = self.predictor.normalize(raw, name)
            except CellsegError as err:
                if source.n_frames == 1:
                    raise
                print(f"cellseg: warning: {err}; it gets empty labels", file=sys.stderr)
                self.stats.bad_frames += 1
                writer.add_bad(index)
            else:
                prob = self.predictor.predict_normalized(normalized)
                cell = cell_probability(prob)  # once: for min_prob, the prob TIFF and mean_prob
                labels = self.predictor.labels(prob, cell)
                writer.add(index, raw, normalized, cell, labels)
                if score is not None:
                    score(index, normalized, prob, labels)
            if frame_task is not None:
                progress.advance(frame_task)

    def score_movie_frame(
        self, path: Path, normalized: np.ndarray, prob: np.ndarray | None, labels: np.ndarray
    ) -> None:
        """Score one frame of a movie folder against its own mask, where ``gt=`` has one."""
        try:
            find_mask(path, self.evaluator.gt_dir)
        except CellsegError:
            return  # frames without a mask are not scored
        truth = self.evaluator.masks_for(path, 1, labels.shape)[0]
        self.evaluator.add(path.stem, normalized, truth, prob, labels)

    def remeasure(self, source: Source, labels_path: Path) -> pd.DataFrame:
        """Rows of an already finished source, measured again from its labels, raw frames and
        (where it was saved) probabilities; with ``gt=``, its labels are scored as well."""
        prob_path = self.out_dir / f"{source.name}_prob.tif"
        redo = "delete it or pass overwrite=true to segment the source again"

        def page(pages, index: int, path: Path, dtype) -> np.ndarray:
            try:
                return np.squeeze(pages[index].asarray()).astype(dtype)
            except Exception as err:  # tifffile and its codecs raise many kinds for a damaged file
                raise CellsegError(f"{path}: page {index} unreadable ({err}); {redo}") from err

        rows = []
        score = self.scorer(source)
        with ExitStack() as stack:
            stacks = {}
            for path in (labels_path, prob_path) if prob_path.exists() else (labels_path,):
                try:
                    stacks[path] = stack.enter_context(tifffile.TiffFile(path)).series[0].pages
                except Exception as err:  # not a TIFF, truncated
                    raise CellsegError(f"{path}: existing outputs unreadable ({err}); {redo}") from err
                if len(stacks[path]) != source.n_frames:
                    raise CellsegError(
                        f"{path}: {len(stacks[path])} pages for {source.n_frames} frames: the outputs of "
                        f"another image; {redo}"
                    )
            for index, raw in source.frames():
                if isinstance(raw, BadFrame):
                    continue
                labels = page(stacks[labels_path], index, labels_path, np.int64)
                prob = page(stacks[prob_path], index, prob_path, np.float32) if prob_path in stacks else None
                if labels.shape != raw.shape or (prob is not None and prob.shape != raw.shape):
                    raise CellsegError(
                        f"{labels_path}: frame {index} has shape {labels.shape}, its source {raw.shape}: "
                        f"the outputs of another image; {redo}"
                    )
                rows.append(table_rows(labels, raw, source, index, self.tracked(source), prob))
                if score is not None:
                    self.score_earlier(score, index, raw, labels, source)
        log.info("%s: labels exist (skip_existing=true): measured again, not segmented", labels_path)
        return pd.concat(rows) if rows else pd.DataFrame(columns=TABLE_COLUMNS)

    def score_earlier(self, score: Callable, index: int, raw: np.ndarray, labels: np.ndarray, source: Source) -> None:
        """Score a frame an earlier run segmented, unless it was a bad frame then (not scored)."""
        name = source.label if source.n_frames == 1 else f"{source.label} frame {index}"
        try:
            check_frame(raw, name, labels.shape, self.options.min_snr)
            normalized = self.predictor.normalize(raw, name)
        except CellsegError:
            return
        score(index, normalized, None, labels.astype(np.int32))


def check_kinds(existing: list[Path], folders: Sequence[Path] = ()) -> None:
    """Refuse an output name taken by a folder where cellseg writes a file, or the reverse:
    replacing it would fail half-way (or delete a folder of someone's files)."""
    for path in existing:
        wanted = "folder" if path in folders else "file"
        if path.is_dir() != (wanted == "folder"):
            raise CellsegError(
                f"{path}: is a {'folder' if path.is_dir() else 'file'} where cellseg writes a {wanted}; "
                "move it away or choose another output=DIR"
            )


def earlier_scored_names(out_dir: Path) -> set[str]:
    """The images an earlier run's ``metrics.json`` scored one by one, whose ``<name>_errors.png``
    files are in ``out_dir`` (a name with a folder in it is not one of cellseg's)."""
    try:
        names = json.loads((out_dir / "metrics.json").read_text()).get("per_image", {})
    except (OSError, ValueError, AttributeError):  # none, damaged, or a tracking report
        return set()
    return {n for n in names if isinstance(n, str) and n == Path(n).name and (out_dir / f"{n}_errors.png").is_file()}


def check_frame(raw: np.ndarray, name: str, shape: tuple[int, int] | None, min_snr: float) -> None:
    """Refuse a frame that cannot be segmented: wrong size, NaN or infinite pixels, or no
    signal above the noise (percentile normalization would stretch noise into 'cells')."""
    if raw.ndim != 2:
        raise CellsegError(f"{name}: expected a 2-D frame, got shape {raw.shape}")
    if shape is not None and raw.shape != shape:
        raise CellsegError(f"{name}: frame of shape {raw.shape} in a movie of {shape} frames")
    check_finite(raw, name, "replace them (e.g. by 0) before segmenting")
    snr = contrast_to_noise(raw)
    if snr < min_snr:
        raise CellsegError(
            f"{name}: no signal above the noise (brightest pixels {snr:.1f} noise sd above the median, "
            f"min_snr={min_snr:g}); a blank or dark frame"
        )


def table_rows(
    labels: np.ndarray, raw: np.ndarray, source: Source, index: int, tracked: bool, prob: np.ndarray | None
) -> pd.DataFrame:
    """Measurements of one frame, with ``track_id`` (the label) for tracked movies."""
    rows = measure(labels, raw, source.name, index, prob)
    rows.insert(3, "track_id", rows["label"] if tracked else pd.array([pd.NA] * len(rows), dtype="Int64"))
    return rows


class SourceWriter:
    """The outputs of one source, fed frame by frame, committed or discarded together."""

    def __init__(self, run: PredictionRun, source: Source):
        self.run, self.source = run, source
        self.opts = run.options
        self.shape: tuple[int, int] | None = None
        self.labels: TiffStream | None = None
        self.prob: TiffStream | None = None
        self.rows_start = run.table.tell()  # this source's rows in measurements.csv start here
        self.pending_bad: list[int] = []
        self.overlays = overlay_frames(source.n_frames, self.opts.overlay_every) if self.opts.save_overlay else set()
        self.overlay_tmps: list[tuple[Path, Path]] = []
        self.tracker = run.make_tracker() if run.tracked(source) else None
        tracked = self.tracker is not None
        self.tracks = TrackOutputs(run.out_dir, source.name, run.files, source.n_frames) if tracked else None
        self.rois_path = run.out_dir / f"{source.name}_rois.zip"
        self.rois = RoiZip(temp_name(self.rois_path)) if self.opts.save_rois else None

    def _open(self, labels: np.ndarray) -> None:
        self.shape = labels.shape
        n, out, stem = self.source.n_frames, self.run.out_dir, self.source.name
        self.labels = TiffStream(out / f"{stem}_labels.tif", n, labels.shape, labels_dtype(labels, n))
        if self.opts.save_prob:
            self.prob = TiffStream(out / f"{stem}_prob.tif", n, labels.shape, np.float16)
        for index in self.pending_bad:  # bad frames before the first good one
            self._write_empty(index)
        self.pending_bad = []

    def add(self, index: int, raw: np.ndarray, normalized: np.ndarray, cell: np.ndarray, labels: np.ndarray) -> None:
        """One segmented frame, with its cell probability (:func:`cell_probability`)."""
        if self.labels is None:  # first: the tracker sees the bad frames before this one first
            self._open(labels)
        if self.tracker is not None:
            labels = self.tracker.update(labels, raw)
        if labels.size and int(labels.max()) > np.iinfo(self.labels.dtype).max:
            raise CellsegError(
                f"{self.source.label} frame {index}: label {int(labels.max())} does not fit {self.labels.dtype}; "
                "split the stack into shorter ones"
            )
        self.labels.add(labels)
        if self.prob is not None:
            self.prob.add(stored_probability(cell))
        if index in self.overlays:
            final = self.run.overlay_path(self.source, index)
            tmp = temp_name(final)
            self.run.files.submit(write_overlay, tmp, normalized, labels)
            self.overlay_tmps.append((tmp, final))
        if self.tracks is not None:
            self.tracks.add_frame(index, labels, self.tracker.tracks())
        if self.rois is not None:  # names = labels (track ids); in order, on the one writer thread
            self.run.files.submit(self.rois.add_frame, labels, index if self.source.n_frames > 1 else None)
        rows = table_rows(labels, raw, self.source, index, self.tracker is not None, cell)
        self.run.table.add(rows)
        self.run.stats.cells += len(rows)

    def add_bad(self, index: int) -> None:
        """A frame that could not be segmented: empty labels, and the tracker sees an empty frame."""
        if self.shape is None:
            self.pending_bad.append(index)
            return
        self._write_empty(index)

    def _write_empty(self, index: int) -> None:
        empty = np.zeros(self.shape, self.labels.dtype)
        if self.tracker is not None:
            self.tracker.update(empty)
        self.labels.add(empty)
        if self.prob is not None:
            self.prob.add(np.zeros(self.shape, np.float16))
        if self.tracks is not None:
            self.tracks.add_frame(index, empty, self.tracker.tracks())

    def commit(self) -> None:
        """Everything written; rename to final names, labels last."""
        if self.labels is None:
            raise CellsegError(f"{self.source.label}: no frame could be segmented (see the warnings above)")
        self.run.files.wait()
        if self.prob is not None:
            self.prob.close()
        for tmp, final in self.overlay_tmps:
            tmp.replace(final)
        if self.rois is not None:
            self.rois.close()
            commit(self.rois.path, self.rois_path)
        if self.tracks is not None:
            self.tracks.commit(self.tracker.tracks(), self.table())
        self.labels.close()

    def discard(self) -> None:
        """A failure: remove every temporary file of this source; final names are untouched."""
        try:
            self.run.files.wait()
        except Exception:  # the original failure is what the user must see
            log.debug("a background write failed while discarding", exc_info=True)
        for stream in (self.prob, self.labels):
            if stream is not None:
                stream.close(keep=False)
        for tmp, _ in self.overlay_tmps:
            tmp.unlink(missing_ok=True)
        self.run.table.truncate(self.rows_start)
        if self.rois is not None:
            self.rois.close()
            remove(self.rois.path)
        if self.tracks is not None:
            self.tracks.discard()

    def table(self) -> pd.DataFrame:
        """This source's rows of measurements.csv, read back."""
        return self.run.table.read_from(self.rows_start)


def stored_probability(cell: np.ndarray) -> np.ndarray:
    """The cell probability as ``<stem>_prob.tif`` holds it: float16 in steps of 1/1024. The
    low bits of a full float16 mantissa are noise that zlib cannot compress: on a GOWT1
    frame 1.8 MB and 18 ms per page, against 0.36 MB and 8 ms in these steps."""
    return (np.rint(cell * PROB_STEPS) * (1 / PROB_STEPS)).astype(np.float16)


def write_overlay(tmp: Path, normalized: np.ndarray, labels: np.ndarray) -> None:
    """Outline overlay PNG (to a temporary name; committed with its source). zlib level 1:
    a 1024x1024 GOWT1 overlay in 45 ms instead of 160 ms at the default level 6, 20 % larger."""
    iio.imwrite(tmp, outline_overlay(normalized, labels), extension=".png", compress_level=1)
