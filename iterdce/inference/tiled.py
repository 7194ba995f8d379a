"""Tile-major recursive synthesis of a whole volume: for each tile all steps run with the ConvLSTM state held
inside the tile, and every step's output is blended into its own accumulator with Gaussian weights.

A pure function of tensors and models, like MONAI's ``sliding_window_inference``, but the recursion lives
inside the tile, matching patch-based training and holding only one tile batch's state in memory.
"""
from __future__ import annotations

import itertools
from collections.abc import Sequence
from contextlib import nullcontext

import torch
from torch import Tensor, nn
from tqdm import tqdm

from iterdce.inference.sliding_window import accumulate, finalize, gaussian_importance_map, pad_to_patch, tile_grid


def mirror_sets(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every subset of the mirror axes (the empty set first): the flips of test-time augmentation."""
    return [combo for r in range(len(axes) + 1) for combo in itertools.combinations(axes, r)]


def synthesize_tiles(models: Sequence[nn.Module], tiles: Tensor, times: Tensor,
                     mirror_axes: Sequence[int] = ()) -> Tensor:
    """Mean over models (folds) and mirrorings of the synthesized phases of a tile batch [B, n_in, ...]."""
    total = None
    flips = mirror_sets(mirror_axes)
    for model in models:
        for flip in flips:
            dims = [2 + a for a in flip]
            x = torch.flip(tiles, dims) if dims else tiles
            out = model(x, times).float()
            out = torch.flip(out, dims) if dims else out
            total = out if total is None else total + out
    return total / (len(models) * len(flips))


@torch.no_grad()
def predict_volume(models: Sequence[nn.Module], inputs: Tensor, times_s: Tensor, patch_size: Sequence[int],
                   n_targets: int, tile_batch: int = 4, step_fraction: float = 0.5,
                   mirror_axes: Sequence[int] = (), stitch_device: torch.device | None = None,
                   progress: bool = False) -> Tensor:
    """Synthesized phases [n_targets, X, Y, Z] (float32, on ``stitch_device``) for ``inputs`` [n_in, X, Y, Z].

    ``times_s`` [P] holds every phase's time; volumes smaller than the patch are padded with their minimum
    and cropped back.
    """
    device = inputs.device
    stitch_device = stitch_device or device
    padded, undo = pad_to_patch(inputs, patch_size, value=float(inputs.min()))
    spatial = tuple(padded.shape[1:])
    tiles = tile_grid(spatial, patch_size, step_fraction)
    importance = gaussian_importance_map(tuple(patch_size), device=device)
    accumulator = torch.zeros((n_targets, *spatial), dtype=torch.float32, device=stitch_device)
    weight_sum = torch.zeros(spatial, dtype=torch.float32, device=stitch_device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    for model in models:
        model.eval()
    bar = tqdm(total=len(tiles), desc="tiles", unit="tile", disable=not progress, leave=False)
    for start in range(0, len(tiles), tile_batch):
        chunk = tiles[start:start + tile_batch]
        batch = torch.stack([padded[(slice(None), *tile)] for tile in chunk])
        batch_times = times_s.to(device=device, dtype=torch.float32).expand(len(chunk), -1)
        with autocast:
            outputs = synthesize_tiles(models, batch, batch_times, mirror_axes)
        for tile, output in zip(chunk, outputs):
            accumulate(accumulator, weight_sum, output, tile, importance)
        bar.update(len(chunk))
    bar.close()
    return finalize(accumulator, weight_sum)[undo]
