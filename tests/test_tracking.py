"""Tracking: exact track recovery on synthetic movies, CTC scoring, tables, configs."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hydra.utils import instantiate
from omegaconf import OmegaConf
from scipy.optimize import linear_sum_assignment

from cellseg.bench.movie import packed_frames
from cellseg.data.synthetic_movie import generate_movie
from cellseg.errors import CellsegError
from cellseg.tracking.ctc import check_ground_truth, frame_digits, score_ctc, validate_res, write_ctc_folder
from cellseg.tracking.tables import (
    TRACK_COLUMNS,
    ctc_frame_labels,
    ctc_res_track_lines,
    napari_tracks,
    tracks_table,
)
from cellseg.tracking.tracker import NoTracker, OverlapTracker, Track, assign_pairs, count_codes

from .conftest import CONF, shared


def scramble(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Every frame's labels replaced by a random permutation of 1..n, as a segmenter would number them."""
    rng = np.random.default_rng(seed)
    out = np.zeros_like(labels)
    for t, frame in enumerate(labels):
        ids = np.unique(frame[frame > 0])
        lut = np.zeros(int(frame.max()) + 1, labels.dtype)
        lut[ids] = rng.permutation(ids.size) + 1
        out[t] = lut[frame]
    return out


def track(tracker: OverlapTracker, labels: np.ndarray, frames: np.ndarray | None = None) -> np.ndarray:
    """Run the tracker over a movie, one frame at a time."""
    images = [None] * len(labels) if frames is None else frames
    return np.stack([tracker.update(lab, img) for lab, img in zip(labels, images)])


def id_map(gt: np.ndarray, pred: np.ndarray) -> dict[int, set[int]]:
    """Ground-truth track id -> the set of predicted ids that cover it (by overlap) in its frames."""
    found: dict[int, set[int]] = {}
    for g, p in zip(gt, pred):
        for gid in np.unique(g[g > 0]).tolist():
            found.setdefault(gid, set()).update(np.unique(p[g == gid]).tolist())
    return found


def one_to_one(gt: np.ndarray, pred: np.ndarray) -> dict[int, int]:
    """The GT -> predicted id map, asserting every GT track is exactly one predicted track and vice versa."""
    found = id_map(gt, pred)
    assert all(len(ids) == 1 and 0 not in ids for ids in found.values()), found
    mapping = {gid: next(iter(ids)) for gid, ids in found.items()}
    assert len(set(mapping.values())) == len(mapping), mapping
    return mapping


def write_track_file(path: Path, rows) -> None:
    """``L B E P`` lines, as in ``man_track.txt`` and ``res_track.txt``."""
    path.write_text("".join(" ".join(map(str, row)) + "\n" for row in rows))


def write_masks(res_dir: Path, labels: np.ndarray, rows) -> Path:
    """Label frames as they are, with their track rows, as a CTC result folder."""
    res_dir.mkdir()
    for t, frame in enumerate(labels):
        tifffile.imwrite(res_dir / f"mask{t:03d}.tif", frame)
    write_track_file(res_dir / "res_track.txt", rows)
    return res_dir


def write_ctc_gt(gt_dir: Path, labels: np.ndarray, tracks: list[tuple[int, int, int, int]]) -> Path:
    """A CTC ground-truth folder: ``TRA/man_trackNNN.tif`` + ``man_track.txt``, ``SEG/man_segNNN.tif``."""
    digits = frame_digits(len(labels))
    for sub, stem in (("TRA", "man_track"), ("SEG", "man_seg")):
        (gt_dir / sub).mkdir(parents=True)
        for t, frame in enumerate(labels):
            tifffile.imwrite(gt_dir / sub / f"{stem}{t:0{digits}d}.tif", frame.astype(np.uint16))
    write_track_file(gt_dir / "TRA" / "man_track.txt", tracks)
    return gt_dir


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_moving_cells_keep_their_ids(seed):
    frames, labels, gt_tracks = generate_movie(seed=seed)
    tracker = OverlapTracker()
    pred = track(tracker, scramble(labels, seed), frames)
    mapping = one_to_one(labels, pred)
    by_id = {t.track_id: t for t in tracker.tracks()}
    assert len(by_id) == len(gt_tracks)
    for gid, start, stop, _ in gt_tracks:
        row = by_id[mapping[gid]]
        assert (row.first_frame, row.last_frame, row.frames_present) == (start, stop, stop - start + 1)
        assert row.mean_area == pytest.approx((labels == gid).sum() / (stop - start + 1))
        assert np.isfinite(row.mean_intensity) and row.mean_intensity > np.median(frames)


