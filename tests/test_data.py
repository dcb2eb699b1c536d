"""Readers, layouts, targets, crops and augmentation, and the data errors users see."""

from __future__ import annotations

import re
from dataclasses import replace

import cv2
import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from torch.utils.data import DataLoader

from cellseg.data.datamodule import CellDataModule, CropDataset, CropSampler, FrameDataset, RankSampler, near
from cellseg.data.io import read_image, read_labels, read_page
from cellseg.data.layouts import detect_layout, find_frames
from cellseg.data.normalize import percentile_normalize, percentiles
from cellseg.data.synthetic import synthetic_frame
from cellseg.data.targets import edge_band, make_targets
from cellseg.data.transforms import build_augment, dim_like_bleaching, jitter_intensity, window, window_size, zoom
from cellseg.errors import CellsegError

from .conftest import shared


def two_touching_cells() -> np.ndarray:
    labels = np.zeros((40, 40), np.int32)
    labels[10:30, 5:20] = 1
    labels[10:30, 20:35] = 2
    return labels


def write_instance_folder(root, n=3, size=256, dtype=np.uint16, compression="lzw"):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image, labels = synthetic_frame(rng, size, n_nuclei=8)
        tifffile.imwrite(root / "images" / f"f{i}.tif", image.astype(dtype), compression=compression)
        tifffile.imwrite(root / "masks" / f"f{i}.tif", labels.astype(np.uint16), compression=compression)
    return root


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_reads_lzw_tiff_keeping_dtype(tmp_path, dtype):
    data = (np.arange(64 * 64).reshape(64, 64) % 250).astype(dtype)
    tifffile.imwrite(tmp_path / "a.tif", data, compression="lzw")
    out = read_image(tmp_path / "a.tif")
    assert out.dtype == dtype and np.array_equal(out, data)


def test_reads_png_and_npy(tmp_path):
    data = (np.arange(32 * 32).reshape(32, 32) % 200).astype(np.uint8)
    iio.imwrite(tmp_path / "a.png", data)
    np.save(tmp_path / "a.npy", data)
    assert np.array_equal(read_image(tmp_path / "a.png"), data)
    assert np.array_equal(read_image(tmp_path / "a.npy"), data)
    # a palette PNG (a label mask drawn in a paint program) holds its labels as the indices
    labels = (np.arange(32 * 32).reshape(32, 32) // 400).astype(np.uint8)
    palette = Image.fromarray(labels, mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    palette.save(tmp_path / "mask.png")
    assert np.array_equal(read_image(tmp_path / "mask.png"), labels)


def test_a_stack_saved_a_page_per_frame_reads_whole(tmp_path):
    """``TiffWriter.write`` once per frame, no axes metadata: several one-page series. Reading
    the first alone gave a training frame of a stack, silently."""
    frames = np.arange(3 * 16 * 16, dtype=np.uint16).reshape(3, 16, 16)
    with tifffile.TiffWriter(tmp_path / "stack.tif") as tif:
        for frame in frames:
            tif.write(frame)
    assert np.array_equal(read_image(tmp_path / "stack.tif"), frames)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "file not found"), (b"not a tiff at all", "cannot be read")],
)
def test_read_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.tif"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CellsegError, match=message) as err:
        read_image(path)
    assert str(path) in str(err.value)


def test_edge_band_separates_touching_cells():
    labels = two_touching_cells()
    edge = edge_band(labels, width=2)
    assert edge[20, 18] and edge[20, 19] and edge[20, 20] and edge[20, 21]  # shared border
    assert not edge[20, 12]  # deep inside
    targets = make_targets(labels, 2, 5.0)
    interior = targets["interior"] > 0
    assert not (interior & edge).any()
    assert np.array_equal(interior | edge, labels > 0)
    # the two interiors are separate components
    from scipy import ndimage as ndi

    assert ndi.label(interior)[1] == 2


