"""The automatic inference tile: whole volume when it fits, smaller tiles within the budget, pooling rounding."""
from __future__ import annotations

import pytest

from iterdce.inference.sliding_window import tile_grid
from iterdce.inference.tile_choice import (
    CPU_BUDGET_GB,
    CUDA_FREE_FRACTION,
    NetworkShape,
    choose_tile,
    forward_bytes,
    memory_budget,
    round_up,
    tiles_along,
)

NET = NetworkShape((8, 16, 32), ((2, 2, 2), (2, 2, 2)), in_channels=2, out_channels=4)
PATCH = [24, 24, 20]
GIB = 2**30


def test_divisor_is_the_product_of_the_pooling():
    assert NET.divisor == (4, 4, 4)
    assert NetworkShape((8, 16, 32), ((2, 2, 1), (2, 2, 2)), 2, 4).divisor == (4, 4, 2)


def test_round_up_to_the_divisor():
    assert round_up([160, 127, 45], [4, 4, 4]) == [160, 128, 48]
    assert round_up([1, 3, 8], [4, 4, 8]) == [4, 4, 8]


def test_whole_volume_rounded_up_when_the_budget_allows():
    assert choose_tile([87, 70, 36], PATCH, NET, 4 * GIB, tile_batch=4) == [88, 72, 36]
    assert choose_tile([160, 128, 48], PATCH, NET, 4 * GIB, tile_batch=4) == [160, 128, 48]


def test_small_budget_gives_smaller_tiles_that_respect_it():
    volume = [160, 128, 48]
    whole = forward_bytes(round_up(volume, NET.divisor), 1, NET)
    budget = whole / 3
    tile = choose_tile(volume, PATCH, NET, budget, tile_batch=4)
    assert tile != [160, 128, 48]
    assert all(t % d == 0 for t, d in zip(tile, NET.divisor))
    assert all(p <= t <= v for p, t, v in zip(round_up(PATCH, NET.divisor), tile, volume))
    per_forward = min(4, tiles_along(volume, tile, 0.5))
    assert forward_bytes(tile, per_forward, NET) <= budget


def test_budget_below_the_patch_falls_back_to_the_patch():
    assert choose_tile([160, 128, 48], PATCH, NET, 1.0, tile_batch=4) == [24, 24, 20]


def test_volume_smaller_than_the_patch_is_one_tile_of_the_volume():
    assert choose_tile([10, 30, 7], PATCH, NET, 1.0, tile_batch=4) == [12, 24, 8]


def test_tiles_along_matches_the_tile_grid():
    for volume, tile in (([160, 128, 48], [24, 24, 20]), ([160, 128, 48], [96, 64, 48]), ([50, 40, 30], [8, 8, 8])):
        assert tiles_along(volume, tile, 0.5) == len(tile_grid(volume, tile, 0.5))


def test_estimate_grows_with_tiles_and_voxels():
    one = forward_bytes([32, 32, 16], 1, NET)
    assert forward_bytes([32, 32, 16], 4, NET) == 4 * one
    assert forward_bytes([64, 32, 16], 1, NET) == pytest.approx(2 * one, rel=1e-6)


def test_memory_budget_per_device():
    assert memory_budget("cpu") == CPU_BUDGET_GB * GIB
    assert memory_budget("cpu", 0.5) == 0.5 * GIB
    assert memory_budget("cuda", None, 10 * GIB) == CUDA_FREE_FRACTION * 10 * GIB
    assert memory_budget("cuda", 1.0, 10 * GIB) == 1.0 * GIB
