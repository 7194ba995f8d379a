"""Cropping to the nonzero bounding box of all phases together, and pasting back."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import numpy as np

Box = list[list[int]]  # [[start, stop], ...] per spatial axis


def nonzero_box(image: np.ndarray) -> Box:
    """Bounding box of voxels nonzero in any phase of ``image`` [P, X, Y, Z]; whole grid if all zero."""
    nonzero = np.any(image != 0, axis=0)
    if not nonzero.any():
        return [[0, int(s)] for s in nonzero.shape]
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(nonzero.any(axis=other))
        box.append([int(hits[0]), int(hits[-1]) + 1])
    return box


def crop(array: np.ndarray, box: Sequence[Sequence[int]]) -> np.ndarray:
    """The box of the last three axes of ``array``."""
    index: tuple[Any, ...] = (..., *(slice(a, b) for a, b in box))
    return cast(np.ndarray, array[index])


def paste(cropped: np.ndarray, box: Sequence[Sequence[int]], full_shape: tuple[int, ...], fill: float = 0.0
          ) -> np.ndarray:
    """Put ``cropped`` back at ``box`` in an array of spatial ``full_shape`` filled with ``fill``."""
    out = np.full(cropped.shape[:-3] + tuple(full_shape), fill, dtype=cropped.dtype)
    index: tuple[Any, ...] = (..., *(slice(a, b) for a, b in box))
    out[index] = cropped
    return out
