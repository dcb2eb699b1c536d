"""Tiled inference and test-time augmentation against answers worked out by hand.

The fake networks here see where their tile lies: the input image holds each pixel's own
flat index ``y * W + x``, so a tile's top-left pixel names its position. A network that
returns its tile's position as a constant makes the blend a weighted mean of tile
positions, which any wrong blending weight or misplaced tile changes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cellseg.data.synthetic import synthetic_frame
from cellseg.inference.predictor import Predictor
from cellseg.inference.tiling import predict_tiled, tile_starts

from .conftest import calibrate_batchnorm


def position_image(height: int, width: int) -> np.ndarray:
    """Every pixel holds its flat index (exact in float32 up to 2**24 pixels)."""
    return np.arange(height * width, dtype=np.float32).reshape(height, width)


class PositionNet:
    """A fake network that sees where its tiles lie and records its calls.

    ``field=None``: each tile's output is the constant (y0, x0) of its top-left pixel.
    ``field=f``: each tile's output is ``f(y, x)`` at the global coordinates of its pixels,
    worked out from y0, x0 and the position within the tile.
    """

    def __init__(self, width: int, field=None):
        self.width, self.field = width, field
        self.calls: list[int] = []
        self.origins: list[tuple[int, int]] = []

    def __call__(self, batch: torch.Tensor) -> np.ndarray:
        tiles = batch.numpy()
        assert tiles.ndim == 4 and tiles.shape[1] == 1 and tiles.dtype == np.float32
        self.calls.append(len(tiles))
        n, _, h, w = tiles.shape
        out = np.empty((n, 2, h, w), np.float32)
        for i, tile in enumerate(tiles[:, 0]):
            y0, x0 = divmod(int(tile[0, 0]), self.width)
            self.origins.append((y0, x0))
            # the tile must be the image's pixels at that place, unchanged
            yy, xx = np.mgrid[y0 : y0 + h, x0 : x0 + w]
            assert np.array_equal(tile, (yy * self.width + xx).astype(np.float32)), (y0, x0)
            out[i] = np.array([y0, x0])[:, None, None] if self.field is None else self.field(yy, xx)
        return out


def smooth_field(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Two smooth, non-separable channels of the global coordinates."""
    return np.stack([np.sin(yy / 17.0) * np.cos(xx / 23.0), 1e-4 * yy * xx + 0.01 * xx])


# -- tile positions ----------------------------------------------------------------------


def test_tile_starts_edge_cases():
    assert tile_starts(64, 64, 16) == [0]  # exactly one tile
    assert tile_starts(30, 64, 16) == [0]  # smaller than a tile
    assert tile_starts(65, 64, 16) == [0, 1]  # one pixel more: the last tile is shifted by 1
    assert tile_starts(112, 64, 16) == [0, 48]  # overlap exactly 16
    assert tile_starts(130, 64, 16) == [0, 48, 66]  # the last tile overlaps its neighbour by 46
    assert tile_starts(128, 64, 0) == [0, 64]  # no overlap: side by side
    assert tile_starts(70, 64, 63) == [0, 1, 2, 3, 4, 5, 6]  # step of 1


# -- blending weights, by hand -----------------------------------------------------------


def test_two_tiles_blend_linearly_across_their_overlap():
    # width 112, tile 64, overlap 16: tiles at x = 0 and x = 48 share columns 48..63, where
    # the first fades out and the second in as (i + 0.5) / 16; rows fit one tile
    net = PositionNet(112)
    out = predict_tiled(net, position_image(40, 112), tile=64, overlap=16)
    assert out.shape == (2, 40, 112) and out.dtype == np.float32
    assert np.all(out[0] == 0)  # a single row of tiles: y0 = 0 everywhere
    expected = np.zeros(112, np.float32)
    expected[48:64] = 48 * (np.arange(16) + 0.5) / 16
    expected[64:] = 48
    assert np.allclose(out[1], expected[None, :], rtol=0, atol=1e-4)
    assert out[1, 0, 48] == pytest.approx(1.5) and out[1, 0, 63] == pytest.approx(46.5)
    assert sorted(net.origins) == [(0, 0), (0, 48)]


