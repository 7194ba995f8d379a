"""The BI-RADS kinetic curve rule of DATA_FORMAT.md, shared by the simulator, evaluation and export."""
from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import numpy as np

EARLY_WINDOW_S = 120.0
THRESHOLD = 0.10
CURVE_TYPES = ("persistent", "plateau", "washout")
CURVE_CODES = {"none": 0, "persistent": 1, "plateau": 2, "washout": 3}


def early_index(times_s: Sequence[float] | np.ndarray) -> np.ndarray:
    """Indices of post-contrast phases (all but the first) acquired at or before 120 s."""
    times = np.asarray(times_s, dtype=float)
    post = np.arange(1, len(times))
    early = post[times[1:] <= EARLY_WINDOW_S]
    return early if early.size else post[:1]


def curve_ratio(values: np.ndarray, times_s: Sequence[float] | np.ndarray) -> np.ndarray:
    """r = (S_last - S_early) / S_early along the first axis (phases); works voxel-wise too.

    S_early is the highest post-contrast value at t <= 120 s (the first post-contrast phase if none).
    """
    values = np.asarray(values, dtype=np.float64)
    s_early = values[early_index(times_s)].max(axis=0)
    s_last = values[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return cast(np.ndarray, (s_last - s_early) / s_early)


def classify_ratio(r: np.ndarray | float) -> np.ndarray:
    """Curve code per ratio: 1 persistent (r > 0.10), 2 plateau, 3 washout (r < -0.10); 0 if undefined."""
    r = np.asarray(r, dtype=np.float64)
    codes = np.full(r.shape, CURVE_CODES["plateau"], dtype=np.uint8)
    codes[r > THRESHOLD] = CURVE_CODES["persistent"]
    codes[r < -THRESHOLD] = CURVE_CODES["washout"]
    codes[~np.isfinite(r)] = CURVE_CODES["none"]
    return codes


def classify_curve(values: Sequence[float] | np.ndarray, times_s: Sequence[float] | np.ndarray) -> str:
    """Curve type name of one curve (mean lesion intensity per phase)."""
    code = int(classify_ratio(curve_ratio(np.asarray(values), times_s)))
    return {v: k for k, v in CURVE_CODES.items()}[code]