def test_border_term_peaks_between_close_cells():
    labels = np.zeros((40, 60), np.int32)
    labels[10:30, 5:25] = 1
    labels[10:30, 28:50] = 2
    border = make_targets(labels, 1, 5.0)["border"]
    assert border[20, 26] > 0.5  # in the 3-px gap between the cells
    assert border[2, 55] < 0.01  # far from both
    assert border[labels > 0].max() == 0


def test_wrap_window_masks_the_seam():
    frame = np.arange(100, dtype=np.float32).reshape(10, 10)
    rng = np.random.default_rng(0)
    for _ in range(20):
        (crop,), valid = window([frame], 8, rng, wrap=True, seam=1)
        rows_jump = np.nonzero(np.abs(np.diff(crop[:, 0])) > 10)[0]
        for row in rows_jump:  # wherever content wraps, the loss ignores both sides
            assert valid[row].sum() == 0 and valid[row + 1].sum() == 0


def test_augmentation_moves_targets_with_the_image():
    labels = np.zeros((182, 182), np.int32)
    labels[40:120, 60:100] = 1
    image = (labels > 0).astype(np.float32)
    augment = build_augment(128, seed=3)
    for _ in range(5):
        out = augment(image=image, masks=[image.copy()])
        assert np.mean((out["image"] > 0.5) == (out["masks"][0] > 0.5)) > 0.99


def test_zoom_shows_cells_smaller_and_larger_and_keeps_targets_on_the_image():
    disc = (np.hypot(*np.mgrid[-150:150, -150:150]) < 20).astype(np.float32)  # 1257 px
    size = window_size(64, rotate=True, min_scale=0.5)
    assert size == 184  # 64 * sqrt(2) / 0.5, rounded up, + 2
    start = 150 - size // 2
    window_ = disc[start : start + size, start : start + size]
    rng = np.random.default_rng(1)
    areas = []
    for _ in range(40):
        image, (mask,) = zoom(window_, [window_.copy()], 64, rng, (0.5, 2.0), rotate=True)
        assert image.shape == mask.shape == (64, 64)
        assert set(np.unique(mask)) <= {0.0, 1.0}  # targets are not blended
        assert np.mean((image > 0.5) == (mask > 0.5)) > 0.99
        areas.append(mask.sum())
    assert min(areas) < 0.6 * disc.sum() and max(areas) > 1.6 * disc.sum()  # smaller and larger
    image, _ = zoom(window_, [], 64, rng, (1.0, 1.0), rotate=False)
    assert np.array_equal(image, window_[60:124, 60:124])  # no zoom, no turn: the central crop


def test_flips_are_drawn_independently():
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    augment = build_augment(4, rotate90=False, rotate=False, seed=0)
    outcomes = [augment(image=image)["image"] for _ in range(40)]
    assert any(np.array_equal(out, image[:, ::-1]) for out in outcomes)  # horizontal flip alone
    assert any(np.array_equal(out, image[::-1]) for out in outcomes)  # vertical flip alone


def test_dimming_lowers_nuclei_unevenly_and_adds_noise_but_keeps_background():
    image = np.zeros((128, 128), np.float32)
    image[:, 64:] = 1.0  # a bright half: "nuclei"
    rng = np.random.default_rng(4)
    dimmed = [dim_like_bleaching(image, rng, min_gain=0.3, max_noise=0.1) for _ in range(20)]
    bright = np.stack([d[:, 64:] for d in dimmed])
    assert bright.mean() < 0.9 and np.percentile(bright, 1) > 0.0  # dimmer, never gone
    assert max(np.ptp(cv2.blur(d[:, 64:], (15, 15))) for d in dimmed) > 0.1  # unevenly
    assert abs(np.stack([d[:, :64] for d in dimmed]).mean()) < 0.01  # background stays at 0
    assert max(d[:, :64].std() for d in dimmed) > 0.02  # with noise


