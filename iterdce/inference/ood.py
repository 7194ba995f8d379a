"""Out-of-distribution check at predict time: how far one case's inputs lie from what the model was trained on.

A case is reduced to a few numbers (``case_features``): its voxel spacing along each canonical axis, the tilt of
its grid from the scanner axes, the acquisition times of its input phases, TI-normalized intensity statistics of
its input phases inside the TI-norm mask (the numbers the dataset fingerprint records for every training case, so
both sides are computed the same way), the target times asked for, and the fraction of its body outside the
kinetic prior's range (``composition.outside_fraction``). The training reference (``TrainingReference``, built
by ``ood_reference.py`` from what the model folder, the preprocessed dataset and the plan say) holds, per
feature, the range the training cases covered and a tolerance. A feature's deviation is its distance outside
that range in tolerances (0 inside); the case's score is the largest deviation and it is flagged above
``OOD_THRESHOLD``. Each deviating feature becomes one reason naming the case's value and the trained range.

Everything here is pure: no file is read, so the same functions serve prediction, tests and benchmarks. The check
changes no voxel (``--ood-guard``, composition.py, is what moves a case towards its last input).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from iterdce.inference.composition import OOD_START as OUTSIDE_TRAINED  # what the training cases reach (0.9 %)
from iterdce.preprocessing.fingerprint_schema import PhaseStatistics

OOD_THRESHOLD = 1.0  # a case is flagged when a feature lies more than one tolerance outside its trained range
# tolerance of a range learnt from training cases: this share of the range's width (documentation/
# prediction_internals.md: chosen on held-out cases of the training sites, reports/uncertainty.md)
RANGE_SHARE = 0.25
SPACING_SHARE = 0.1  # spacing: at least this share of the largest trained spacing
TILT_TOLERANCE_DEG = 2.0  # tilt of the grid: at least this many degrees
EXTRAPOLATION_MARGIN = 0.1  # times: this share of the latest trained target time (the extrapolation warning's)
AXES = ("R-L", "A-P", "S-I")  # canonical (RAS) voxel axes
CATEGORY_DEVIATION = 2.0  # a field strength or fat suppression no training case had: flagged (score 2)
REASONS_SHOWN = 3  # reasons listed per case in the warning line (all are in <case>.json)


@dataclass(frozen=True)
class CaseFacts:
    """What is known about one case's inputs: canonical spacing (mm), tilt (degrees, None: unknown), the times of
    its input phases and targets (s), statistics of each input phase inside the TI-norm mask (native intensities),
    which input is the TI-norm reference, and the fraction of its body outside the prior's range (None: unknown)."""

    spacing: tuple[float, ...]
    oblique_deg: float | None
    input_times_s: tuple[float, ...]
    target_times_s: tuple[float, ...]
    phases: tuple[PhaseStatistics, ...]
    reference: int
    outside_fraction: float | None = None
    field_strength_t: float | None = None  # from the case's timing sidecar when it says (dataset/schema.py)
    fat_suppression: bool | None = None


@dataclass(frozen=True)
class FeatureRange:
    """The range one feature covered over the training cases and how far beyond it a case may lie unflagged."""

    feature: str
    low: float
    high: float
    tolerance: float


@dataclass(frozen=True)
class CategoryRange:
    """The values of a categorical feature (field strength, fat suppression) the training cases recorded."""

    feature: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class TrainingReference:
    """Every feature the model's training data gives a range (or recorded values) for, and which references were
    available."""

    ranges: tuple[FeatureRange, ...]
    references: tuple[str, ...]
    categories: tuple[CategoryRange, ...] = ()