def x_profile_130() -> dict[int, float]:
    """Blend of tiles at x = 0, 48, 66 (tile 64, overlap 16) where each tile says its x0.

    Columns 48..63: tile 0 fades out, tile 48 in (weights sum to 1). 64, 65: tile 48 alone.
    66..81: tile 48 at weight 1, tile 66 fading in. 82..95: both at weight 1. 96..111: tile
    48 fading out, tile 66 at 1. 112..129: tile 66 alone.
    """
    return {
        0: 0.0,
        47: 0.0,
        48: 48 * 0.5 / 16,
        63: 48 * 15.5 / 16,
        64: 48.0,
        65: 48.0,
        66: (48 + 66 / 32) / (1 + 1 / 32),  # tile 66's first weight is 0.5 / 16 = 1/32
        81: (48 + 66 * 31 / 32) / (1 + 31 / 32),
        82: 57.0,
        95: 57.0,
        96: (48 * 31 / 32 + 66) / (31 / 32 + 1),
        111: (48 / 32 + 66) / (1 / 32 + 1),
        112: 66.0,
        129: 66.0,
    }


def test_three_tiles_with_an_uneven_last_overlap():
    net = PositionNet(130)
    out = predict_tiled(net, position_image(20, 130), tile=64, overlap=16)
    for x, value in x_profile_130().items():
        assert out[1, 0, x] == pytest.approx(value, abs=1e-4), x
    assert sorted(net.origins) == [(0, 0), (0, 48), (0, 66)]


def test_grid_of_tiles_blends_rows_and_columns_independently():
    net = PositionNet(130)
    out = predict_tiled(net, position_image(130, 130), tile=64, overlap=16, batch_size=4)
    y_of, x_of = out[0], out[1]
    assert np.allclose(y_of, y_of[:, :1]) and np.allclose(x_of, x_of[:1, :])  # y0 varies with y only
    for x, value in x_profile_130().items():
        assert x_of[0, x] == pytest.approx(value, abs=1e-4), x
        assert y_of[x, 0] == pytest.approx(value, abs=1e-4), x  # the same profile down the rows
    assert sorted(net.origins) == [(y, x) for y in (0, 48, 66) for x in (0, 48, 66)]
    assert net.calls == [4, 4, 1]


def test_one_pixel_more_than_a_tile():
    # tiles at x = 0 and x = 1 overlap by 63 px: both have weight 1 in columns 17..47
    out = predict_tiled(PositionNet(65), position_image(10, 65), tile=64, overlap=16)[1, 0]
    assert out[0] == 0.0 and out[64] == 1.0
    assert np.allclose(out[17:48], 0.5)
    assert out[1] == pytest.approx((0.5 / 16) / (1 + 0.5 / 16))  # tile 1 fades in from column 1
    assert out[63] == pytest.approx(1 / (0.5 / 16 + 1))  # tile 0 fades out up to column 63


@pytest.mark.parametrize(("width", "expected"), [(128, [0] * 64 + [64] * 64), (100, [0] * 36 + [18] * 28 + [36] * 36)])
def test_no_overlap_means_no_ramps(width, expected):
    out = predict_tiled(PositionNet(width), position_image(8, width), tile=64, overlap=0)[1, 0]
    assert np.array_equal(out, np.array(expected, np.float32))


# -- a smooth field is reproduced exactly, whatever the sizes ----------------------------


