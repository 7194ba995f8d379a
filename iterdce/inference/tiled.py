"""Tile-major recursive synthesis of a whole volume: for each tile all steps run with the ConvLSTM state held
inside the tile, and every step's output is blended into its own accumulator with Gaussian weights.

A pure function of tensors and models, like MONAI's ``sliding_window_inference``, but the recursion lives
inside the tile, matching patch-based training and holding only one tile batch's state in memory.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from tqdm import tqdm

from iterdce.inference.sliding_window import (
    DEFAULT_MIN_WEIGHT,
    DEFAULT_SIGMA_SCALE,
    finalize,
    gaussian_importance_map,
    pad_to_patch,
    tile_grid,
)
from iterdce.network.precision import autocast_context, resolve_precision


def mirror_sets(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of the mirror axes (the empty set first): the flips of test-time augmentation."""
    return [combo for r in range(len(axes) + 1) for combo in itertools.combinations(axes, r)]


def bind_times(model: nn.Module, times_s: Tensor) -> Callable[[Tensor], Tensor]:
    """``tiles -> model(tiles, times)`` for tile batches of any size, times_s [P] shared by every tile.

    A model offering ``time_biases`` (IterativeSynthesizer) gets its time embedding computed here, once per
    volume with batch 1, and broadcast over every tile batch, instead of once per step of every tile batch.
    """
    precompute = getattr(model, "time_biases", None)
    biases = precompute(times_s[None]) if precompute is not None else None
    if biases is None:
        return lambda tiles: model(tiles, times_s.expand(len(tiles), -1))
    return lambda tiles: model(tiles, times_s.expand(len(tiles), -1), time_biases=biases)


def synthesize_tiles(models: Sequence[Callable[[Tensor], Tensor]], tiles: Tensor,
                     mirror_axes: Sequence[int] = ()) -> Tensor:
    """Mean over models (folds, each bound to the case's times by ``bind_times``) and mirrorings of the
    synthesized phases of a tile batch [B, n_in, ...]."""
    total: Tensor | None = None
    flips = mirror_sets(mirror_axes)
    for model in models:
        for flip in flips:
            dims = [2 + a for a in flip]
            x = torch.flip(tiles, dims) if dims else tiles
            out = model(x).float()
            out = torch.flip(out, dims) if dims else out
            total = out if total is None else total + out
    if total is None:
        raise ValueError("no models to synthesize with")
    return total / (len(models) * len(flips))


def importance_floor(patch_size: Sequence[int], sigma_scale: float = DEFAULT_SIGMA_SCALE,
                     floor: float = DEFAULT_MIN_WEIGHT) -> float:
    """Smallest tile weight relative to the peak: MONAI's convention, ``floor`` of the *unnormalised* Gaussian.

    For an even patch size the centre falls between voxels, so the Gaussian's largest sample is below 1 and
    MONAI's floor of 1e-3 is slightly more than 1e-3 of the peak; using the same floor makes the two
    blendings agree to float precision (benchmarks/bench_predict.py).
    """
    peak = math.prod(math.exp(-0.5 * ((((p - 1) / 2.0) % 1.0) / (p * sigma_scale)) ** 2) for p in patch_size)
    return min(1.0, floor / peak)


def blend_batch(accumulator: Tensor, weight_sum: Tensor, outputs: Tensor, tiles: Sequence[tuple[slice, ...]],
                weights: Tensor) -> None:
    """Add ``outputs[i] * weights`` into the tiles of ``accumulator`` and ``weights`` into ``weight_sum``, in place.

    ``outputs`` [B, n_targets, *patch] and ``weights`` must already be on the accumulator's device.
    """
    for tile, output in zip(tiles, outputs):
        accumulator[(slice(None), *tile)].addcmul_(output, weights)
        weight_sum[tile] += weights


@torch.inference_mode()
def predict_volume(models: Sequence[nn.Module], inputs: Tensor, times_s: Tensor, patch_size: Sequence[int],
                   n_targets: int, tile_batch: int = 4, step_fraction: float = 0.5,
                   mirror_axes: Sequence[int] = (), stitch_device: torch.device | None = None,
                   progress: bool = False, precision: str = "auto") -> Tensor:
    """Synthesized phases [n_targets, X, Y, Z] (float32, on ``stitch_device``) for ``inputs`` [n_in, X, Y, Z].

    Volumes smaller than the patch are padded with their minimum and cropped back. Tiles are weighted with a
    Gaussian (sigma = patch / 8, floor as MONAI's).

    Args:
        models: eval-mode synthesizers (one per fold); their outputs are averaged.
        inputs: the TI-normalized input phases in plan space, on the device the models run on.
        times_s: every phase's acquisition time [P] (inputs and targets).
        patch_size: the plan's patch (tile) size.
        n_targets: number of target phases each model returns.
        tile_batch: tiles per forward pass.
        step_fraction: tile step as a fraction of the patch (0.5: half-overlapping tiles).
        mirror_axes: test-time mirroring over every subset of these axes (empty: none).
        stitch_device: where the accumulators live (default: the inputs' device; the CPU saves GPU memory).
        progress: show a progress bar over tile batches.
        precision: the network's arithmetic (``auto``, ``bf16``, ``fp32``; network/precision.py).
    """
    if tile_batch < 1:
        raise ValueError(f"tile_batch must be >= 1, got {tile_batch}")
    device = inputs.device
    stitch_device = torch.device(stitch_device) if stitch_device is not None else device
    patch = tuple(int(p) for p in patch_size)
    padded, undo = pad_to_patch(inputs, patch, value=float(inputs.min()))
    spatial = tuple(padded.shape[1:])
    tiles = tile_grid(spatial, patch, step_fraction)
    weights = gaussian_importance_map(patch, device=stitch_device, min_weight=importance_floor(patch))
    accumulator = torch.zeros((n_targets, *spatial), dtype=torch.float32, device=stitch_device)
    weight_sum = torch.zeros(spatial, dtype=torch.float32, device=stitch_device)
    times = times_s.to(device=device, dtype=torch.float32)
    autocast = autocast_context(resolve_precision(precision, device), device)
    for model in models:
        model.eval()
    with autocast:
        bound = [bind_times(model, times) for model in models]
    bar = tqdm(total=len(tiles), desc="tiles", unit="tile", disable=not progress, leave=False)
    for start in range(0, len(tiles), tile_batch):
        chunk = tiles[start:start + tile_batch]
        batch = torch.stack([padded[(slice(None), *tile)] for tile in chunk])
        with autocast:
            outputs = synthesize_tiles(bound, batch, mirror_axes)
        if tuple(outputs.shape[:2]) != (len(chunk), n_targets):
            raise ValueError(f"the models return {tuple(outputs.shape)} for {len(chunk)} tiles, expected "
                             f"[{len(chunk)}, {n_targets}, *{list(patch)}]")
        blend_batch(accumulator, weight_sum, outputs.to(stitch_device), chunk, weights)
        bar.update(len(chunk))
    bar.close()
    return finalize(accumulator, weight_sum)[undo]