def test_intensity_jitter_changes_exposure_noise_and_blur_without_clipping():
    image = np.linspace(-0.3, 1.6, 64 * 64, dtype=np.float32).reshape(64, 64)
    rng = np.random.default_rng(0)
    jittered = [jitter_intensity(image, rng, clip=False) for _ in range(40)]
    assert min(j.min() for j in jittered) < -0.2 and max(j.max() for j in jittered) > 1.5  # the range stays open
    assert all(j.dtype == np.float32 and j.shape == image.shape for j in jittered)
    assert sum(not np.allclose(j, image) for j in jittered) >= 30  # most crops change
    roughness = [np.abs(np.diff(j - image, axis=1)).mean() for j in jittered]
    assert max(roughness) > 0.01  # some carry noise


def test_intensity_jitter_clips_each_change_to_the_unit_range():
    image = np.linspace(-0.3, 1.6, 64 * 64, dtype=np.float32).reshape(64, 64)
    rng = np.random.default_rng(0)
    jittered = [jitter_intensity(image, rng) for _ in range(40)]
    changed = [j for j in jittered if not np.array_equal(j, image)]
    assert len(changed) >= 30  # as albumentations: a crop no change fired on stays as it was
    assert all(j.min() >= 0.0 and j.max() <= 1.0 and j.dtype == np.float32 for j in changed)
    assert sum(bool((j == 0.0).any() and (j == 1.0).any()) for j in changed) >= 30  # clipped, not rescaled


@pytest.mark.parametrize("clip", [False, True])
def test_training_crops_follow_the_clip_option(synthetic_root, clip):
    datamodule = CellDataModule(str(synthetic_root), crop_size=64)
    datamodule.setup("fit")
    frames = [replace(f, image=f.image * 3.0 - 0.5) for f in datamodule.train_frames]  # about -0.5 to 2.5
    dataset = CropDataset(frames, 64, 16, {"rotate": False, "clip": clip}, seed=2)
    images = [dataset[k]["image"] for k in range(16)]
    below = sum(bool((i < -0.1).any()) for i in images)  # background below 0
    above = sum(bool((i > 1.1).any()) for i in images)  # bright nuclei above 1
    if clip:  # the crops no change fired on (about 8 %) keep their range
        assert below <= 3 and above <= 3
    else:  # neither flattened to 0 nor capped at 1
        assert below >= 12 and above >= 8


def test_dim_share_of_training_crops_follows_the_option(synthetic_root):
    datamodule = CellDataModule(str(synthetic_root), crop_size=64)
    datamodule.setup("fit")
    plain = CropDataset(datamodule.train_frames, 64, 8, {"dim": 0.0}, seed=1)
    for share, expected in ((0.0, 0), (0.5, range(1, 8)), (1.0, 8)):
        dimmed = CropDataset(datamodule.train_frames, 64, 8, {"dim": share}, seed=1)
        changed = sum(not torch.equal(dimmed[k]["image"], plain[k]["image"]) for k in range(8))
        assert changed in expected if isinstance(expected, range) else changed == expected
    with pytest.raises(CellsegError, match=r"data.augment.dim=1.5"):
        CellDataModule(str(synthetic_root), augment={"dim": 1.5}).prepare_data()


@pytest.mark.parametrize("scale", [[1.5, 2.0], [0.5], "ab", [0.1, 1.0], [0.5, True]])
def test_scale_option_is_checked(synthetic_root, scale):
    with pytest.raises(CellsegError, match=r"data.augment.scale=.*\[low,high\]"):
        CellDataModule(str(synthetic_root), augment={"scale": scale}).prepare_data()


def test_scaled_training_crops_follow_the_option(synthetic_root):
    datamodule = CellDataModule(str(synthetic_root), crop_size=64, augment={"scale": [0.5, 2.0]})
    datamodule.setup("fit")
    assert datamodule.train_dataloader().dataset.scale == (0.5, 2.0)
    plain = CropDataset(datamodule.train_frames, 64, 16, {}, seed=1)
    zoomed = CropDataset(datamodule.train_frames, 64, 16, {"scale": [0.5, 2.0]}, seed=1)
    for dataset in (plain, zoomed):
        assert all(dataset[k]["image"].shape == (1, 64, 64) for k in range(16))
    foreground = [float(zoomed[k]["target"][0].mean()) for k in range(16)]
    assert np.ptp(foreground) > np.ptp([float(plain[k]["target"][0].mean()) for k in range(16)])


