"""Online tracking: each instance-label frame is relabelled with track ids as it arrives.

Frame t-1 -> t: every (track seen at t-1, object) pair gets a cost, ``1 - IoU`` where the
IoU is above 0 and reaches ``min_overlap``, else ``1 + distance / max_distance`` (centroid distance alone,
ranked after every overlap); pairs farther apart than ``max_distance`` are never linked; one
global one-to-one assignment over the pairs within reach (k-d trees find them; scipy's
sparse LAPJV assigns them, so memory follows the candidate pairs, not the product of the
frames' cell counts). Then, in order:

* division: a track seen at t-1 that did not continue as a cell of its own size, with two
  objects of about half its area (``DAUGHTER_AREA`` each, ``DAUGHTERS_AREA`` together)
  within ``division_distance`` of its centroid (unlinked, or one of them linked to it),
  ends at t-1; both objects start new tracks whose ``parent_id`` is that track (Cell
  Tracking Challenge convention: a daughter never continues her mother's id);
* gap closing: objects still unlinked are assigned to tracks lost at most ``gap_closing``
  frames ago (centroid distance <= ``max_distance``), which keep their id; the run after
  the gap reserves one more id, its label in the CTC format (see ``Track.segments``);
* the rest start new tracks (cells entering the field or appearing).

Tracks unseen for more than ``gap_closing`` frames are closed. Memory: one summary row per
track, and of the previous frame only its object index per pixel and per-object stats.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from scipy.spatial import cKDTree

DAUGHTER_AREA = (0.25, 0.75)  # each daughter's area as a fraction of its mother's
DAUGHTERS_AREA = (0.6, 1.4)  # both daughters' area together, as a fraction of their mother's


@dataclass
class Track:
    """One row of the track table: where and when a track was seen, and running sums."""

    track_id: int
    parent_id: int  # 0 = none
    first_frame: int
    last_frame: int
    frames_present: int  # frames in which the track was seen (gaps excluded)
    first_centroid: tuple[float, float]
    last_centroid: tuple[float, float]
    path_length: float = 0.0  # px, summed centroid steps (a bridged gap counts as one step)
    area_sum: float = 0.0
    intensity_sum: float = 0.0  # sum over frames of the mean intensity inside the cell
    # (CTC label, first frame, last frame) of each gap-free run; the first label is track_id
    segments: list[tuple[int, int, int]] = field(default_factory=list)

    @property
    def mean_area(self) -> float:
        return self.area_sum / self.frames_present

    @property
    def mean_intensity(self) -> float:
        return self.intensity_sum / self.frames_present


@dataclass
class _Objects:
    """The objects of one frame: compact index per foreground pixel and per-object stats."""

    pixels: np.ndarray  # flat indices of the foreground pixels
    index: np.ndarray  # object index (0..n-1) of each foreground pixel
    area: np.ndarray
    centroid: np.ndarray  # (n, 2) y, x
    intensity: np.ndarray  # (n,) mean intensity, NaN without an intensity image


def _objects(labels: np.ndarray, intensity: np.ndarray | None) -> _Objects:
    """Per-object area, centroid and mean intensity from bincounts over the foreground."""
    flat = labels.ravel()
    pixels = np.flatnonzero(flat != 0)  # a boolean mask is ~10x faster to scan than the labels
    values = flat[pixels].astype(np.int64)
    if values.size and values.max() < 4 * flat.size:  # dense enough for a lookup table
        present = np.flatnonzero(np.bincount(values))
        lut = np.zeros(int(values.max()) + 1, np.intp)
        lut[present] = np.arange(present.size)
        index = lut[values]
    else:
        index = np.unique(values, return_inverse=True)[1].ravel()
    count = int(index.max()) + 1 if index.size else 0
    area = np.bincount(index, minlength=count).astype(np.float64)
    ys, xs = np.divmod(pixels, labels.shape[1])
    centroid = np.stack([np.bincount(index, ys, count), np.bincount(index, xs, count)], axis=1) / area[:, None]
    if intensity is None:
        mean = np.full(count, np.nan)
    else:
        mean = np.bincount(index, intensity.ravel()[pixels].astype(np.float64), count) / area
    return _Objects(pixels, index, area, centroid, mean)


def count_codes(codes: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(codes, return_counts=True)`` for codes in ``[0, size)``: by a bincount
    where ``size`` is no more than a few times the codes (30 cells a frame: 0.2 ms against
    1.4 ms sorting a GOWT1 frame's overlapping pixels), else by sorting."""
    if size > 4 * codes.size + 4096:
        return np.unique(codes, return_counts=True)
    counts = np.bincount(codes, minlength=size)
    present = np.flatnonzero(counts)
    return present, counts[present]


