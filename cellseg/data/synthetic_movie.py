"""Synthetic time-lapse movies of moving nuclei with known tracks.

Nuclei (elliptical blobs 20-30 px across) drift a few px per frame without touching. The
events each test needs can be switched on or off: a division (the mother ends, two
daughters of half her area start side by side the next frame), a nucleus entering from the
left border, one leaving through the right border, and blank frames (a dark camera frame
with no cells, and no labels). Ground-truth labels equal track ids, and tracks come as CTC
``(L, B, E, P)`` rows read back from the rendered labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

from cellseg.data.synthetic import _ellipse
from cellseg.tracking.ctc import frame_digits

GAP = 6.0  # px kept free between any two nuclei in every frame


@dataclass
class _Nucleus:
    track_id: int
    parent_id: int
    birth: int  # first frame it is drawn in
    death: int  # last frame it is drawn in
    start: np.ndarray  # centre (y, x) at birth
    velocity: np.ndarray  # px per frame
    radii: tuple[float, float]
    angle: float
    brightness: float

    def center(self, frame: int) -> np.ndarray:
        return self.start + self.velocity * (frame - self.birth)


def _plan(
    rng: np.random.Generator,
    n_frames: int,
    shape: tuple[int, int],
    n_cells: int,
    speed: float,
    divide_at: int | None,
    enter_at: int | None,
    leave: bool,
) -> list[_Nucleus]:
    """Random nuclei and their events; may collide (checked by :func:`_collides`)."""
    height, width = shape
    drift = rng.uniform(-speed, speed, 2) / 2

    def nucleus(track_id: int, start, velocity, radius: float, birth: int = 0) -> _Nucleus:
        radii = (radius * rng.uniform(0.7, 1.0), radius)
        start, velocity = np.asarray(start, float), np.asarray(velocity, float)
        angle, brightness = rng.uniform(0, np.pi), rng.lognormal(0.0, 0.2)
        return _Nucleus(track_id, 0, birth, n_frames - 1, start, velocity, radii, angle, brightness)

    margin = 15 + speed * n_frames
    cells = []
    for index in range(n_cells):
        start = (rng.uniform(margin, height - margin), rng.uniform(margin, width - margin))
        cells.append(nucleus(index + 1, start, drift + rng.uniform(-speed, speed, 2) / 2, rng.uniform(11, 14)))
    if leave:  # starts by the right border and moves out of the field
        cells.append(nucleus(len(cells) + 1, (rng.uniform(30, height - 30), width - 20), (0.0, 6.0), 11.0))
    if enter_at is not None:  # moves in from the left border
        cells.append(nucleus(len(cells) + 1, (rng.uniform(30, height - 30), -8.0), (0.0, 5.0), 11.0, enter_at))
    if divide_at is not None:  # two daughters of half the area, side by side along the mother's long axis
        mother = cells[0]
        mother.death = divide_at - 1
        axis = np.array([np.sin(mother.angle), np.cos(mother.angle)])
        radii = (mother.radii[0] / np.sqrt(2), mother.radii[1] / np.sqrt(2))
        for sign in (-1, 1):
            start = mother.center(divide_at) + sign * (radii[1] + 1.5) * axis
            velocity = mother.velocity + sign * 0.5 * axis
            daughter = _Nucleus(len(cells) + 1, mother.track_id, divide_at, n_frames - 1, start, velocity, radii, 0, 0)
            daughter.angle, daughter.brightness = mother.angle, mother.brightness
            cells.append(daughter)
    return cells


def _collides(cells: list[_Nucleus], n_frames: int) -> bool:
    """Whether two nuclei come within ``GAP`` px (sister daughters: touch) in some frame."""
    for frame in range(n_frames):
        alive = [c for c in cells if c.birth <= frame <= c.death]
        for i, a in enumerate(alive):
            for b in alive[i + 1 :]:
                gap = 0.0 if a.parent_id and a.parent_id == b.parent_id else GAP
                if np.hypot(*(a.center(frame) - b.center(frame))) < a.radii[1] + b.radii[1] + gap:
                    return True
    return False


def generate_movie(
    n_frames: int = 12,
    shape: tuple[int, int] = (256, 256),
    seed: int = 0,
    n_cells: int = 5,
    speed: float = 3.0,
    divide_at: int | None = 6,
    enter_at: int | None = 2,
    leave: bool = True,
    blank_frames: tuple[int, ...] = (),
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int, int]]]:
    """``(frames uint16 (T, Y, X), labels uint16 (T, Y, X) = track ids, tracks [(L, B, E, P)])``.

    ``divide_at``: frame of the daughters' birth (None: no division); ``enter_at``: first
    frame of the entering nucleus (None: none enters); ``speed``: px per frame, at most.
    """
    rng = np.random.default_rng(seed)
    for _ in range(200):
        cells = _plan(rng, n_frames, shape, n_cells, speed, divide_at, enter_at, leave)
        if not _collides(cells, n_frames):
            break
    else:
        raise ValueError(f"cannot place {n_cells} nuclei in {shape} px without collisions; use fewer or a larger frame")
    frames = np.zeros((n_frames, *shape), np.uint16)
    labels = np.zeros((n_frames, *shape), np.uint16)
    for frame in range(n_frames):
        signal = np.zeros(shape, np.float32)
        if frame not in blank_frames:
            for cell in cells:
                if cell.birth <= frame <= cell.death:
                    box, mask = _ellipse(shape, cell.center(frame), cell.radii, cell.angle)
                    labels[frame][box][mask] = cell.track_id
                    signal[box][mask] = cell.brightness
        signal = ndi.gaussian_filter(signal, 1.5)
        image = rng.poisson(signal * 600 + 40) + rng.normal(0, 8, shape) + 100
        frames[frame] = np.clip(image, 0, 65535).astype(np.uint16)
    return frames, labels, _tracks(labels, cells)


def _tracks(labels: np.ndarray, cells: list[_Nucleus]) -> list[tuple[int, int, int, int]]:
    """CTC rows of the nuclei that appear in ``labels``, first and last frame as drawn."""
    present = [set(np.unique(frame).tolist()) for frame in labels]
    rows = []
    for cell in cells:
        frames = [t for t, ids in enumerate(present) if cell.track_id in ids]
        if frames:
            rows.append((cell.track_id, frames[0], frames[-1], cell.parent_id))
    return rows


def write_ctc_sequence(root: Path, frames: np.ndarray, labels: np.ndarray, tracks: list, name: str = "01") -> Path:
    """Write a movie in the Cell Tracking Challenge layout: ``root/01/tNNN.tif`` and its ground
    truth ``root/01_GT`` (``TRA/man_trackNNN.tif`` + ``man_track.txt``, ``SEG/man_segNNN.tif``).
    Returns the sequence folder."""
    digits = frame_digits(len(frames))
    sequence, gt = root / name, root / f"{name}_GT"
    for folder in (sequence, gt / "TRA", gt / "SEG"):
        folder.mkdir(parents=True, exist_ok=True)
    for t, (frame, label) in enumerate(zip(frames, labels)):
        tifffile.imwrite(sequence / f"t{t:0{digits}d}.tif", frame)
        tifffile.imwrite(gt / "TRA" / f"man_track{t:0{digits}d}.tif", label.astype(np.uint16))
        tifffile.imwrite(gt / "SEG" / f"man_seg{t:0{digits}d}.tif", label.astype(np.uint16))
    (gt / "TRA" / "man_track.txt").write_text("".join(" ".join(map(str, row)) + "\n" for row in tracks))
    return sequence