def crops(dataset, sampler, num_workers=0):
    loader = DataLoader(dataset, batch_size=2, sampler=sampler, num_workers=num_workers)
    return torch.cat([batch["image"] for batch in loader])


def test_crops_differ_by_rank_and_epoch_but_not_by_worker_count(synthetic_root):
    datamodule = CellDataModule(str(synthetic_root), crop_size=64, samples_per_epoch=4, batch_size=1)
    datamodule.setup()
    dataset = CropDataset(datamodule.train_frames, 64, 8, {}, seed=0)
    rank0, rank1 = CropSampler(dataset, 0, 2), CropSampler(dataset, 1, 2)
    assert set(rank0).isdisjoint(rank1) and len(list(rank0)) == 4
    first = crops(dataset, rank0)
    assert not torch.equal(first, crops(dataset, rank1))
    assert torch.equal(first, crops(dataset, rank0, num_workers=2))  # workers split the keys, not the seeds
    assert len({crop.numpy().tobytes() for crop in first}) == 4
    rank0.set_epoch(1)
    assert not torch.equal(first, crops(dataset, rank0))


def test_validation_shards_count_every_frame_once(synthetic_root):
    datamodule = CellDataModule(str(synthetic_root), crop_size=64, val_frames=["syn_001", "syn_002", "syn_003"])
    datamodule.setup()
    dataset = FrameDataset(datamodule.val_frames_data)
    counted, batches = [], []
    for rank in range(2):
        items = [dataset[i] for i in RankSampler(dataset, rank, 2)]
        batches.append(len(items))
        counted += [item["name"] for item in items if item["counted"]]
    assert batches == [2, 2]  # the same number of batches on every rank
    assert sorted(counted) == ["syn_001", "syn_002", "syn_003"]


def test_data_in_channels_other_than_one_is_refused(synthetic_root):
    with pytest.raises(CellsegError, match="data.in_channels=3"):
        CellDataModule(str(synthetic_root), in_channels=3).setup()


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"crop_size": 0}, "data.crop_size=0: must be a positive multiple of 32"),
        ({"crop_size": -32}, "data.crop_size=-32: must be a positive multiple of 32"),
        ({"crop_size": 100}, "data.crop_size=100: must be a positive multiple of 32"),
        ({"batch_size": 0}, "data.batch_size=0: must be a positive integer"),
        ({"batch_size": "abc"}, "data.batch_size='abc': must be a positive integer"),
        ({"test_gap": "abc"}, "data.test_gap is 'abc', not a finite integer; change the option"),
        ({"test_gap": -1}, "data.test_gap=-1 is out of range [0, 100000]"),
        ({"val_region": "abc"}, "data.val_region is 'abc', not a finite number"),
        ({"test_region": float("nan")}, "data.test_region is nan, not a finite number"),
        ({"samples_per_epoch": "abc"}, "data.samples_per_epoch is 'abc', not a finite integer"),
        ({"samples_per_epoch": 4, "batch_size": 8}, "data.samples_per_epoch=4 is less than one batch"),
        ({"num_workers": "abc"}, "data.num_workers is 'abc', not a finite integer"),
        ({"border_sigma": "abc"}, "data.border_sigma is 'abc', not a finite number"),
    ],
)
def test_bad_crop_or_batch_size_is_refused_before_reading(synthetic_root, option, message):
    with pytest.raises(CellsegError, match=re.escape(message)):
        CellDataModule(str(synthetic_root), **option).prepare_data()