@pytest.mark.parametrize(
    ("shape", "tile", "overlap", "batch_size"),
    [
        ((300, 200), 64, 16, 3),  # neither side a multiple of the tile or of the step
        ((50, 130), 64, 16, 2),  # shorter than a tile: tiles cut to the image's height
        ((130, 50), 64, 16, 5),  # narrower than a tile
        ((65, 97), 64, 16, 1),
        ((70, 70), 64, 63, 7),  # overlap of all but one pixel
        ((96, 96), 32, 20, 4),  # overlap over half the tile: ramps meet in the middle
        ((128, 100), 64, 0, 3),
    ],
)
def test_blending_reproduces_a_smooth_field(shape, tile, overlap, batch_size):
    net = PositionNet(shape[1], smooth_field)
    out = predict_tiled(net, position_image(*shape), tile=tile, overlap=overlap, batch_size=batch_size)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    assert out.shape == (2, *shape) and np.isfinite(out).all()
    assert np.allclose(out, smooth_field(yy, xx), rtol=0, atol=1e-5)
    ys, xs = tile_starts(shape[0], tile, overlap), tile_starts(shape[1], tile, overlap)
    assert sorted(net.origins) == [(y, x) for y in ys for x in xs]  # every tile exactly once
    assert max(net.calls) <= batch_size


@pytest.mark.parametrize("shape", [(64, 64), (30, 50), (64, 17)])
def test_image_within_one_tile_is_one_call_on_the_whole_image(shape):
    net = PositionNet(shape[1], smooth_field)
    out = predict_tiled(net, position_image(*shape), tile=64, overlap=16, batch_size=4)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    assert net.calls == [1] and net.origins == [(0, 0)]
    assert out.shape == (2, *shape) and np.array_equal(out, smooth_field(yy, xx).astype(np.float32))


# -- test-time augmentation --------------------------------------------------------------


@pytest.fixture(scope="module")
def random_net_ckpt(tmp_path_factory) -> Path:
    """A checkpoint of an untrained googlenet_skip with calibrated batch norm (far from
    flip-symmetric), holding what :class:`Predictor` reads."""
    from cellseg.models.nets.googlenet_skip import GoogLeNetSkip

    torch.manual_seed(0)
    net = calibrate_batchnorm(GoogLeNetSkip(), (2, 1, 64, 64))
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    checkpoint = {
        "state_dict": {**state, "threshold": torch.tensor(0.5)},
        "hyper_parameters": {
            "net": {"_target_": "cellseg.models.nets.googlenet_skip.GoogLeNetSkip"},
            "data": {"norm": {"low": 1.0, "high": 99.8}, "edge_width": 2, "in_channels": 1},
            "postprocess": {"method": "threshold", "min_size": 15},
        },
    }
    path = tmp_path_factory.mktemp("random_net") / "random.ckpt"
    torch.save(checkpoint, path)
    return path


FLIPS = [(1,), (0,), (0, 1)]  # of a (Y, X) image; the probabilities are (C, Y, X)


def flip_prob(prob: np.ndarray, dims: tuple[int, ...]) -> np.ndarray:
    """Flip (C, Y, X) probabilities along the image dims ``dims`` of (Y, X)."""
    return np.flip(prob, tuple(d + 1 for d in dims))


def test_tta_probabilities_are_flip_equivariant(random_net_ckpt):
    image, _ = synthetic_frame(np.random.default_rng(7), (40, 52))  # not a multiple of 32: padded
    tta = Predictor(random_net_ckpt, device="cpu", precision="fp32", tta=True)
    plain = Predictor(random_net_ckpt, device="cpu", precision="fp32", tta=False)
    prob = tta.probabilities(image)
    assert prob.shape == (2, 40, 52)
    # TTA is the mean of the plain predictions of the 4 flips, each flipped back
    flipped_plain = {dims: plain.probabilities(np.flip(image, dims).copy()) for dims in [(), *FLIPS]}
    mean = sum(flip_prob(p, dims) for dims, p in flipped_plain.items()) / 4
    assert np.allclose(prob, mean, rtol=0, atol=1e-5)
    # so the probabilities of the flipped image are the flipped probabilities ...
    assert np.allclose(tta.probabilities(np.flip(image, 1).copy()), flip_prob(prob, (1,)), rtol=0, atol=1e-5)
    # ... which they are not without TTA: the net is not flip-symmetric, and TTA changes its output
    for dims in FLIPS:
        assert np.abs(flipped_plain[dims] - flip_prob(flipped_plain[()], dims)).max() > 1e-2, dims
    assert np.abs(prob - flipped_plain[()]).max() > 1e-2
