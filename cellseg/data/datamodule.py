"""LightningDataModule: random augmented crops for training, whole frames for validation."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from skimage.segmentation import clear_border
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from cellseg.data.layouts import find_frames
from cellseg.data.normalize import percentile_normalize
from cellseg.data.synthetic import generate
from cellseg.data.targets import make_targets
from cellseg.data.transforms import build_augment, seed_augment, window, window_size
from cellseg.errors import CellsegError

log = logging.getLogger(__name__)


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
        self.transform = build_augment(
            crop_size,
            flip=augment.get("flip", True),
            rotate90=augment.get("rotate90", True),
            rotate=self.rotate,
            intensity=augment.get("intensity", True),
        )
        area = np.array([f.image.size for f in frames], np.float64)
        self.frame_p = area / area.sum()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, key])
        seed_augment(self.transform, rng)
        frame = self.frames[rng.choice(len(self.frames), p=self.frame_p)]
        maps = [frame.image, frame.targets["interior"], frame.targets["edge"], frame.targets["border"]]
        size = window_size(self.crop_size, self.rotate)
        (image, interior, edge, border), valid = window(maps, size, rng, self.wrap, self.seam)
        out = self.transform(image=image, masks=[interior, edge, border, valid])
        interior, edge, border, valid = out["masks"]
        return {
            "image": torch.from_numpy(np.ascontiguousarray(out["image"]))[None],
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


def _smallest_whole_cell(label_images: list[np.ndarray]) -> int | None:
    """Area of the smallest annotated cell that does not touch a frame border."""
    areas = [np.bincount(clear_border(labels).ravel())[1:] for labels in label_images]
    areas = np.concatenate(areas) if areas else np.array([])
    areas = areas[areas > 0]
    return int(areas.min()) if areas.size else None


class CellDataModule(L.LightningDataModule):
    """Annotated frames from ``root``: random crops to train on, held-out frames to validate.

    Validation is either whole held-out frames (``val_frames`` by name; default the last
    frame) or, for data sets with a single annotated frame, the bottom ``val_region``
    fraction of every frame (a spatial split). ``use_frames`` (names) keeps only those
    annotated frames, e.g. a handful of a fully annotated Cell Tracking Challenge sequence.
    Frames have one channel (``in_channels`` is accepted only as 1, for configs that still
    name it). Under DDP each rank draws its own crops, seeded from ``seed``, and validates its
    own share of the frames.
    """

    def __init__(
        self,
        root: str,
        layout: str = "auto",
        val_frames: list[str] | None = None,
        use_frames: list[str] | None = None,
        val_region: float | None = None,
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
        if in_channels != 1:
            raise CellsegError(
                f"data.in_channels={in_channels}: cellseg trains on single-channel frames; "
                "remove the option and save one channel per image"
            )
        self.root = Path(root)
        self.layout = layout
        self.val_frames = list(val_frames) if val_frames else None
        self.use_frames = set(use_frames) if use_frames else None
        self.val_region = val_region
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
        self.smallest_cell: int | None = None  # px, of training cells not cut by the border

    def prepare_data(self) -> None:
        """Generate the synthetic data set on first use (rank 0 only)."""
        if self.synthetic is not None and not (self.root / "images").is_dir():
            log.info("Generating the synthetic data set in %s", self.root)
            generate(self.root, **self.synthetic)

    def setup(self, stage: str | None = None) -> None:
        """Read, check and normalize all frames once; derive their targets."""
        if self.train_frames is not None:
            return
        if self.crop_size % 32:
            raise CellsegError(f"data.crop_size={self.crop_size} must be a multiple of 32")
        annotated = find_frames(self.root, self.layout)
        if self.use_frames is not None:
            missing = sorted(set(self.use_frames) - {item.name for item in annotated})
            if missing:
                raise CellsegError(
                    f"{self.root}: data.use_frames names {missing[0]!r}, which is not an annotated frame"
                )
            annotated = [item for item in annotated if item.name in self.use_frames]
        frames = []
        for item in annotated:
            image, labels = item.load()
            if min(image.shape) < self.crop_size:
                raise CellsegError(
                    f"{item.image_path}: image {image.shape[0]}x{image.shape[1]} is smaller than "
                    f"data.crop_size={self.crop_size}; lower data.crop_size"
                )
            if labels.max() == 0:
                raise CellsegError(f"{item.mask_path}: mask has no cells; annotate it or remove it")
            image = percentile_normalize(image, self.norm["low"], self.norm["high"], str(item.image_path))
            targets = make_targets(labels, self.edge_width, self.border_sigma)
            frames.append(Frame(item.name, image, labels, targets))
        self.train_frames, self.val_frames_data = self._split(frames)
        self.smallest_cell = _smallest_whole_cell([f.labels for f in self.train_frames])
        log.info(
            "Data %s: training on %s, validating on %s",
            self.root,
            [f.name for f in self.train_frames],
            [f.name for f in self.val_frames_data],
        )

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
            raise CellsegError(f"{self.root}: only one annotated frame; hold out part of it with data.val_region=0.25")
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