def test_one_frame_name_is_a_list_of_one(synthetic_root):
    """``data.val_frames=syn_002`` from the command line is a string, not six one-letter names."""
    datamodule = CellDataModule(str(synthetic_root), crop_size=64, val_frames="syn_002", test_frames="syn_003")
    datamodule.setup()
    assert [f.name for f in datamodule.val_frames_data] == ["syn_002"]
    assert [f.name for f in datamodule.test_frames_data] == ["syn_003"]


def test_crop_batch_shapes(synthetic_root):
    datamodule = CellDataModule(str(synthetic_root), crop_size=64, samples_per_epoch=4, batch_size=2)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (2, 1, 64, 64)
    assert batch["target"].shape == (2, 2, 64, 64)
    assert set(np.unique(batch["target"].numpy())) <= {0.0, 1.0}
    val = next(iter(datamodule.val_dataloader()))
    assert val["labels"].shape == (1, 256, 256) and val["labels"].max() > 0


def test_instance_layout(tmp_path):
    root = write_instance_folder(tmp_path / "inst")
    assert detect_layout(root) == "instance"
    frames = find_frames(root)
    assert [f.name for f in frames] == ["f0", "f1", "f2"]
    image, labels = frames[0].load()
    assert image.dtype == np.uint16 and labels.max() > 0
    # a second mask of one name (masks/f1.png beside masks/f1.tif) is refused, not one picked
    iio.imwrite(root / "masks" / "f1.png", tifffile.imread(root / "masks" / "f1.tif").astype(np.uint8))
    with pytest.raises(CellsegError, match=r"frame 'f1' is annotated twice \(f1.tif \+ f1.png, f1.tif \+ f1.tif\)"):
        find_frames(root)
    # a layout named for a folder that lacks its subfolders: one line, not a FileNotFoundError
    (root / "masks").rename(root / "labels")
    for layout in ("instance", "npy_masks"):
        with pytest.raises(CellsegError, match=rf"data.layout={layout} reads images/ and masks/, and masks/ is not"):
            find_frames(root, layout)


def test_masks_suffix_layout_pairs_name_with_name_masks(tmp_path):
    """Cellpose's naming (and the napari plugin's corrections): NAME.tif beside NAME_masks.tif."""
    source = write_instance_folder(tmp_path / "inst")
    flat = tmp_path / "flat"
    flat.mkdir()
    for name in ("f0", "f2"):
        (source / "images" / f"{name}.tif").rename(flat / f"{name}.tif")
        (source / "masks" / f"{name}.tif").rename(flat / f"{name}_masks.tif")
    (source / "images" / "f1.tif").rename(flat / "f1.tif")  # not annotated: left out
    assert detect_layout(flat) == "masks_suffix"
    frames = find_frames(flat)
    assert [(f.name, f.mask_path.name) for f in frames] == [("f0", "f0_masks.tif"), ("f2", "f2_masks.tif")]
    image, labels = frames[1].load()
    assert np.array_equal(labels, tifffile.imread(flat / "f2_masks.tif")) and image.shape == labels.shape
    # macOS copies to exFAT or SMB drives leave ._NAME files beside each file: not frames
    for name in ("._f0.tif", "._f0_masks.tif"):
        (flat / name).write_bytes(b"\x00\x05\x16\x07" + bytes(60))
    assert [f.name for f in find_frames(flat)] == ["f0", "f2"]
    # one frame annotated twice (a .png mask beside the .tif one) would be trained on twice
    iio.imwrite(flat / "f0_masks.png", tifffile.imread(flat / "f0_masks.tif").astype(np.uint8))
    with pytest.raises(
        CellsegError, match=r"frame 'f0' is annotated twice \(f0.tif \+ f0_masks.png, f0.tif \+ f0_masks.tif\)"
    ):
        find_frames(flat)
    # or one mask for two images of one name (f2.tif beside f2.png): which it annotates is unknown
    (flat / "f0_masks.png").unlink()
    iio.imwrite(flat / "f2.png", tifffile.imread(flat / "f2.tif").astype(np.uint8))
    with pytest.raises(CellsegError, match=r"frame 'f2' is annotated twice \(f2.png \+ f2_masks.tif, f2.tif"):
        find_frames(flat)


