"""Ultrafast-style protocols: k fast post-contrast frames in the first 90 s, then the conventional delayed phases.

Ultrafast breast DCE (DISCO, TWIST, GRASP) acquires a frame every few seconds while the bolus arrives and then
the usual delayed phases. The phantom places frame j of k (j = 1..k) at fixed times after injection, evenly
from 20 s to 90 s (one frame at 90 s when k = 1); the bolus arrives at 10-20 s in every built-in site, so the
frames sample the first pass and its first ~70-80 s. Frames are acquired like any other phase (same grid, SNR
and timing jitter) -- the coarser resolution and lower SNR of real ultrafast frames are not modelled.

A delayed phase of the underlying protocol is kept when it comes after the last frame by more than the gap the
timing-jitter rule needs (2 x jitter + 1 s, config.py), so the jittered times always stay increasing.
The pipeline's inputs are the pre-contrast phase and the k frames (``input_phases`` [0, ..., k]).
"""
from __future__ import annotations

import numbers
from collections.abc import Sequence

EARLY_WINDOW_S = (20.0, 90.0)  # the first and the last early frame, seconds after injection
MIN_FRAME_GAP_S = 5.0  # the fastest frame rate simulated (clinical ultrafast frames are about 3-10 s apart)
MAX_EARLY_FRAMES = 1 + int((EARLY_WINDOW_S[1] - EARLY_WINDOW_S[0]) / MIN_FRAME_GAP_S)


def frame_gap_s(k: int) -> float:
    """Seconds between consecutive early frames (the whole window when k <= 1)."""
    return (EARLY_WINDOW_S[1] - EARLY_WINDOW_S[0]) / max(k - 1, 1)


def early_frame_times(k: int) -> tuple[float, ...]:
    """The nominal times (s after injection, 0.1 s resolution) of k early frames; empty for k = 0."""
    if k == 1:
        return (EARLY_WINDOW_S[1],)
    return tuple(round(EARLY_WINDOW_S[0] + j * frame_gap_s(k), 1) for j in range(k))


def min_delayed_gap_s(jitter_s: float) -> float:
    """The gap the timing-jitter rule needs between two phases jittered by up to +-``jitter_s``."""
    return 2.0 * jitter_s + 1.0


def with_early_frames(times_s: Sequence[float], k: int, jitter_s: float) -> tuple[float, ...]:
    """A protocol (pre-contrast first) with k early frames: pre-contrast, the frames, then the delayed phases of
    ``times_s`` far enough after the last frame for timing jitter up to ``jitter_s``. k = 0: ``times_s`` as is."""
    times = tuple(float(t) for t in times_s)
    if k == 0:
        return times
    frames = early_frame_times(k)
    delayed = tuple(t for t in times[1:] if t - frames[-1] > min_delayed_gap_s(jitter_s))
    return (times[0], *frames, *delayed)


def input_phases(k: int) -> list[int]:
    """dataset.json ``input_phases``: pre-contrast and the k frames; the first post-contrast phase when k = 0."""
    return list(range(max(k, 1) + 1))


def early_frame_problems(k: object, jitter_s: float) -> list[str]:
    """What is wrong with k early frames under timing jitter up to +-``jitter_s`` (empty when fine)."""
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or not 0 <= int(k) <= MAX_EARLY_FRAMES:
        return [f"early frames must be an integer from 0 to {MAX_EARLY_FRAMES} (frames at least "
                f"{MIN_FRAME_GAP_S:g} s apart between {EARLY_WINDOW_S[0]:g} and {EARLY_WINDOW_S[1]:g} s), got {k!r}"]
    k = int(k)
    if k == 0:
        return []
    problems = []
    if k > 1 and min_delayed_gap_s(jitter_s) >= frame_gap_s(k):
        problems.append(f"{k} early frames are {frame_gap_s(k):.1f} s apart, too close for timing jitter of "
                        f"{jitter_s:g} s (it must stay below half the gap minus 0.5 s); use fewer frames")
    if early_frame_times(k)[0] - jitter_s <= 1.0:
        problems.append(f"timing jitter {jitter_s:g} s could move the first early frame "
                        f"({early_frame_times(k)[0]:g} s) before injection")
    return problems


def delayed_phase_problem(times_s: Sequence[float], k: int, jitter_s: float) -> list[str]:
    """A problem when no delayed phase of ``times_s`` is left after k early frames (nothing to predict)."""
    if k and len(with_early_frames(times_s, k, jitter_s)) < k + 2:
        return [f"no phase of {list(times_s)} comes more than {min_delayed_gap_s(jitter_s):g} s after the last "
                f"early frame ({EARLY_WINDOW_S[1]:g} s): nothing left to predict"]
    return []
