"""LightningDataModule: random augmented crops for training, whole frames for validation and test."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from skimage.segmentation import clear_border
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from cellseg.data.layouts import AnnotatedFrame, find_frames
from cellseg.data.normalize import check_finite, percentile_normalize
from cellseg.data.synthetic import generate
from cellseg.data.targets import make_targets
from cellseg.data.transforms import (
    build_augment,
    dim_like_bleaching,
    jitter_intensity,
    seed_augment,
    window,
    window_size,
    zoom,
)
from cellseg.errors import CellsegError
from cellseg.utils.numbers import number_problem

log = logging.getLogger(__name__)
MIN_SCALE = 0.25  # data.augment.scale: the smallest zoom (and 1 / the largest)


@dataclass
class Frame:
    """A normalized frame with its instance labels and training targets."""

    name: str
    image: np.ndarray  # float32, percentile-normalized
    labels: np.ndarray  # int32 instance labels
    targets: dict[str, np.ndarray]

    def rows(self, sl: slice) -> Frame:
        """The same frame restricted to a band of rows."""
        return Frame(
            self.name,
            self.image[sl],
            self.labels[sl],
            {k: v[sl] for k, v in self.targets.items()},
        )


class RankSampler(DistributedSampler):
    """Rank r of W takes items r, r+W, ... of ``W * ceil(N / W)``: no shuffling, nothing repeated.

    Lightning leaves a ``DistributedSampler`` in place (its own would pad the last rank with
    repeated frames, counting them twice in SEG and the ROC). Indices from ``N`` on are pads
    that :class:`FrameDataset` serves as uncounted items, so that every rank runs the same
    number of batches and every frame counts exactly once.
    """

    def __init__(self, dataset: Dataset, rank: int = 0, world_size: int = 1):
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=False)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))


class CropSampler(RankSampler):
    """Crop keys for this rank: its share of the epoch's crops, numbered on from earlier epochs,
    so that no two ranks, epochs or data workers ever draw the same key."""

    def __iter__(self) -> Iterator[int]:
        start = self.epoch * self.total_size
        return iter(range(start + self.rank, start + self.total_size, self.num_replicas))


class CropDataset(Dataset):
    """``length`` random crops per epoch, drawn from frames in proportion to their area.

    Crop ``key`` (from :class:`CropSampler`) is a pure function of ``(seed, key)``: ranks and
    epochs draw different crops, and the crops do not depend on the number of data workers.
    """

    def __init__(self, frames: list[Frame], crop_size: int, length: int, augment: dict, seed: int):
        self.frames = frames
        self.crop_size = crop_size
        self.length = length
        self.seed = seed
        self.wrap = bool(augment.get("roll", True))
        self.seam = int(augment.get("seam", 4))
        self.rotate = bool(augment.get("rotate", True))
        self.dim = float(augment.get("dim", 0.0))
        self.intensity = bool(augment.get("intensity", True))
        self.clip = bool(augment.get("clip", True))
        self.scale = None if augment.get("scale") is None else tuple(augment["scale"])
        self.transform = build_augment(
            crop_size,
            flip=augment.get("flip", True),
            rotate90=augment.get("rotate90", True),
            rotate=self.rotate and self.scale is None,  # zoom() turns zoomed crops itself
        )
        self.window = window_size(crop_size, self.rotate, 1.0 if self.scale is None else self.scale[0])
        area = np.array([f.image.size for f in frames], np.float64)
        self.frame_p = area / area.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, key])
        seed_augment(self.transform, rng)
        frame = self.frames[rng.choice(len(self.frames), p=self.frame_p)]
        maps = [frame.image, frame.targets["interior"], frame.targets["edge"], frame.targets["border"]]
        (image, interior, edge, border), valid = window(maps, self.window, rng, self.wrap, self.seam)
        if self.scale is not None:
            image, (interior, edge, border, valid) = zoom(
                image, [interior, edge, border, valid], self.crop_size, rng, self.scale, self.rotate
            )
        out = self.transform(image=image, masks=[interior, edge, border, valid])
        interior, edge, border, valid = out["masks"]
        image = out["image"]
        if self.intensity:
            image = jitter_intensity(image, rng, clip=self.clip)
        if self.dim > 0 and rng.random() < self.dim:
            image = dim_like_bleaching(image, rng)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image))[None],
            "target": torch.from_numpy(np.stack([interior, edge]).astype(np.float32)),
            "border": torch.from_numpy(np.ascontiguousarray(border)),
            "valid": torch.from_numpy(np.ascontiguousarray(valid)),
        }


class FrameDataset(Dataset):
    """Whole frames, for validation: image, targets and the instance labels.

    An index past the end (a :class:`RankSampler` pad) repeats a frame with ``counted`` false.
    """

    def __init__(self, frames: list[Frame]):
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        frame = self.frames[index % len(self.frames)]
        t = frame.targets
        return {
            "name": frame.name,
            "counted": torch.tensor(index < len(self.frames)),
            "image": torch.from_numpy(frame.image)[None],
            "target": torch.from_numpy(np.stack([t["interior"], t["edge"]])),
            "border": torch.from_numpy(t["border"]),
            "valid": torch.ones(frame.image.shape, dtype=torch.float32),
            "labels": torch.from_numpy(frame.labels),
        }


_TIME = re.compile(r"^(.*?)(\d+)$")


def frame_time(name: str) -> tuple[str, int] | None:
    """``(sequence, time)`` of a frame named like ``02_t052`` (``("02_t", 52)``), else None."""
    match = _TIME.match(name)
    return (match[1], int(match[2])) if match else None


def near(name: str, others: Iterable[str], gap: int) -> bool:
    """Whether frame ``name`` is within ``gap`` time points of one of ``others`` of its sequence
    (or is one of them): such frames are nearly the same picture and leak into each other."""
    others = list(others)
    if name in others:
        return True
    here = frame_time(name)
    if here is None:
        return False  # gap 0 still matches 01_t0052 with 01_t052: the same time point
    return any((there := frame_time(o)) is not None and there[0] == here[0] and abs(there[1] - here[1]) <= gap
               for o in others)  # fmt: skip


def _smallest_whole_cell(label_images: list[np.ndarray]) -> int | None:
    """Area of the smallest annotated cell that does not touch a frame border."""
    areas = [np.bincount(clear_border(labels).ravel())[1:] for labels in label_images]
    areas = np.concatenate(areas) if areas else np.array([])
    areas = areas[areas > 0]
    return int(areas.min()) if areas.size else None


# numeric data options: (type, low, high); the regions may be null (no region held out)
NUMBER_OPTIONS = {
    "val_region": ((int, float), 0, 0.9),
    "test_region": ((int, float), 0, 0.9),
    "test_gap": (int, 0, 100_000),
    "samples_per_epoch": (int, 1, 10**9),
    "num_workers": (int, 0, 256),
    "border_sigma": ((int, float), 0, 1000),
}


def frame_names(value: Any) -> list[str]:
    """``data.val_frames`` and the like as a list of names: one name (``data.val_frames=t001``)
    is a list of one, where ``list("t001")`` would be four letters."""
    if value is None:
        return []
    if isinstance(value, (str, int)):
        return [str(value)]
    return [str(name) for name in value]


class CellDataModule(L.LightningDataModule):
    """Annotated frames from ``root``: random crops to train on, held-out frames to validate
    and to test.

    Validation is either whole held-out frames (``val_frames`` by name; default the last
    frame) or, for data sets with a single annotated frame, the bottom ``val_region``
    fraction of every frame (a spatial split; of the rows ``test_region`` leaves). The test split chooses nothing (no
    checkpoint, threshold or option is picked on it): whole frames (``test_frames``) or the
    top ``test_region`` fraction of every frame. Frames within ``test_gap`` time points of a
    test frame (same sequence, by the number that ends the name: ``02_t052``, ``02_t055``)
    are neither trained nor validated on, since neighbouring frames of a movie nearly repeat
    each other. ``test_sequence`` (a Cell Tracking Challenge sequence folder) is predicted
    and scored after training (see :mod:`cellseg.sequence_test`). ``use_frames`` (names) keeps only those
    annotated frames, e.g. a handful of a fully annotated Cell Tracking Challenge sequence.
    Frames have one channel (``in_channels`` is accepted only as 1, for configs that still
    name it). Under DDP each rank draws its own crops, seeded from ``seed``, and validates its
    own share of the frames.
    """

    def __init__(
        self,
        root: str | None,
        layout: str = "auto",
        val_frames: list[str] | None = None,
        use_frames: list[str] | None = None,
        val_region: float | None = None,
        test_frames: list[str] | None = None,
        test_region: float | None = None,
        test_gap: int = 0,
        test_sequence: str | None = None,
        crop_size: int = 256,
        samples_per_epoch: int = 800,
        batch_size: int = 8,
        num_workers: int = 0,
        in_channels: int = 1,
        norm: dict | None = None,
        edge_width: int = 2,
        border_sigma: float = 5.0,
        augment: dict | None = None,
        synthetic: dict | None = None,
        seed: int = 0,
    ):
        super().__init__()
        # checked in prepare_data/setup: Hydra's instantiate would wrap an error raised here
        self.in_channels = in_channels
        self.root = Path(root).expanduser() if root else None
        self.layout = layout
        self.val_frames = frame_names(val_frames) or None
        self.use_frames = set(frame_names(use_frames)) or None
        self.val_region = val_region
        self.test_frames = frame_names(test_frames)
        self.test_region = test_region
        self.test_gap = test_gap
        self.test_sequence = test_sequence
        self.crop_size = crop_size
        self.samples_per_epoch = samples_per_epoch
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.norm = dict(norm or {"low": 1.0, "high": 99.8})
        self.edge_width = edge_width
        self.border_sigma = border_sigma
        self.augment = dict(augment or {})
        self.synthetic = synthetic
        self.seed = seed
        self.train_frames: list[Frame] | None = None
        self.val_frames_data: list[Frame] | None = None
        self.test_frames_data: list[Frame] = []
        self.smallest_cell: int | None = None  # px, of training cells not cut by the border

    def _check_options(self) -> None:
        if self.in_channels != 1:
            raise CellsegError(
                f"data.in_channels={self.in_channels}: cellseg trains on single-channel frames; "
                "remove the option and save one channel per image"
            )
        if self.root is None:
            raise CellsegError("data.root is not set: give data.root=PATH, the folder of annotated frames")
        for key, value, step in (("crop_size", self.crop_size, 32), ("batch_size", self.batch_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < step or value % step:
                unit = "a positive multiple of 32" if step == 32 else "a positive integer"
                raise CellsegError(f"data.{key}={value!r}: must be {unit}")
        dim = self.augment.get("dim", 0.0)
        if not isinstance(dim, (int, float)) or not 0 <= dim <= 1:
            raise CellsegError(f"data.augment.dim={dim!r}: the share of crops dimmed like a bleached frame, 0 to 1")
        scale = self.augment.get("scale")
        if scale is not None and not (
            isinstance(scale, Sequence)
            and len(scale) == 2
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scale)
            and MIN_SCALE <= scale[0] <= 1 <= scale[1] <= 1 / MIN_SCALE
        ):
            raise CellsegError(
                f"data.augment.scale={scale!r}: use null or [low,high] zoom factors with "
                f"{MIN_SCALE} <= low <= 1 <= high <= {1 / MIN_SCALE:g}, e.g. [0.67,1.5]"
            )
        for key, (kind, low, high) in NUMBER_OPTIONS.items():
            value = getattr(self, key)
            problem = None if value is None and key.endswith("_region") else number_problem(f"data.{key}", value, kind, low, high)
            if problem:
                raise CellsegError(f"{problem}; change the option")
        self.check_share(self._rank()[1])

    def check_share(self, processes: int) -> None:
        """Refuse an epoch that gives each of ``processes`` training processes less than one
        batch: no step would run."""
        share = -(-self.samples_per_epoch // processes)  # CropSampler's ceil(N / W) crops per process
        if share < self.batch_size:
            each = f", {share} for each of {processes} processes," if processes > 1 else ""
            raise CellsegError(
                f"data.samples_per_epoch={self.samples_per_epoch}{each} is less than one batch "
                f"(data.batch_size={self.batch_size}): no step would run; raise it"
            )

    def prepare_data(self) -> None:
        """Generate the synthetic data set on first use (rank 0 only)."""
        self._check_options()
        if self.synthetic is not None and not (self.root / "images").is_dir():
            log.info("Generating the synthetic data set in %s", self.root)
            generate(self.root, **self.synthetic)

    def annotated(self) -> list[AnnotatedFrame]:
        """The annotated frames to use (``data.use_frames`` of them), found but not read."""
        self._check_options()
        annotated = find_frames(self.root, self.layout)
        if self.use_frames is not None:
            missing = sorted(set(self.use_frames) - {item.name for item in annotated})
            if missing:
                raise CellsegError(
                    f"{self.root}: data.use_frames names {missing[0]!r}, which is not an annotated frame"
                )
            annotated = [item for item in annotated if item.name in self.use_frames]
        return annotated

    def setup(self, stage: str | None = None) -> None:
        """Read, check and normalize all frames once; derive their targets."""
        if self.train_frames is not None:
            return
        frames = []
        for item in self.annotated():
            image, labels = item.load()
            if min(image.shape) < self.crop_size:
                raise CellsegError(
                    f"{item.image_path}: image {image.shape[0]}x{image.shape[1]} is smaller than "
                    f"data.crop_size={self.crop_size}; lower data.crop_size"
                )
            check_finite(image, str(item.image_path), "replace them (e.g. by 0) or leave the frame out")
            if labels.max() == 0:  # a corrected frame whose every detection was false
                log.warning("%s (frame %s): mask has no cells; it trains as background only", item.mask_path, item.name)
            image = percentile_normalize(image, self.norm["low"], self.norm["high"], str(item.image_path))
            targets = make_targets(labels, self.edge_width, self.border_sigma)
            frames.append(Frame(item.name, image, labels, targets))
        frames, self.test_frames_data = self._split_test(frames)
        short = next((f for f in frames if min(f.image.shape) < self.crop_size), None)
        if short is not None:  # data.test_region took rows from every frame
            raise CellsegError(
                f"{self.root}: frame {short.name} keeps {short.image.shape[0]}x{short.image.shape[1]} px to train on "
                f"after data.test_region={self.test_region}, less than data.crop_size={self.crop_size}; "
                "lower one of them"
            )
        self.train_frames, self.val_frames_data = self._split(frames)
        splits = (("train on", self.train_frames), ("validate on", self.val_frames_data), ("test on", self.test_frames_data))
        for role, chosen in splits:
            if chosen and not any(f.labels.any() for f in chosen):  # no test split is fine; an empty one is not
                raise CellsegError(
                    f"{self.root}: what is held to {role} ({', '.join(f.name for f in chosen)}) has no "
                    "annotated cell; annotate cells there or choose other frames or regions"
                )
        self.smallest_cell = _smallest_whole_cell([f.labels for f in self.train_frames])
        log.info(
            "Data %s: training on %s, validating on %s, testing on %s",
            self.root,
            [f.name for f in self.train_frames],
            [f.name for f in self.val_frames_data],
            [f.name for f in self.test_frames_data] or "nothing",
        )

    @property
    def seen_frames(self) -> list[str]:
        """Names of the frames that trained or chose something (training and validation)."""
        return sorted({f.name for f in [*(self.train_frames or []), *(self.val_frames_data or [])]})

    def _split_test(self, frames: list[Frame]) -> tuple[list[Frame], list[Frame]]:
        """``(frames left for training and validation, test frames)``."""
        if self.test_region:
            if self.test_frames:
                raise CellsegError("data.test_frames and data.test_region both set; hold out frames or a region")
            if self.val_region and self.val_region + self.test_region >= 1:
                raise CellsegError(
                    f"data.val_region={self.val_region} and data.test_region={self.test_region} leave "
                    "nothing to train on; lower them"
                )
            cuts = [int(round(f.image.shape[0] * self.test_region)) for f in frames]
            return [f.rows(slice(cut, None)) for f, cut in zip(frames, cuts)], [
                f.rows(slice(0, cut)) for f, cut in zip(frames, cuts)
            ]
        names = [f.name for f in frames]
        unknown = [n for n in self.test_frames if n not in names]
        if unknown:
            raise CellsegError(
                f"{self.root}: data.test_frames names {unknown[0]!r}, which is not an annotated frame "
                f"(there are {', '.join(names)}); name others or set data.test_frames=null"
            )
        test = [f for f in frames if f.name in self.test_frames]
        rest = [f for f in frames if not near(f.name, self.test_frames, self.test_gap)]
        left_out = sorted(set(names) - {f.name for f in test} - {f.name for f in rest})
        if left_out:
            log.info("Not training or validating on %s: within data.test_gap=%d frames of a test frame",
                     left_out, self.test_gap)  # fmt: skip
        if self.test_frames and not rest:
            raise CellsegError(f"{self.root}: data.test_frames leaves no frame to train on; hold out fewer frames")
        return rest, test

    def _split(self, frames: list[Frame]) -> tuple[list[Frame], list[Frame]]:
        if self.val_region:
            cuts = [int(round(f.image.shape[0] * (1 - self.val_region))) for f in frames]
            if any(cut < self.crop_size for cut in cuts):
                raise CellsegError(
                    f"{self.root}: data.val_region={self.val_region} leaves less than one crop "
                    "to train on; lower it or data.crop_size"
                )
            train = [f.rows(slice(0, cut)) for f, cut in zip(frames, cuts)]
            return train, [f.rows(slice(cut, None)) for f, cut in zip(frames, cuts)]
        if len(frames) < 2:
            raise CellsegError(
                f"{self.root}: only one annotated frame to train and validate on; hold out part of it "
                "with data.val_region=0.25"
            )
        names = [f.name for f in frames]
        wanted = [n for n in (self.val_frames or []) if n in names]
        if self.val_frames and not wanted:
            log.warning("None of data.val_frames=%s in %s; holding out the last frame", self.val_frames, self.root)
        wanted = wanted or names[-1:]
        return [f for f in frames if f.name not in wanted], [f for f in frames if f.name in wanted]

    def _rank(self) -> tuple[int, int]:
        """This process's global rank and the number of processes."""
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        dataset = CropDataset(self.train_frames, self.crop_size, self.samples_per_epoch, self.augment, self.seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=CropSampler(dataset, *self._rank()),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            drop_last=True,
        )

    def val_dataloader(self) -> DataLoader:
        dataset = FrameDataset(self.val_frames_data)
        return DataLoader(dataset, batch_size=1, sampler=RankSampler(dataset, *self._rank()), num_workers=0)

    def test_dataloader(self) -> DataLoader:
        dataset = FrameDataset(self.test_frames_data)
        return DataLoader(dataset, batch_size=1, sampler=RankSampler(dataset, *self._rank()), num_workers=0)
