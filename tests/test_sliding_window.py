"""Tests of the sliding-window pieces: tile grid, padding, importance map, blending."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from iterdce.inference.sliding_window import (
    _importance_numpy,
    finalize,
    gaussian_importance_map,
    pad_to_patch,
    tile_grid,
    tile_starts,
)
from iterdce.inference.tiled import blend_batch

torch.set_num_threads(1)


@pytest.mark.parametrize("image_size", [1, 15, 16, 17, 20, 31, 32, 33, 47, 64, 100, 161])
@pytest.mark.parametrize("patch_size", [1, 5, 7, 16, 24])
@pytest.mark.parametrize("step_fraction", [0.25, 0.5, 0.7, 1.0])
def test_tile_starts_cover_axis_with_bounded_steps(image_size, patch_size, step_fraction):
    starts = tile_starts(image_size, patch_size, step_fraction)
    assert starts[0] == 0
    if image_size <= patch_size:
        assert starts == [0]
        return
    assert starts[-1] == image_size - patch_size  # the last tile ends exactly at the edge
    steps = np.diff(starts)
    assert (steps >= 1).all()
    assert (steps <= max(1, math.floor(step_fraction * patch_size))).all()
    covered = np.zeros(image_size, dtype=int)
    for s in starts:
        covered[s : s + patch_size] += 1
    assert (covered >= 1).all()


def test_tile_starts_matches_nnunet_rule_for_integer_steps():
    # (100 - 32) / 16 = 4.25 -> 6 tiles, evenly spread over [0, 68].
    assert tile_starts(100, 32, 0.5) == [0, 14, 27, 41, 54, 68]
    assert tile_starts(64, 32, 0.5) == [0, 16, 32]
    assert tile_starts(64, 32, 1.0) == [0, 32]
    assert tile_starts(10, 5, 0.5) == [0, 2, 3, 5]  # floor(2.5) = 2: never a step of 3


@pytest.mark.parametrize(
    "bad", [dict(image_size=0, patch_size=4), dict(image_size=8, patch_size=0),
            dict(image_size=8, patch_size=4, step_fraction=0.0),
            dict(image_size=8, patch_size=4, step_fraction=1.5)]
)
def test_tile_starts_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        tile_starts(**bad)


@pytest.mark.parametrize(
    "image_shape, patch_size",
    [((32, 32, 16), (16, 16, 8)), ((45, 20, 9), (16, 20, 4)), ((64, 33, 7), (32, 12, 7))],
)
def test_tile_grid_covers_anisotropic_volume(image_shape, patch_size):
    tiles = tile_grid(image_shape, patch_size, 0.5)
    counts = np.zeros(image_shape, dtype=int)
    for tile in tiles:
        assert len(tile) == 3
        assert tuple(s.stop - s.start for s in tile) == tuple(patch_size)
        assert all(0 <= s.start and s.stop <= n for s, n in zip(tile, image_shape))
        counts[tile] += 1
    assert (counts >= 1).all()
    expected = math.prod(len(tile_starts(i, p, 0.5)) for i, p in zip(image_shape, patch_size))
    assert len(tiles) == expected
    assert len({tuple((s.start, s.stop) for s in tile) for tile in tiles}) == len(tiles)


def test_tile_grid_rejects_volume_smaller_than_patch_and_rank_mismatch():
    with pytest.raises(ValueError, match="pad_to_patch"):
        tile_grid((10, 32, 32), (16, 16, 16))
    with pytest.raises(ValueError, match="differ in length"):
        tile_grid((32, 32), (16, 16, 16))


def test_pad_to_patch_numpy_pads_symmetrically_and_undoes():
    rng = np.random.default_rng(0)
    volume = rng.normal(size=(2, 5, 20, 3)).astype(np.float32)  # channel axis in front
    padded, undo = pad_to_patch(volume, (8, 16, 8), value=-1.0)
    assert padded.shape == (2, 8, 20, 8)
    assert padded.dtype == np.float32
    np.testing.assert_array_equal(padded[undo], volume)
    # 5 -> 8: one voxel before, two after; 3 -> 8: two before, three after.
    assert undo[1:] == (slice(1, 6), slice(0, 20), slice(2, 5))
    assert (padded[:, 0] == -1).all() and (padded[:, 6:] == -1).all()
    assert (padded[..., :2] == -1).all() and (padded[..., 5:] == -1).all()


def test_pad_to_patch_torch_matches_numpy():
    volume = torch.arange(3 * 4 * 5, dtype=torch.float32).reshape(1, 3, 4, 5)
    padded, undo = pad_to_patch(volume, (6, 4, 8))
    assert isinstance(padded, torch.Tensor) and padded.shape == (1, 6, 4, 8)
    torch.testing.assert_close(padded[undo], volume)
    padded_np, undo_np = pad_to_patch(volume.numpy(), (6, 4, 8))
    assert undo == undo_np
    np.testing.assert_array_equal(padded.numpy(), padded_np)


def test_pad_to_patch_returns_input_when_large_enough():
    volume = np.zeros((16, 16, 16))
    padded, undo = pad_to_patch(volume, (8, 16, 4))
    assert padded is volume
    np.testing.assert_array_equal(padded[undo], volume)
    with pytest.raises(ValueError, match="fewer than"):
        pad_to_patch(np.zeros((4, 4)), (4, 4, 4))


@pytest.mark.parametrize("patch_size", [(16, 16, 8), (7, 12, 5)])
def test_importance_map_is_normalized_symmetric_positive(patch_size):
    weights = gaussian_importance_map(patch_size)
    assert weights.shape == patch_size and weights.dtype == torch.float32
    assert float(weights.max()) == pytest.approx(1.0)
    assert float(weights.min()) >= 1e-3
    for axis in range(3):
        torch.testing.assert_close(weights, weights.flip(axis), rtol=0, atol=0)
    centre = tuple(p // 2 for p in patch_size)
    corner = (0, 0, 0)
    assert weights[centre] > weights[corner]


def test_importance_map_is_cached_and_calls_are_independent():
    _importance_numpy.cache_clear()
    first = gaussian_importance_map((8, 8, 4), dtype=torch.float64)
    first.zero_()  # callers may modify their copy ...
    second = gaussian_importance_map((8, 8, 4), dtype=torch.float64)
    assert float(second.max()) == pytest.approx(1.0)  # ... without touching the cache
    info = _importance_numpy.cache_info()
    assert info.misses == 1 and info.hits == 1
    # the map is a product of per-axis Gaussians with sigma = patch / 8
    centred = np.arange(8) - 3.5
    axis = np.exp(-0.5 * (centred / 1.0) ** 2)
    np.testing.assert_allclose(second[:, 4, 2].numpy(), np.maximum(axis / axis.max(), 1e-3), rtol=1e-12)


def test_importance_map_rejects_bad_arguments():
    with pytest.raises(ValueError):
        gaussian_importance_map((8, 8, 0))
    with pytest.raises(ValueError):
        gaussian_importance_map((8, 8, 8), sigma_scale=0)


def _blend(volume: torch.Tensor, patch_size: tuple[int, ...], make_tile) -> torch.Tensor:
    accumulator = torch.zeros_like(volume)
    weight_sum = torch.zeros(volume.shape[-3:], dtype=volume.dtype)
    importance = gaussian_importance_map(patch_size, dtype=volume.dtype)
    for tile in tile_grid(volume.shape[-3:], patch_size, 0.5):
        blend_batch(accumulator, weight_sum, make_tile(tile)[None], [tile], importance)
    return finalize(accumulator, weight_sum)


def test_blending_constant_tiles_gives_the_constant():
    volume = torch.zeros(2, 32, 32, 16)
    patch = (16, 12, 8)
    out = _blend(volume, patch, lambda tile: torch.full((2, *patch), 3.25))
    torch.testing.assert_close(out, torch.full_like(volume, 3.25), rtol=1e-6, atol=0)


def test_blending_consistent_tiles_reconstructs_the_volume():
    volume = torch.randn(3, 30, 21, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = _blend(volume, (16, 16, 8), lambda tile: volume[(..., *tile)].clone())
    torch.testing.assert_close(out, volume, rtol=1e-12, atol=1e-12)


def test_blending_is_weighted_by_importance():
    volume = torch.zeros(1, 24, 8, 8, dtype=torch.float64)
    patch = (16, 8, 8)
    tiles = tile_grid(volume.shape[-3:], patch, 0.5)
    assert [t[0] for t in tiles] == [slice(0, 16), slice(8, 24)]
    values = {0: 0.0, 8: 1.0}
    out = _blend(volume, patch, lambda tile: torch.full((1, *patch), values[tile[0].start], dtype=torch.float64))
    assert torch.all(out[0, :8] == 0) and torch.all(out[0, 16:] == 1)
    overlap = out[0, 8:16, 4, 4]
    assert torch.all(torch.diff(overlap) > 0)  # weight shifts towards the second tile's centre
    torch.testing.assert_close(overlap + overlap.flip(0), torch.ones(8, dtype=torch.float64))


def test_finalize_refuses_voxels_no_tile_covered():
    accumulator = torch.zeros(1, 8, 8, 8)
    weight_sum = torch.zeros(8, 8, 8)
    tile = (slice(0, 4), slice(0, 4), slice(0, 4))
    blend_batch(accumulator, weight_sum, torch.ones(1, 1, 4, 4, 4), [tile], torch.ones(4, 4, 4))
    with pytest.raises(ValueError, match="covered by no tile"):
        finalize(accumulator, weight_sum)