@dataclass(frozen=True)
class OODReport:
    """One case's verdict: flagged or not, its score (largest deviation in tolerances, 0 inside every range), one
    reason per deviating feature (largest first) and the references it was compared with."""

    flag: bool
    score: float
    reasons: tuple[str, ...]
    references: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The ``"ood"`` entry of ``<case>.json``."""
        return {"flag": self.flag, "score": round(self.score, 4), "reasons": list(self.reasons),
                "references": list(self.references)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> OODReport:
        """Read the ``"ood"`` entry back (KeyError/TypeError for a malformed one)."""
        return cls(bool(raw["flag"]), float(raw["score"]), tuple(str(r) for r in raw["reasons"]),
                   tuple(str(r) for r in raw["references"]))


def _phase_name(index: int, count: int) -> str:
    if index == 0:
        return "pre-contrast"
    return "early phase" if index == count - 1 else f"input phase {index}"


def intensity_features(phases: Sequence[PhaseStatistics], reference: int) -> dict[str, float]:
    """TI-normalized statistics of the input phases (what the network sees): each phase's median and 0.5/99.5th
    percentiles, the spread of the other phases relative to the reference, and the body-mean early enhancement
    ((last - first) / reference std) and relative enhancement ((last - first) / first)."""
    ref = phases[reference]
    scale = max(ref.std, 1e-8)
    features = {}
    for index, stats in enumerate(phases):
        name = _phase_name(index, len(phases))
        for label, value in (("median", stats.median), ("0.5th percentile", stats.percentile_00_5),
                             ("99.5th percentile", stats.percentile_99_5)):
            features[f"{name} {label} (TI-norm)"] = (value - ref.mean) / scale
        if index != reference:
            features[f"{name} spread / reference spread"] = stats.std / scale
    first, last = phases[0].mean, phases[-1].mean
    features["body-mean early enhancement (TI-norm)"] = (last - first) / scale
    features["body-mean relative enhancement"] = (last - first) / max(abs(first), 1e-8)
    return features


def case_features(facts: CaseFacts) -> dict[str, float]:
    """Every feature known for a case (training or new); the keys are the phrases its reasons use."""
    features = {f"spacing {axis}": float(s) for axis, s in zip(AXES, facts.spacing)}
    if facts.oblique_deg is not None:
        features["tilt from the scanner axes"] = float(facts.oblique_deg)
    for index, time in enumerate(facts.input_times_s[1:], start=1):
        features[f"{_phase_name(index, len(facts.input_times_s))} time"] = float(time)
    if facts.target_times_s:
        features["earliest target time"] = float(min(facts.target_times_s))
        features["latest target time"] = float(max(facts.target_times_s))
    if facts.outside_fraction is not None:
        features["body outside the prior's range"] = float(facts.outside_fraction)
    if facts.phases:
        features.update(intensity_features(facts.phases, facts.reference))
    return features


def case_categories(facts: CaseFacts) -> dict[str, str]:
    """The categorical facts a case's sidecar gave, as shown in reasons (``1.5 T``, ``on``)."""
    shown = {}
    if facts.field_strength_t is not None:
        shown["field strength"] = f"{facts.field_strength_t:g} T"
    if facts.fat_suppression is not None:
        shown["fat suppression"] = "on" if facts.fat_suppression else "off"
    return shown


def categories_from_cases(cases: Sequence[CaseFacts]) -> tuple[CategoryRange, ...]:
    """The values each categorical fact took among the training cases that recorded it."""
    seen: dict[str, set[str]] = {}
    for case in cases:
        for feature, value in case_categories(case).items():
            seen.setdefault(feature, set()).add(value)
    return tuple(CategoryRange(feature, tuple(sorted(values))) for feature, values in sorted(seen.items()))


UNITS = {"spacing": " mm", "tilt": " deg", "time": " s", "body outside": " %"}


def _unit(feature: str) -> str:
    return next((u for key, u in UNITS.items() if key in feature), "")


def _number(feature: str, value: float) -> str:
    return f"{100 * value:.1f}" if feature.startswith("body outside") else f"{value:.3g}"


def reason(feature: str, value: float, trained: FeatureRange) -> str:
    """One short phrase: ``spacing S-I 3 mm, trained 1-2.5 mm`` (``... trained -1.96 to -1.1`` for a range below 0)."""
    unit = _unit(feature)
    between = "-" if trained.low >= 0 else " to "  # "-1.96 to -1.1", not "-1.96--1.1"
    return (f"{feature} {_number(feature, value)}{unit}, trained {_number(feature, trained.low)}{between}"
            f"{_number(feature, trained.high)}{unit}")


def deviation(value: float, trained: FeatureRange) -> float:
    """Distance of ``value`` outside the trained range, in tolerances (0 inside)."""
    distance = max(trained.low - value, value - trained.high, 0.0)
    return distance / trained.tolerance if trained.tolerance > 0 else (float("inf") if distance > 0 else 0.0)


def assess(facts: CaseFacts, reference: TrainingReference) -> OODReport:
    """Compare one case with the training reference: the features both know, each against its range."""
    features = case_features(facts)
    scored = []
    for trained in reference.ranges:
        if trained.feature in features:
            value = features[trained.feature]
            scored.append((deviation(value, trained), reason(trained.feature, value, trained)))
    categories = case_categories(facts)
    for trained_values in reference.categories:
        shown = categories.get(trained_values.feature)
        if shown is not None and shown not in trained_values.values:
            scored.append((CATEGORY_DEVIATION, f"{trained_values.feature} {shown}, trained "
                                               f"{' or '.join(trained_values.values)}"))
    scored.sort(key=lambda item: -item[0])
    score = max((d for d, _ in scored), default=0.0)
    reasons = tuple(text for d, text in scored if d > OOD_THRESHOLD)
    return OODReport(score > OOD_THRESHOLD, float(min(score, 1e6)), reasons, reference.references)