def test_a_mask_stack_beside_a_movie_stack_gives_its_corrected_frames(tmp_path):
    rng = np.random.default_rng(1)
    pairs = [synthetic_frame(rng, 96, n_nuclei=4) for _ in range(4)]
    movie = np.stack([image for image, _ in pairs]).astype(np.uint16)
    masks = np.stack([labels for _, labels in pairs]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "mov.tif", movie, photometric="minisblack")  # 4 frames, not RGBA
    tifffile.imwrite(
        tmp_path / "mov_masks.tif", masks, photometric="minisblack", metadata={"corrected_frames": [3, 1]}
    )  # as napari saves
    frames = find_frames(tmp_path)
    assert [(f.name, f.page) for f in frames] == [("mov_t001", 1), ("mov_t003", 3)]
    image, labels = frames[1].load()
    assert np.array_equal(image, movie[3]) and np.array_equal(labels, masks[3])
    with tifffile.TiffWriter(tmp_path / "pages.tif") as tif:  # a page per frame, and an ImageJ hyperstack
        for frame in movie:
            tif.write(frame)
    tifffile.imwrite(tmp_path / "imagej.tif", movie, imagej=True, metadata={"axes": "TYX"})
    for name in ("mov.tif", "pages.tif", "imagej.tif"):  # one page read, the frame asked for
        assert all(np.array_equal(read_page(tmp_path / name, t), movie[t]) for t in range(4)), name
    (tmp_path / "pages.tif").unlink()
    (tmp_path / "imagej.tif").unlink()
    # a whole annotated stack from another tool
    tifffile.imwrite(tmp_path / "mov_masks.tif", masks, photometric="minisblack")
    assert [f.name for f in find_frames(tmp_path)] == ["mov_t000", "mov_t001", "mov_t002", "mov_t003"]
    datamodule = CellDataModule(str(tmp_path), crop_size=64, val_frames=["mov_t003"], test_gap=0)
    datamodule.setup()
    assert [f.name for f in datamodule.train_frames] == ["mov_t000", "mov_t001", "mov_t002"]
    tifffile.imwrite(tmp_path / "mov_masks.tif", masks, photometric="minisblack", metadata={"corrected_frames": [7]})
    with pytest.raises(CellsegError, match=r"mov_masks.tif: corrected_frames \[7\] are not frames of its 4"):
        find_frames(tmp_path)
    tifffile.imwrite(tmp_path / "mov.tif", movie, imagej=True, metadata={"axes": "ZYX"})  # planes, not time
    tifffile.imwrite(tmp_path / "mov_masks.tif", masks, photometric="minisblack")
    with pytest.raises(CellsegError, match=r"mov.tif: Z-stack"):
        find_frames(tmp_path)
    tifffile.imwrite(tmp_path / "mov.tif", movie[:3], photometric="minisblack")  # fewer frames than masks
    with pytest.raises(CellsegError, match=r"mov_masks.tif: a mask stack of 4 frames beside mov.tif of 3 frames"):
        find_frames(tmp_path)
    tifffile.imwrite(tmp_path / "mov.tif", movie[0])  # one frame beside a mask stack
    with pytest.raises(CellsegError, match=r"mov_masks.tif: a mask stack of 4 frames beside mov.tif of axes YX"):
        find_frames(tmp_path)
    tifffile.imwrite(tmp_path / "mov_masks.tif", np.repeat(masks[0][..., None], 3, axis=2).astype(np.uint8))
    (frame,) = find_frames(tmp_path)  # a colour mask is no stack: refused as colour when read
    with pytest.raises(CellsegError, match=r"mov_masks.tif: colour image"):
        frame.load()