@pytest.mark.parametrize("min_overlap", [0.0, 0.1])
def test_cells_that_moved_past_their_outline_link_by_distance(min_overlap):
    """Two small cells each move 10 px, farther than their size: no overlap, so the nearer
    cell links, also when min_overlap=0 (where every pair once counted as overlapping)."""
    yy, xx = np.mgrid[:40, :120]
    frames = np.zeros((2, 40, 120), np.int32)
    for t, (first, second) in enumerate([(10, 40), (20, 50)]):
        frames[t][(yy - 20) ** 2 + (xx - first) ** 2 <= 9] = 1 + t  # numbered the other way round in frame 1
        frames[t][(yy - 20) ** 2 + (xx - second) ** 2 <= 9] = 2 - t
    ids = track(OverlapTracker(min_overlap=min_overlap), frames)
    assert (ids[1][20, 20], ids[1][20, 50]) == (ids[0][20, 10], ids[0][20, 40])


def test_division_ends_mother_and_starts_two_daughters():
    _, labels, gt_tracks = generate_movie(seed=3, divide_at=5)
    daughters = [row for row in gt_tracks if row[3]]
    mother = daughters[0][3]
    tracker = OverlapTracker()
    mapping = one_to_one(labels, track(tracker, scramble(labels, 3)))
    by_id = {t.track_id: t for t in tracker.tracks()}
    assert by_id[mapping[mother]].last_frame == 4
    assert len(daughters) == 2
    for gid, *_ in daughters:
        assert by_id[mapping[gid]].parent_id == mapping[mother]
        assert by_id[mapping[gid]].first_frame == 5
    assert sum(t.parent_id != 0 for t in by_id.values()) == 2

    plain = OverlapTracker(divisions=False)
    track(plain, labels)
    assert all(t.parent_id == 0 for t in plain.tracks())
    assert len(plain.tracks()) == len(tracker.tracks()) - 1  # one daughter continues the mother's id


def test_entering_and_leaving_cells_start_and_end_tracks():
    _, labels, gt_tracks = generate_movie(seed=4, n_frames=14, enter_at=3, divide_at=None)
    tracker = OverlapTracker()
    mapping = one_to_one(labels, track(tracker, labels))
    by_id = {t.track_id: t for t in tracker.tracks()}
    (entering,) = [row for row in gt_tracks if row[1] > 0]
    (leaving,) = [row for row in gt_tracks if row[2] < 13]
    assert entering[1] in (3, 4) and entering[2] == 13 and leaving[1] == 0
    for gid, start, stop, _ in (entering, leaving):
        assert (by_id[mapping[gid]].first_frame, by_id[mapping[gid]].last_frame) == (start, stop)