def _near_pairs(a: np.ndarray, b: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(rows, cols, distance)`` of every pair of points of ``a`` and ``b`` at most ``radius``
    apart (k-d trees: the pairs, never the whole distance matrix)."""
    if len(a) == 0 or len(b) == 0:
        empty = np.zeros(0, np.intp)
        return empty, empty, np.zeros(0)
    pairs = cKDTree(a).sparse_distance_matrix(cKDTree(b), radius * (1 + 1e-9), output_type="ndarray")
    rows, cols = pairs["i"].astype(np.intp), pairs["j"].astype(np.intp)
    distance = np.sqrt(((a[rows] - b[cols]) ** 2).sum(axis=1))  # as cdist rounds it, for the cut at radius
    near = distance <= radius
    return rows[near], cols[near], distance[near]


def assign_pairs(rows: np.ndarray, cols: np.ndarray, cost: np.ndarray, shape: tuple[int, int]) -> list[tuple[int, int]]:
    """The one-to-one (row, column) pairs among the candidates ``(rows[k], cols[k])`` that link
    as many as possible, then at the least total ``cost`` (which lies in [0, 2]). Between
    optima of exactly equal cost it may choose another than a dense assignment would.

    Solved on the candidates alone (scipy's sparse LAPJV), with every row and column free to
    stay unlinked at a cost that outweighs any link: the same optimum as a dense assignment
    with the other pairs forbidden, in memory that grows with the candidates, not with the
    product of the frames' cell counts.
    """
    if rows.size == 0:
        return []
    n, m = shape
    # one more link must outweigh any change of the others' costs (at most 2 each), so a row or
    # column left unlinked costs more than all of them; weights above 0 (csgraph drops zeros)
    unlinked, real, dummy = 2.0 * min(n, m) + 3.0, cost + 1.0, np.ones(rows.size)
    stay = np.full(n + m, unlinked)
    block_rows = np.concatenate([rows, np.arange(n), n + np.arange(m), n + cols])
    block_cols = np.concatenate([cols, m + np.arange(n), np.arange(m), m + rows])
    weights = np.concatenate([real, stay[:n], stay[n:], dummy])
    graph = coo_matrix((weights, (block_rows, block_cols)), shape=(n + m, m + n)).tocsr()
    matched_rows, matched_cols = min_weight_full_bipartite_matching(graph)
    return [(r, c) for r, c in zip(matched_rows.tolist(), matched_cols.tolist()) if r < n and c < m]


# the numeric options of OverlapTracker, as postprocess.RANGES: (types, lowest, highest, lowest excluded);
# checked where they come from a command line
RANGES: dict[str, tuple[type | tuple[type, ...], float, float, bool]] = {
    "max_distance": ((int, float), 0, 1e6, True),
    "gap_closing": (int, 0, 1000, False),
    "division_distance": ((int, float), 0, 1e6, True),
    "min_overlap": ((int, float), 0, 1, False),
}


class OverlapTracker:
    """Link instance labels frame by frame into tracks; see the module docstring."""

    def __init__(
        self,
        max_distance: float = 50.0,
        gap_closing: int = 2,
        divisions: bool = True,
        division_distance: float = 40.0,
        min_overlap: float = 0.1,
    ) -> None:
        self.max_distance = max_distance
        self.gap_closing = gap_closing
        self.divisions = divisions
        self.division_distance = division_distance
        self.min_overlap = min_overlap
        self._tracks: dict[int, Track] = {}
        self._open: set[int] = set()  # tracks that may still continue
        self._frame = 0
        self._next_id = 1
        self._prev: np.ndarray | None = None  # previous frame: 1 + index of the object at each pixel
        self._prev_pixels = np.zeros(0, np.intp)
        self._prev_ids = np.zeros(0, np.int64)  # track id of each of the previous frame's objects
        self._prev_area = np.zeros(0)
        self._prev_centroid = np.zeros((0, 2))

    def tracks(self) -> list[Track]:
        """Every track so far, in order of id."""
        return list(self._tracks.values())

    def update(self, labels: np.ndarray, intensity: np.ndarray | None = None) -> np.ndarray:
        """Relabel one frame (instance labels, 0 = background) with track ids (uint32)."""
        labels = np.asarray(labels)
        if labels.ndim != 2:
            raise ValueError(f"tracking needs 2-D label frames, got shape {labels.shape}")
        if self._prev is None:
            self._prev = np.zeros(labels.shape, np.int32)
        elif labels.shape != self._prev.shape:
            raise ValueError(f"frame {self._frame} has shape {labels.shape}, earlier frames {self._prev.shape}")
        if intensity is not None and np.shape(intensity) != labels.shape:
            raise ValueError(f"intensity shape {np.shape(intensity)} differs from labels shape {labels.shape}")
        objects = _objects(labels, intensity)
        ids = np.zeros(objects.area.size, np.int64)  # track id of each object, 0 = not yet linked
        links = self._link(objects)
        for row, col in links:
            ids[col] = self._prev_ids[row]
        if self.divisions:
            self._divide(objects, links, ids)
        self._close_gaps(objects, ids)
        for col in np.flatnonzero(ids == 0):
            ids[col] = self._start(0)
        self._record(objects, ids)
        out = np.zeros(labels.shape, np.uint32)
        out.ravel()[objects.pixels] = ids[objects.index]
        self._remember(objects, ids)
        self._frame += 1
        return out

    def _link(self, objects: _Objects) -> list[tuple[int, int]]:
        """(previous-frame row, object) pairs by overlap and distance, globally assigned."""
        n_prev, n_cur = self._prev_ids.size, objects.area.size
        if n_prev == 0 or n_cur == 0:
            return []
        prev = self._prev.ravel()[objects.pixels].astype(np.int64)
        shared = prev > 0
        pair_codes, inter = count_codes((prev[shared] - 1) * n_cur + objects.index[shared], n_prev * n_cur)
        rows, cols, distance = _near_pairs(self._prev_centroid, objects.centroid, self.max_distance)
        codes = rows.astype(np.int64) * n_cur + cols
        at = np.minimum(np.searchsorted(pair_codes, codes), max(pair_codes.size - 1, 0))
        overlap = np.where(pair_codes[at] == codes, inter[at], 0) if pair_codes.size else np.zeros(codes.size)
        iou = overlap / (self._prev_area[rows] + objects.area[cols] - overlap)
        # overlapping pairs rank by IoU, before any pair linked on centroid distance alone
        overlaps = (iou > 0) & (iou >= self.min_overlap)  # min_overlap=0: any overlap, never none
        cost = np.where(overlaps, 1.0 - iou, 1.0 + distance / self.max_distance)
        return assign_pairs(rows, cols, cost, (n_prev, n_cur))

    def _divide(self, objects: _Objects, links: list[tuple[int, int]], ids: np.ndarray) -> None:
        """End mothers seen at t-1 whose two daughters are found now; daughters start tracks."""
        if self._prev_ids.size == 0 or objects.area.size < 2:
            return
        match = dict(links)  # previous row -> object
        linked_to = {col: row for row, col in links}
        rows, cols, distances = _near_pairs(self._prev_centroid, objects.centroid, self.division_distance)
        ratios = objects.area[cols] / self._prev_area[rows]
        sized = (ratios >= DAUGHTER_AREA[0]) & (ratios <= DAUGHTER_AREA[1])
        daughters: dict[int, dict[int, tuple[float, float]]] = {}  # mother row -> {object: (distance, ratio)}
        for row, col, distance, ratio in zip(rows[sized].tolist(), cols[sized].tolist(), distances[sized].tolist(),
                                             ratios[sized].tolist()):  # fmt: skip
            daughters.setdefault(row, {})[col] = (distance, ratio)
        candidates = []
        for row, near in sorted(daughters.items()):
            if row in match and match[row] not in near:
                continue  # the track continued as a cell of its own size
            free = [c for c in sorted(near) if linked_to.get(c, row) == row]
            for a, b in itertools.combinations(free, 2):
                if row in match and match[row] not in (a, b):
                    continue  # a mother linked to one daughter cannot divide into two other cells
                together = near[a][1] + near[b][1]
                if DAUGHTERS_AREA[0] <= together <= DAUGHTERS_AREA[1]:
                    score = abs(together - 1.0) + (near[a][0] + near[b][0]) / self.division_distance
                    candidates.append((score, row, a, b))
        used: set[int] = set()
        for _, row, a, b in sorted(candidates):
            if row in used or ({a, b} & used):
                continue
            used.update((row, a, b))
            mother = int(self._prev_ids[row])
            self._open.discard(mother)
            ids[a], ids[b] = self._start(mother), self._start(mother)

    def _close_gaps(self, objects: _Objects, ids: np.ndarray) -> None:
        """Give unlinked objects the ids of tracks lost at most ``gap_closing`` frames ago."""
        lost = [t for t in self._open if self._tracks[t].last_frame < self._frame - 1]
        free = np.flatnonzero(ids == 0)
        if not lost or free.size == 0:
            return
        lost_ids = np.array(sorted(lost), np.int64)
        last = np.array([self._tracks[t].last_centroid for t in lost_ids.tolist()], np.float64)
        rows, cols, distance = _near_pairs(last, objects.centroid[free], self.max_distance)
        for row, col in assign_pairs(rows, cols, distance / self.max_distance, (lost_ids.size, free.size)):
            track = self._tracks[int(lost_ids[row])]
            label = self._new_id()  # the run after the gap is its own CTC track, child of the run before
            track.segments.append((label, self._frame, self._frame))
            ids[free[col]] = track.track_id

    def _start(self, parent_id: int) -> int:
        """Open a new track (its row is filled by :meth:`_record`) and return its id."""
        track_id = self._new_id()
        nan = (float("nan"), float("nan"))
        self._tracks[track_id] = Track(track_id, parent_id, self._frame, self._frame, 0, nan, nan)
        self._tracks[track_id].segments.append((track_id, self._frame, self._frame))
        self._open.add(track_id)
        return track_id

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def _record(self, objects: _Objects, ids: np.ndarray) -> None:
        """Add this frame's observations to the track rows; close tracks lost too long."""
        for col, track_id in enumerate(ids.tolist()):
            track = self._tracks[track_id]
            centroid = (float(objects.centroid[col, 0]), float(objects.centroid[col, 1]))
            if track.frames_present == 0:
                track.first_centroid = centroid
            else:
                track.path_length += float(np.hypot(*np.subtract(centroid, track.last_centroid)))
            track.last_centroid = centroid
            track.last_frame = self._frame
            track.frames_present += 1
            track.area_sum += float(objects.area[col])
            track.intensity_sum += float(objects.intensity[col])
            label, start, _ = track.segments[-1]
            track.segments[-1] = (label, start, self._frame)
        self._open = {t for t in self._open if self._tracks[t].last_frame >= self._frame - self.gap_closing}

    def _remember(self, objects: _Objects, ids: np.ndarray) -> None:
        """Keep this frame's objects per pixel, with their track ids and areas, for the next frame's links."""
        prev = self._prev.ravel()
        prev[self._prev_pixels] = 0
        prev[objects.pixels] = objects.index + 1
        self._prev_pixels = objects.pixels
        self._prev_ids = ids
        self._prev_area = objects.area
        self._prev_centroid = objects.centroid


class NoTracker:
    """``tracker=none``: frames pass through unchanged and there are no tracks."""

    def update(self, labels: np.ndarray, intensity: np.ndarray | None = None) -> np.ndarray:
        """Return ``labels`` as they are."""
        return labels

    def tracks(self) -> list[Track]:
        return []