def test_ctc_layout(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "01").mkdir()
    (tmp_path / "01_GT" / "SEG").mkdir(parents=True)
    for t in (0, 5):
        image, labels = synthetic_frame(rng, 64, n_nuclei=3)
        tifffile.imwrite(tmp_path / "01" / f"t{t:03d}.tif", image)
        tifffile.imwrite(tmp_path / "01_GT" / "SEG" / f"man_seg{t:03d}.tif", labels.astype(np.uint16))
    tifffile.imwrite(tmp_path / "01" / "t001.tif", image)  # no annotation: not a pair
    frames = find_frames(tmp_path)
    assert [f.name for f in frames] == ["01_t000", "01_t005"]


def test_npy_layout_builds_instances(tmp_path):
    labels = two_touching_cells()
    edge = edge_band(labels, 1)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    tifffile.imwrite(tmp_path / "images" / "phase_001.tif", (labels * 100).astype(np.uint16))
    np.save(tmp_path / "masks" / "image_001_mask_cells.npy", ((labels > 0) & ~edge).astype(np.uint8) * 255)
    np.save(tmp_path / "masks" / "image_001_mask_edges.npy", edge.astype(np.uint8) * 255)
    np.save(tmp_path / "masks" / "image_001_mask_other.npy", (labels == 0).astype(np.uint8) * 255)
    (tmp_path / "masks" / "._001_mask_cells.npy").write_bytes(bytes(64))  # a macOS copy's shadow, same id
    (frame,) = find_frames(tmp_path)
    assert frame.name == "phase_001"
    _, rebuilt = frame.load()
    assert rebuilt.max() == 2 and np.array_equal(rebuilt > 0, labels > 0)


def test_bacteria_layout_on_real_data():
    root = shared("bacteria-phase")
    (frame,) = find_frames(root)
    image, labels = frame.load()
    assert image.dtype == np.uint16 and labels.max() > 400


def test_gowt1_reads_with_lzw():
    frames = find_frames(shared("gowt1"))
    assert len(frames) == 4
    image, labels = frames[0].load()
    assert image.dtype == np.uint8 and image.shape == labels.shape == (1024, 1024)


def test_percentile_normalize():
    image = np.arange(1000, dtype=np.uint16).reshape(10, 100)
    out = percentile_normalize(image, 1, 99)
    assert out.dtype == np.float32
    assert np.isclose(np.percentile(out, 1), 0, atol=1e-6) and np.isclose(np.percentile(out, 99), 1, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32])
@pytest.mark.parametrize("size", [1, 2, 7, 5000])
def test_percentiles_equal_numpys(dtype, size):
    values = np.random.default_rng(size).gamma(2.0, 40.0, size=size).astype(dtype)
    q = (0.0, 1.0, 2.5, 50.0, 99.8, 100.0)
    assert np.allclose(percentiles(values, q), np.percentile(values, q), rtol=1e-12, atol=0)


# -- errors a user sees, one line each, naming the file ---------------------------------


def setup_error(root, **kwargs) -> str:
    with pytest.raises(CellsegError) as err:
        CellDataModule(str(root), **kwargs).setup()
    message = str(err.value)
    assert "\n" not in message
    return message


def test_error_missing_root(tmp_path):
    assert "data folder not found" in setup_error(tmp_path / "nope")