def test_blank_frame_is_bridged_by_gap_closing(tmp_path):
    _, labels, _ = generate_movie(seed=5, divide_at=None, enter_at=None, leave=False, blank_frames=(6,))
    tracker = OverlapTracker(gap_closing=2)
    pred = track(tracker, scramble(labels, 5))
    assert not pred[6].any()
    mapping = one_to_one(labels, pred)  # one id per cell across the blank frame
    bridged = [t for t in tracker.tracks() if t.first_frame < 6 < t.last_frame]
    assert len(bridged) == len(mapping) == len(tracker.tracks()) == 5
    for row in bridged:
        assert row.frames_present == row.last_frame - row.first_frame
        assert [(s[1], s[2]) for s in row.segments] == [(row.first_frame, 5), (7, row.last_frame)]
    # the CTC form splits each bridged track at the gap: the run after it is a child of the run before
    lines = ctc_res_track_lines(tracker.tracks())
    continuation = bridged[0].segments[1][0]
    assert f"{continuation} 7 {bridged[0].last_frame} {bridged[0].track_id}" in lines
    assert ctc_frame_labels(pred[7], 7, tracker.tracks())[pred[7] == bridged[0].track_id].tolist()[0] == continuation
    assert validate_res(write_ctc_folder(tmp_path / "01_RES", pred, tracker.tracks()))


def test_ctc_labels_of_a_movie_without_gaps_are_the_track_ids_themselves():
    _, labels, _ = generate_movie(seed=5, divide_at=None, enter_at=None, leave=False)
    tracker = OverlapTracker()
    pred = track(tracker, scramble(labels, 5))
    frame = pred[3]
    assert all(len(t.segments) == 1 for t in tracker.tracks()) and frame.max() > 1
    assert ctc_frame_labels(frame, 3, tracker.tracks()) is frame  # no pass over the frame, no copy


@pytest.mark.parametrize(("gap_closing", "bridged"), [(2, False), (3, True)])
def test_gap_longer_than_gap_closing_gives_new_tracks(gap_closing, bridged):
    _, labels, _ = generate_movie(seed=6, divide_at=None, enter_at=None, leave=False, blank_frames=(4, 5, 6))
    pred = track(OverlapTracker(gap_closing=gap_closing), labels)
    before, after = set(np.unique(pred[3])) - {0}, set(np.unique(pred[7])) - {0}
    assert len(before) == len(after) == 5
    assert (before == after) is bridged
    assert before.isdisjoint(after) is not bridged


@pytest.fixture(scope="module")
def ctc_movie(tmp_path_factory):
    """A synthetic movie with a division, an entering and a leaving cell, as a CTC ground-truth folder."""
    _, labels, gt_tracks = generate_movie(seed=7, n_frames=10, divide_at=5)
    gt_dir = write_ctc_gt(tmp_path_factory.mktemp("ctc") / "01_GT", labels, gt_tracks)
    return labels, gt_tracks, gt_dir


def test_ground_truth_as_result_scores_one(ctc_movie, tmp_path):
    labels, gt_tracks, gt_dir = ctc_movie
    res = write_masks(tmp_path / "01_RES", labels, gt_tracks)
    assert validate_res(res)
    scores = score_ctc(gt_dir, res)
    assert set(scores) == {"TRA", "DET", "LNK", "BC(2)", "SEG"}
    assert all(isinstance(v, float) for v in scores.values())
    assert scores["TRA"] == 1.0 and scores["DET"] == 1.0 and scores["SEG"] == 1.0


def test_tracker_on_scrambled_ground_truth_scores_one(ctc_movie, tmp_path):
    labels, _, gt_dir = ctc_movie
    tracker = OverlapTracker()
    res = write_ctc_folder(tmp_path / "01_RES", track(tracker, scramble(labels, 7)), tracker.tracks())
    assert validate_res(res)
    scores = score_ctc(gt_dir, res)
    assert scores == {"TRA": 1.0, "DET": 1.0, "LNK": 1.0, "BC(2)": 1.0, "SEG": 1.0}
    # a tracker that misses the division is scored below perfect
    plain = OverlapTracker(divisions=False)
    res = write_ctc_folder(tmp_path / "plain_RES", track(plain, labels), plain.tracks())
    missed = score_ctc(gt_dir, res, metrics=("TRA", "BC(2)"))
    assert missed["TRA"] < 1.0 and missed["BC(2)"] == 0.0