def learnt_range(feature: str, values: Sequence[float], floor: float = 0.0, share: float = RANGE_SHARE
                 ) -> FeatureRange:
    """The range of ``values`` over the training cases with tolerance ``share`` of its width (at least
    ``floor``, e.g. for a feature every training case shares)."""
    low, high = float(min(values)), float(max(values))
    return FeatureRange(feature, low, high, max(share * (high - low), floor))


def ranges_from_cases(cases: Sequence[CaseFacts], latest_trained_s: float, share: float = RANGE_SHARE
                      ) -> tuple[FeatureRange, ...]:
    """The learnt range of every feature all ``cases`` (the training cases' facts) share, with the floors of
    spacing, tilt and times (target times and the outside fraction come from the plan and the prior instead)."""
    table = [case_features(dataclasses.replace(case, target_times_s=(), outside_fraction=None)) for case in cases]
    shared = [f for f in table[0] if all(f in row for row in table)] if table else []
    ranges = []
    for feature in shared:
        values = [row[feature] for row in table]
        floor = 0.0
        if feature.startswith("spacing"):
            floor = SPACING_SHARE * max(values)
        elif feature.startswith("tilt"):
            floor = TILT_TOLERANCE_DEG
        elif feature.endswith("time"):
            floor = EXTRAPOLATION_MARGIN * abs(latest_trained_s)
        ranges.append(learnt_range(feature, values, floor, share))
    return tuple(ranges)


def target_time_ranges(trained_target_times_s: Sequence[float]) -> tuple[FeatureRange, ...]:
    """The plan's trained target times as the range of a case's earliest and latest target time, with
    ``EXTRAPOLATION_MARGIN`` of the latest trained time as tolerance."""
    low, high = float(trained_target_times_s[0]), float(trained_target_times_s[-1])
    margin = EXTRAPOLATION_MARGIN * abs(high)
    return tuple(FeatureRange(f"{which} target time", low, high, margin) for which in ("earliest", "latest"))


def input_time_ranges(input_times_s: Sequence[float], latest_trained_s: float) -> tuple[FeatureRange, ...]:
    """The plan's default input times (one time per input phase, the pre-contrast phase left out) as ranges,
    for a model without a fingerprint: tolerance ``EXTRAPOLATION_MARGIN`` of the latest trained time."""
    margin = EXTRAPOLATION_MARGIN * abs(latest_trained_s)
    count = len(input_times_s)
    return tuple(FeatureRange(f"{_phase_name(i, count)} time", float(t), float(t), margin)
                 for i, t in enumerate(input_times_s) if i > 0)


def outside_range() -> FeatureRange:
    """The fraction of the body outside the prior's range: up to ``OUTSIDE_TRAINED`` is what training cases
    reach; a tolerance as large again."""
    return FeatureRange("body outside the prior's range", 0.0, OUTSIDE_TRAINED, OUTSIDE_TRAINED)


def extrapolation_range(trained_target_times_s: Sequence[float]) -> tuple[float, float]:
    """Target times predicted without a warning: the trained range widened by ``EXTRAPOLATION_MARGIN`` of its
    latest time on each side (the same tolerance the OOD check gives target times)."""
    low, high = float(trained_target_times_s[0]), float(trained_target_times_s[-1])
    margin = EXTRAPOLATION_MARGIN * abs(high)
    return low - margin, high + margin


LINES_SHOWN = 10  # flagged cases listed in the warning, one line each (all are in their <case>.json)


def warning_text(reports: Mapping[str, OODReport]) -> str | None:
    """The warning of a prediction: a head line, then one line per flagged case (up to ``LINES_SHOWN``) with its
    score and first reasons; None when no case is flagged."""
    flagged = [(case, r) for case, r in sorted(reports.items()) if r.flag]
    if not flagged:
        return None
    lines = [f"{len(flagged)} case(s) differ from the data this model was trained on (\"ood\" in <case>.json, "
             "documentation/prediction.md); their synthesized phases are less certain:"]
    lines += [f"  {case}: score {r.score:.2g}: {', '.join(r.reasons[:REASONS_SHOWN])}"
              f"{', ...' if len(r.reasons) > REASONS_SHOWN else ''}" for case, r in flagged[:LINES_SHOWN]]
    if len(flagged) > LINES_SHOWN:
        lines.append(f"  and {len(flagged) - LINES_SHOWN} more")
    return "\n".join(lines)