def test_error_no_pairs(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", np.ones((64, 64), np.uint8))
    tifffile.imwrite(tmp_path / "masks" / "b.tif", np.ones((64, 64), np.uint8))
    assert "no image/mask pairs" in setup_error(tmp_path)


def test_error_shape_mismatch(tmp_path):
    root = write_instance_folder(tmp_path / "d")
    tifffile.imwrite(root / "masks" / "f1.tif", np.ones((100, 90), np.uint16))
    message = setup_error(root, crop_size=64)
    assert "f1.tif" in message and "does not match" in message


def test_error_constant_image(tmp_path):
    root = write_instance_folder(tmp_path / "d")
    tifffile.imwrite(root / "images" / "f2.tif", np.full((256, 256), 7, np.uint16))
    message = setup_error(root, crop_size=64)
    assert "f2.tif" in message and "constant" in message


def test_error_empty_image(tmp_path):
    root = write_instance_folder(tmp_path / "d")
    np.save(root / "images" / "f0.npy", np.zeros((0, 0), np.uint8))
    (root / "images" / "f0.tif").unlink()
    message = setup_error(root, crop_size=64)
    assert "f0.npy" in message and "empty" in message


def test_a_mask_without_cells_trains_as_background_unless_a_split_has_none(tmp_path, caplog):
    root = write_instance_folder(tmp_path / "d")
    tifffile.imwrite(root / "masks" / "f1.tif", np.zeros((256, 256), np.uint16))  # every detection was false
    datamodule = CellDataModule(str(root), crop_size=64, val_frames=["f2"])
    datamodule.setup()
    assert [f.name for f in datamodule.train_frames] == ["f0", "f1"]
    assert "f1.tif (frame f1): mask has no cells" in caplog.text
    assert datamodule.smallest_cell is not None
    message = setup_error(root, crop_size=64, val_frames=["f1"])
    assert "held to validate on (f1) has no annotated cell" in message
    message = setup_error(root, crop_size=64, test_frames=["f1"], test_gap=0)
    assert "held to test on (f1) has no annotated cell" in message
    for name in ("f0", "f2"):
        tifffile.imwrite(root / "masks" / f"{name}.tif", np.zeros((256, 256), np.uint16))
    assert "held to train on (f0, f2) has no annotated cell" in setup_error(root, crop_size=64, val_frames=["f1"])


def test_error_wrong_dtype(tmp_path):
    root = write_instance_folder(tmp_path / "d")
    np.save(root / "images" / "f0.npy", np.ones((256, 256), bool))
    (root / "images" / "f0.tif").unlink()
    assert "dtype bool" in setup_error(root, crop_size=64)


def test_error_image_smaller_than_crop(tmp_path):
    root = write_instance_folder(tmp_path / "d", size=128)
    message = setup_error(root, crop_size=256)
    assert "smaller than data.crop_size=256" in message and "f0.tif" in message


def test_error_nan_pixels_in_a_training_image(tmp_path):
    root = write_instance_folder(tmp_path / "d")
    image = tifffile.imread(root / "images" / "f1.tif").astype(np.float32)
    image[10:12, 20] = np.nan
    tifffile.imwrite(root / "images" / "f1.tif", image)
    message = setup_error(root, crop_size=64)
    assert "f1.tif: 2 NaN or infinite pixels" in message


def test_error_single_frame_needs_region(tmp_path):
    root = write_instance_folder(tmp_path / "d", n=1)
    assert "data.val_region" in setup_error(root, crop_size=64)


def test_a_frame_is_near_itself_whatever_its_digits():
    """CTC sequences past 999 frames name the trained frame 01_t0052 and its reference mask
    01_t052: with data.test_gap=0 they are still one frame (its SEG is not unseen)."""
    assert near("01_t052", ["01_t0052"], 0) and near("01_t0052", ["01_t052"], 0)
    assert not near("01_t053", ["01_t0052"], 0) and near("01_t053", ["01_t0052"], 1)
    assert not near("02_t052", ["01_t0052"], 3)  # another sequence


def test_a_test_region_that_leaves_frames_under_one_crop_is_refused(synthetic_root):
    datamodule = CellDataModule(str(synthetic_root), crop_size=256, test_region=0.2, val_region=None)
    with pytest.raises(CellsegError, match=r"syn_000 keeps 205x256 px to train on after data.test_region=0.2"):
        datamodule.setup()


def test_labels_past_int32_are_refused_not_wrapped(tmp_path):
    tifffile.imwrite(tmp_path / "m.tif", np.array([[0, 2**31], [1, 1]], np.uint32))
    with pytest.raises(CellsegError, match=r"m.tif: label 2147483648 is past 2147483647; renumber the cells 1..N"):
        read_labels(tmp_path / "m.tif")