def test_invalid_result_is_reported(ctc_movie, tmp_path):
    labels, gt_tracks, gt_dir = ctc_movie
    last = len(labels) - 1
    wrong = [(label, start, min(stop + 1, last), parent) for label, start, stop, parent in gt_tracks]  # ends too late
    res = write_masks(tmp_path / "01_RES", labels, wrong)
    assert not validate_res(res)
    with pytest.raises(CellsegError, match="not a valid CTC result"):
        score_ctc(gt_dir, res)


def damaged_copy(gt_dir: Path, tmp_path: Path, damage) -> Path:
    """A copy of a CTC ground truth with ``damage(copy)`` applied."""
    copy = tmp_path / "01_GT"
    shutil.copytree(gt_dir, copy)
    damage(copy)
    return copy


def write_table(text: str):
    return lambda gt: (gt / "TRA" / "man_track.txt").write_text(text)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (write_table("hello world\n"), r"line 1 is not 'L B E P'.*'hello world'"),
        (write_table("1 0 9\n"), r"line 1 is not 'L B E P'"),
        (write_table("1 0 9 0.5\n"), r"line 1 is not 'L B E P'"),
        (write_table("1 5 2 0\n"), r"line 1 is not 'L B E P'"),
        (write_table("1 0 9 0\n2 3 9 7\n"), "parent 7 is not a track of the file"),
        (write_table("\n"), "no tracks"),
        (lambda gt: (gt / "TRA" / "man_track.txt").unlink(), r"man_track.txt: not found"),
        (lambda gt: (gt / "TRA" / "man_track003.tif").unlink(), r"numbered 0..9 with gaps"),
        (lambda gt: [p.unlink() for p in (gt / "TRA").glob("*.tif")], "no man_trackNNN.tif masks"),
        (lambda gt: (gt / "TRA" / "man_track000.tif").write_bytes(b"garbage"), r"man_track000.tif: cannot be read"),
        (
            lambda gt: tifffile.imwrite(gt / "TRA" / "man_track000.tif", np.zeros((8, 8), np.float32)),
            "a 2-D integer image, this is float32",
        ),
    ],
)
def test_damaged_ground_truth_is_named_before_scoring(ctc_movie, tmp_path, damage, message):
    _, _, gt_dir = ctc_movie
    with pytest.raises(CellsegError, match=message):
        check_ground_truth(damaged_copy(gt_dir, tmp_path, damage))


def test_ground_truth_check_gives_frames_and_shape(ctc_movie):
    labels, _, gt_dir = ctc_movie
    assert check_ground_truth(gt_dir) == (len(labels), labels.shape[1:])


def test_a_result_without_cells_says_so_instead_of_blaming_the_ground_truth(ctc_movie, tmp_path):
    labels, _, gt_dir = ctc_movie
    res = write_ctc_folder(tmp_path / "01_RES", np.zeros_like(labels), [])
    with pytest.raises(CellsegError, match="01_RES: no cell was found in any frame, so there is nothing to score"):
        score_ctc(gt_dir, res)


def test_a_damaged_mask_found_while_scoring_is_one_line_naming_the_ground_truth(ctc_movie, tmp_path):
    labels, gt_tracks, gt_dir = ctc_movie
    gt = damaged_copy(gt_dir, tmp_path, lambda gt: (gt / "TRA" / "man_track006.tif").write_bytes(b"garbage"))
    res = write_masks(tmp_path / "01_RES", labels, gt_tracks)
    with pytest.raises(CellsegError, match=rf"gt={gt}: cannot score 01_RES against it \(TiffFileError"):
        score_ctc(gt, res)


def two_tracks() -> list[Track]:
    """Mother 1 (frames 0-4, from (0, 0) to (3, 4) over a path of 7 px) and daughter 2 (5-6, still)."""
    mother = Track(1, 0, 0, 4, 5, (0.0, 0.0), (3.0, 4.0), path_length=7.0, area_sum=500.0, intensity_sum=10.0)
    mother.segments = [(1, 0, 4)]
    daughter = Track(2, 1, 5, 6, 2, (9.0, 9.0), (9.0, 9.0), area_sum=100.0, intensity_sum=3.0)
    daughter.segments = [(2, 5, 6)]
    return [mother, daughter]


