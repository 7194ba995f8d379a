"""Finding a study's DCE acquisition in the three conventions scanners use.

(a) one series per phase: single-volume series on one grid, ordered by acquisition time;
(b) one series holding every phase: its images separated by TemporalPositionIdentifier, else by the rank of
    their TemporalPositionTimeOffset / TriggerTime / acquisition time at each slice position (checked against
    NumberOfTemporalPositions);
(c) an enhanced multi-frame object whose frames carry a TemporalPositionIndex.

The candidate with the most phases (at least 3) on one grid wins. A series that looks like part of the chosen
acquisition (same matrix, pixel spacing and orientation) but is broken or lies on another grid refuses the study.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from iterdce.core.errors import IterdceError
from iterdce.dicom.geometry import GeometryError, Stack, stack_slices
from iterdce.dicom.headers import Slice
from iterdce.dicom.scan import Series, Study
from iterdce.dicom.timing import PhaseTiming, TimingError, clock_order, phase_times, timing_of

SERIES_PER_PHASE = "series per phase"
TEMPORAL_SERIES = "temporal positions in one series"
MULTI_FRAME = "enhanced multi-frame"
MIN_PHASES = 3
POSITION_DECIMALS = 2  # slice positions equal to 0.01 mm are the same position


class StudyRefused(IterdceError, ValueError):
    """No usable DCE acquisition in a study; ``skipped`` lists the series that were passed over and why."""

    def __init__(self, reason: str, skipped: list[tuple[str, str]]) -> None:
        super().__init__(reason)
        self.skipped = skipped


@dataclass
class Acquisition:
    """The chosen DCE acquisition: phases in time order, each a stack of its series, with times and tags."""

    convention: str
    stacks: list[Stack]
    series: list[Series]  # the series of each phase
    times_s: list[float]
    time_tags: list[str]
    time_reference: str
    clocks: list[dt.datetime | None] = field(default_factory=list)  # clock time of each phase (export template)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _signature(slices: Sequence[Slice]) -> tuple[int, int, tuple[float, ...], tuple[float, ...]]:
    first = slices[0]
    return (first.rows, first.columns, tuple(np.round(first.pixel_spacing, 3)),
            tuple(np.round(first.orientation, 3)))


def _temporal_groups(series: Series) -> list[list[Slice]]:
    """The phases of one series (one group for a single volume), in time order."""
    slices = series.slices
    ids = {s.temporal_id for s in slices}
    if len(ids) > 1:
        if None in ids:
            raise GeometryError("TemporalPositionIdentifier / TemporalPositionIndex missing on some images")
        by_id: dict[int, list[Slice]] = defaultdict(list)
        for s in slices:
            by_id[s.temporal_id].append(s)  # type: ignore[index]
        return [by_id[k] for k in sorted(by_id)]
    normal = slices[0].normal
    by_position: dict[float, list[Slice]] = defaultdict(list)
    for s in slices:
        by_position[round(float(s.position @ normal), POSITION_DECIMALS)].append(s)
    counts = {len(v) for v in by_position.values()}
    if counts == {1}:
        return [list(slices)]
    if len(counts) > 1:
        raise GeometryError(f"slice positions hold {min(counts)} to {max(counts)} images: a phase lacks slices")

    offsets = [s.time_offset_s for s in slices]
    triggers = [s.trigger_ms for s in slices]
    if None not in offsets and len(set(offsets)) > 1:
        def key(s: Slice) -> float:
            return float(s.time_offset_s)  # type: ignore[arg-type]
    elif None not in triggers and len(set(triggers)) > 1:
        def key(s: Slice) -> float:
            return float(s.trigger_ms)  # type: ignore[arg-type]
    elif all(s.acquired is not None for s in slices):
        def key(s: Slice) -> float:
            return s.acquired.timestamp()  # type: ignore[union-attr]
    else:
        raise GeometryError("slice positions repeat but no TemporalPositionIdentifier, TriggerTime or "
                            "AcquisitionTime separates the phases")
    phases: list[list[Slice]] = [[] for _ in range(counts.pop())]
    for group in by_position.values():
        for rank, s in enumerate(sorted(group, key=key)):
            phases[rank].append(s)
    return phases


def _multi_phase(series: Series) -> tuple[list[Stack], list[PhaseTiming]]:
    """Stacks and timing of every phase of a series (one stack for a single-volume series)."""
    groups = _temporal_groups(series)
    declared = series.header.get("NumberOfTemporalPositions")
    if len(groups) > 1 and declared not in (None, "") and int(declared) != len(groups):
        raise GeometryError(f"NumberOfTemporalPositions is {int(declared)} but {len(groups)} phases were found")
    stacks = []
    for index, group in enumerate(groups):
        try:
            stacks.append(stack_slices(group))
        except GeometryError as exc:
            raise GeometryError(f"phase {index}: {exc}" if len(groups) > 1 else str(exc)) from exc
    for index, stack in enumerate(stacks[1:], start=1):
        if not stack.same_grid(stacks[0]):
            raise GeometryError(f"phases disagree in geometry: phase {index} is not on phase 0's grid")
    return stacks, [timing_of(group) for group in groups]


def _series_candidate(series: Series, stacks: list[Stack], timings: list[PhaseTiming]) -> Acquisition:
    times, tags, reference = phase_times(timings)
    convention = MULTI_FRAME if series.enhanced else TEMPORAL_SERIES
    return Acquisition(convention, stacks, [series] * len(stacks), times, tags, reference,
                       [t.clock for t in timings])


def _per_phase_candidate(singles: list[tuple[Series, Stack, PhaseTiming]]) -> Acquisition:
    order = clock_order([t for _, _, t in singles])
    chosen = [singles[i] for i in order]
    times, tags, reference = phase_times([t for _, _, t in chosen], use_offsets=False)
    return Acquisition(SERIES_PER_PHASE, [s for _, s, _ in chosen], [s for s, _, _ in chosen], times, tags,
                       reference, [t.clock for _, _, t in chosen])


def _largest_grid_group(singles: list[tuple[Series, Stack, PhaseTiming]]) -> list[tuple[Series, Stack, PhaseTiming]]:
    groups: list[list[tuple[Series, Stack, PhaseTiming]]] = []
    for item in singles:
        home = next((g for g in groups if g[0][1].same_grid(item[1])), None)
        if home is None:
            groups.append([item])
        else:
            home.append(item)
    return max(groups, key=len) if groups else []


def find_acquisition(study: Study, include_derived: bool = False, min_phases: int = MIN_PHASES) -> Acquisition:
    """The DCE acquisition of ``study`` or StudyRefused with the reason and every series passed over.

    ``min_phases``: fewest phases an acquisition may have (3 for a dataset; prediction inputs need only the
    input phases)."""
    skipped: list[tuple[str, str]] = []
    broken: list[tuple[Series, str]] = []
    singles: list[tuple[Series, Stack, PhaseTiming]] = []
    candidates: list[Acquisition] = []
    for series in sorted(study.series.values(), key=lambda s: (s.number is None, s.number or 0, s.uid)):
        if series.derived and not include_derived:
            image_type = "\\".join(series.image_type)
            skipped.append((series.label, f"derived image (ImageType {image_type}), not an acquisition"))
        elif series.problems or not series.slices:
            broken.append((series, series.problems[0] if series.problems else "no images"))
        else:
            try:
                stacks, timings = _multi_phase(series)
                if len(stacks) > 1:
                    candidates.append(_series_candidate(series, stacks, timings))
                elif timings[0].clock is None:
                    skipped.append((series.label, "no AcquisitionDateTime, AcquisitionTime or SeriesTime: "
                                                  "not a phase"))
                else:
                    singles.append((series, stacks[0], timings[0]))
            except (GeometryError, TimingError) as exc:
                broken.append((series, str(exc)))
    group = _largest_grid_group(singles)
    if len(group) >= min_phases:
        try:
            candidates.append(_per_phase_candidate(group))
        except TimingError as exc:
            broken.extend((s, str(exc)) for s, _, _ in group)
    for short in [c for c in candidates if len(c.stacks) < min_phases]:
        skipped.append((short.series[0].label, f"only {len(short.stacks)} phases (a DCE acquisition needs "
                                               f"{min_phases})"))
    candidates = [c for c in candidates if len(c.stacks) >= min_phases]
    if not candidates:
        reasons = "; ".join(f"{s.label}: {r}" for s, r in broken) or (
            f"no series or group of series on one grid holds {min_phases} or more phases")
        if skipped:
            reasons += "; passed over: " + "; ".join(f"{label}: {r}" for label, r in skipped)
        raise StudyRefused(f"no DCE acquisition found ({reasons})", skipped + [(s.label, r) for s, r in broken])
    best = max(candidates, key=lambda c: len(c.stacks))
    signature = _signature(best.stacks[0].slices)
    used = {s.uid for s in best.series}
    for series, reason in broken:
        if series.slices and _signature(series.slices) == signature:
            raise StudyRefused(f"{series.label} looks like a phase of the DCE acquisition but {reason}",
                               skipped + [(series.label, reason)])
        skipped.append((series.label, reason))
    for series, stack, _ in singles:
        if series.uid in used:
            continue
        if best.convention == SERIES_PER_PHASE and _signature(stack.slices) == signature:
            raise StudyRefused(f"phases disagree in geometry: {series.label} has the matrix and orientation of "
                               f"the DCE series but another grid (slice positions or count)",
                               skipped + [(series.label, "grid differs from the other phases")])
        skipped.append((series.label, "not on the DCE acquisition's grid (another sequence)"))
    for other in candidates:
        if other is not best:
            skipped.extend((s.label, f"another candidate with {len(other.stacks)} phases")
                           for s in {x.uid: x for x in other.series}.values())
    best.skipped = skipped
    if any(s.philips_scale for s in best.series):
        best.notes.append("Philips private scale factors (2005,100E) present: not supported, only "
                          "RescaleSlope/RescaleIntercept applied")
    return best
