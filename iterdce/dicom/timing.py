"""Phase times in seconds from the headers, and which tag each came from.

Each phase has a clock time (the earliest AcquisitionDateTime / AcquisitionTime / FrameAcquisitionDateTime /
SeriesTime of its images) and, in some series, an offset (TemporalPositionTimeOffset in seconds, or TriggerTime
in ms). Offsets are preferred when they increase from phase to phase, else the clock times are used. Times are
relative to the first (pre-contrast) phase, which gets 0 s, unless ContrastBolusStartTime is in the headers:
then time 0 is the bolus start and the pre-contrast phase usually has a negative time.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from iterdce.core.errors import IterdceError
from iterdce.dicom.headers import Slice

TRIGGER_TAG = "TriggerTime (0018,1060)"
OFFSET_TAG = "TemporalPositionTimeOffset (0020,930D)"
BOLUS_TAG = "ContrastBolusStartTime (0018,1042)"
PRE_CONTRAST_REFERENCE = "first (pre-contrast) phase"


class TimingError(IterdceError, ValueError):
    """The phases cannot be timed or ordered from the headers."""


@dataclass(frozen=True)
class PhaseTiming:
    """What the headers say about when one phase was acquired."""

    clock: dt.datetime | None
    clock_tag: str
    offset_s: float | None
    offset_tag: str
    bolus_start: dt.datetime | None


def timing_of(slices: Sequence[Slice]) -> PhaseTiming:
    """The timing facts of one phase from its slices (earliest clock time, smallest offset)."""
    clocks = [s.acquired for s in slices if s.acquired is not None]
    clock_tag = next((s.acquired_tag for s in slices if s.acquired is not None), "")
    offsets = [s.time_offset_s for s in slices if s.time_offset_s is not None]
    triggers = [s.trigger_ms for s in slices if s.trigger_ms is not None]
    if offsets:
        offset, tag = min(offsets), OFFSET_TAG
    elif triggers:
        offset, tag = min(triggers) / 1000.0, TRIGGER_TAG
    else:
        offset, tag = None, ""
    bolus = next((s.bolus_start for s in slices if s.bolus_start is not None), None)
    return PhaseTiming(min(clocks) if clocks else None, clock_tag, offset, tag, bolus)


def _increasing(values: Sequence[float]) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


def clock_order(timings: Sequence[PhaseTiming]) -> list[int]:
    """Phase order by clock time (convention: one series per phase); TimingError if a phase has none."""
    missing = [i for i, t in enumerate(timings) if t.clock is None]
    if missing:
        raise TimingError("no AcquisitionDateTime, AcquisitionTime or SeriesTime to order the phases by")
    return sorted(range(len(timings)), key=lambda i: timings[i].clock)  # type: ignore[arg-type, return-value]


def phase_times(timings: Sequence[PhaseTiming], use_offsets: bool = True) -> tuple[list[float], list[str], str]:
    """Times in seconds of phases given in acquisition order, the tag of each, and what time 0 is."""
    offsets = [t.offset_s for t in timings]
    clocks = [t.clock for t in timings]
    if use_offsets and all(o is not None for o in offsets) and _increasing(offsets):  # type: ignore[arg-type]
        relative = [float(o - offsets[0]) for o in offsets]  # type: ignore[operator]
        tags = [t.offset_tag for t in timings]
    elif all(c is not None for c in clocks):
        relative = [(c - clocks[0]).total_seconds() for c in clocks]  # type: ignore[operator]
        tags = [t.clock_tag for t in timings]
    else:
        raise TimingError("phase times cannot be read: no TemporalPositionTimeOffset, TriggerTime or acquisition "
                          "times in every phase")
    if not _increasing(relative):
        raise TimingError(f"phase times from {tags[0]} do not increase: {[round(r, 3) for r in relative]}")
    bolus = next((t.bolus_start for t in timings if t.bolus_start is not None), None)
    if bolus is not None and clocks[0] is not None:
        start = (clocks[0] - bolus).total_seconds()
        return [round(start + r, 3) for r in relative], tags, BOLUS_TAG
    return [round(r, 3) for r in relative], tags, PRE_CONTRAST_REFERENCE