def test_tracks_table_columns_and_values():
    table = tracks_table(two_tracks())
    assert list(table.columns) == TRACK_COLUMNS
    assert table["TRACK_ID"].tolist() == [1, 2] and table["PARENT_ID"].tolist() == [0, 1]
    assert table["TRACK_START"].tolist() == [0, 5] and table["TRACK_STOP"].tolist() == [4, 6]
    assert table["NUMBER_SPOTS"].tolist() == [5, 2]
    assert table["DIVIDES"].tolist() == [True, False] and table["DIVIDES"].dtype == bool
    assert table["TRACK_DISPLACEMENT"].tolist() == pytest.approx([5.0, 0.0])
    assert table["TRACK_MEAN_SPEED"].tolist() == pytest.approx([7.0 / 4, 0.0])
    assert table["MEAN_AREA"].tolist() == pytest.approx([100.0, 50.0])
    assert table["MEAN_INTENSITY"].tolist() == pytest.approx([2.0, 1.5])
    assert ctc_res_track_lines(two_tracks()) == ["1 0 4 0", "2 5 6 1"]


def test_napari_tracks_data_and_graph():
    import pandas as pd

    rows = pd.DataFrame(
        {"label": [2, 1, 1, 2], "frame": [6, 1, 0, 5], "centroid_y": [9.0, 1.0, 0.0, 8.0], "centroid_x": [3, 4, 5, 6]}
    )
    data, graph = napari_tracks(rows, two_tracks())
    assert data.shape == (4, 4)
    assert data[:, :2].tolist() == [[1, 0], [1, 1], [2, 5], [2, 6]]  # sorted by track, then time
    assert data[:, 2:].tolist() == [[0, 5], [1, 4], [8, 6], [9, 3]]
    assert graph == {2: [1]}


def test_no_tracker_and_configs():
    labels = np.array([[0, 3], [7, 7]], np.uint16)
    none = instantiate(OmegaConf.load(CONF / "tracker" / "none.yaml"))
    assert isinstance(none, NoTracker)
    assert none.update(labels) is labels and none.tracks() == []
    overlap = instantiate(OmegaConf.load(CONF / "tracker" / "overlap.yaml"))
    assert isinstance(overlap, OverlapTracker)
    assert (overlap.max_distance, overlap.gap_closing, overlap.divisions) == (50.0, 2, True)
    assert (overlap.division_distance, overlap.min_overlap) == (40.0, 0.1)


def test_rejects_a_change_of_frame_shape():
    tracker = OverlapTracker()
    tracker.update(np.ones((8, 8), np.uint16))
    with pytest.raises(ValueError, match="shape"):
        tracker.update(np.ones((8, 9), np.uint16))


@pytest.mark.shared_data
def test_sim_ground_truth_masks_track_almost_perfectly(tmp_path):
    """Perfect segmentation of Fluo-N2DH-SIM+ 01: the tracker's upper bound on real CTC ground truth.

    The first 32 of 65 frames (15 divisions) keep the CTC matching under ~10 s; on all 65 frames
    the scores are TRA 0.9993, DET 1.0, LNK 0.995, BC(2) 0.90 (23 of 28 divisions, no false one).
    """
    n_frames = 32
    source = shared("ctc/Fluo-N2DH-SIM+") / "01_GT"
    gt_dir = tmp_path / "01_GT"
    (gt_dir / "TRA").mkdir(parents=True)
    for t in range(n_frames):
        (gt_dir / "TRA" / f"man_track{t:03d}.tif").symlink_to(source / "TRA" / f"man_track{t:03d}.tif")
    rows = np.loadtxt(source / "TRA" / "man_track.txt", dtype=int, ndmin=2)
    rows = [(label, start, min(stop, n_frames - 1), parent) for label, start, stop, parent in rows if start < n_frames]
    write_track_file(gt_dir / "TRA" / "man_track.txt", rows)
    seg = np.stack([tifffile.imread(source / "SEG" / f"man_seg{t:03d}.tif") for t in range(n_frames)])
    tracker = OverlapTracker()
    frames = [tracker.update(lab) for lab in scramble(seg, 9)]
    res = write_ctc_folder(tmp_path / "01_RES", frames, tracker.tracks())
    scores = score_ctc(gt_dir, res, ("TRA", "DET", "BC(2)"))
    assert scores["DET"] == 1.0 and scores["TRA"] > 0.99 and scores["BC(2)"] > 0.8, scores


@pytest.mark.filterwarnings("ignore:Empty frame:UserWarning")  # frames 500-999, on purpose
def test_movie_writer_names_masks_of_a_long_movie_so_they_sort_in_time(tmp_path):
    """1001 frames: mask1000.tif would sort before mask101.tif, so every mask gets 4 digits and
    the validator reads the frames in order (a cell in frames 0-499, another in frame 1000)."""
    import pandas as pd

    from cellseg.outputs.streams import FileQueue
    from cellseg.outputs.tracks import TrackOutputs

    files, tracker = FileQueue(), OverlapTracker()
    outputs = TrackOutputs(tmp_path, "movie", files, n_frames=1001)
    for t in range(1001):
        labels = np.zeros((8, 8), np.int32)
        labels[2:5, 2:5] = 1 if t < 500 else 0
        labels[5:7, 5:7] = 2 if t == 1000 else 0
        outputs.add_frame(t, tracker.update(labels), tracker.tracks())
    files.wait()
    outputs.commit(tracker.tracks(), pd.DataFrame(columns=["label", "frame", "centroid_y", "centroid_x"]))
    files.shutdown()
    res = tmp_path / "movie_RES"
    assert sorted(p.name for p in res.glob("mask*.tif"))[:2] == ["mask0000.tif", "mask0001.tif"]
    assert validate_res(res)


def test_sparse_assignment_finds_what_a_dense_one_with_the_other_pairs_forbidden_finds():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, m = (int(v) for v in rng.integers(1, 14, size=2))
        allowed = rng.random((n, m)) < rng.uniform(0.05, 0.6)
        cost = rng.uniform(0, 2, size=(n, m))
        rows, cols = np.nonzero(allowed)
        pairs = assign_pairs(rows, cols, cost[rows, cols], (n, m))
        dense_rows, dense_cols = linear_sum_assignment(np.where(allowed, cost, 1e9))
        expected = [(r, c) for r, c in zip(dense_rows, dense_cols) if allowed[r, c]]
        assert all(allowed[r, c] for r, c in pairs)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == len(pairs)  # one to one
        assert len(pairs) == len(expected)  # as many links
        assert sum(cost[r, c] for r, c in pairs) == pytest.approx(sum(cost[r, c] for r, c in expected))


def test_a_packed_frame_is_tracked_without_a_cell_by_cell_matrix():
    """4096 cells a frame: one dense (4096, 4096) float64 matrix alone would take 128 MB; the
    per-pixel arrays of a 1024^2 frame take about 25."""
    first, second = packed_frames(side=1024, pitch=16, n_frames=2)
    tracker = OverlapTracker()
    tracker.update(first)
    tracemalloc.start()
    out = tracker.update(second)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(out, second)  # every cell moved 2 px and kept its id
    assert peak < 64 * 1024**2


@pytest.mark.parametrize("size", [1, 900, 10**7])  # counted by bincount, then by sorting
def test_overlap_codes_are_counted_as_unique_counts_them(size):
    codes = np.random.default_rng(size).integers(0, size, 5000)
    codes[:3] = size - 1  # the last code, repeated
    got, expected = count_codes(codes, size), np.unique(codes, return_counts=True)
    assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(got, expected))
    assert count_codes(codes[:0], size)[0].size == 0
