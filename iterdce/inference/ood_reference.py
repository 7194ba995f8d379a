"""What the predictor can know about a model's training data, for the out-of-distribution check (ood.py).

Three references, each used when present, the check degrading to what is known:

- the training fingerprint (``dataset_fingerprint.json``): in the model folder of a shared model (anonymised by
  iterdce_export_model), else in the preprocessed dataset the plan names (``ITERDCE_PREPROCESSED/<dataset>/``,
  a model trained here). Gives the per-case spacing, tilt, input times and intensity statistics;
- the plan (always): the trained target times and the default protocol's input times (a single time per input
  phase, used only when no fingerprint gives their range);
- the kinetic prior of a model trained with one: its fitted range, against which ``outside_fraction`` is measured.

``CaseFacts`` of a new case come from ``case_facts`` (the same statistics the fingerprint records).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from iterdce.core.json_io import read_json
from iterdce.core.paths import resolve_roots
from iterdce.dataset.schema import UNKNOWN_ACQUISITION, AcquisitionFacts
from iterdce.inference.ood import (
    RANGE_SHARE,
    CaseFacts,
    TrainingReference,
    categories_from_cases,
    input_time_ranges,
    outside_range,
    ranges_from_cases,
    target_time_ranges,
)
from iterdce.preprocessing.case_io import CanonicalCase
from iterdce.preprocessing.fingerprint import FINGERPRINT_FILE, phase_statistics
from iterdce.preprocessing.fingerprint_schema import DatasetFingerprint
from iterdce.preprocessing.orientation import obliquity_deg
from iterdce.preprocessing.plan_schema import Plans

MODEL_FINGERPRINT = "training fingerprint (model folder)"
DATASET_FINGERPRINT = "training fingerprint (preprocessed dataset)"
PLAN_TIMES = "plan (trained target times, default input times)"
PLAN_TARGET_TIMES = "plan (trained target times)"
PRIOR_RANGE = "kinetic prior's range"


def find_fingerprint(model_folder: Path, plans: Plans) -> tuple[DatasetFingerprint | None, str | None]:
    """The training fingerprint and where it was found (``MODEL_FINGERPRINT`` / ``DATASET_FINGERPRINT``), or
    (None, None); an unreadable file counts as absent (the check then uses the plan alone)."""
    candidates = [(Path(model_folder) / FINGERPRINT_FILE, MODEL_FINGERPRINT),
                  (resolve_roots().preprocessed / plans.dataset / FINGERPRINT_FILE, DATASET_FINGERPRINT)]
    for path, label in candidates:
        if path.is_file():
            try:
                return DatasetFingerprint.from_dict(read_json(path, expect=dict)), label
            except (ValueError, OSError):
                continue
    return None, None


def training_facts(fingerprint: DatasetFingerprint, plans: Plans) -> list[CaseFacts]:
    """Each training case's facts from the fingerprint (its input phases only, as at prediction time)."""
    inputs = list(plans.input_phases)
    reference = inputs.index(plans.normalization.reference_phase)
    facts = []
    for case in fingerprint.cases:
        if len(case.phases) <= max(inputs) or len(case.phase_times_s) <= max(inputs):
            continue
        facts.append(CaseFacts(tuple(case.spacing), case.oblique_deg,
                               tuple(case.phase_times_s[i] for i in inputs), (),
                               tuple(case.phases[i] for i in inputs), reference,
                               field_strength_t=case.field_strength_t, fat_suppression=case.fat_suppression))
    return facts


def training_reference(model_folder: Path, plans: Plans, has_prior: bool,
                       fingerprint: DatasetFingerprint | None = None, found_in: str | None = None,
                       search: bool = True, share: float = RANGE_SHARE) -> TrainingReference:
    """Every range the model's training data gives: the fingerprint's (given, else found by
    ``find_fingerprint`` unless ``search`` is off), the plan's times and the prior's outside fraction; ``share``:
    the tolerance of learnt ranges (``ood.RANGE_SHARE``; other values to measure what it trades)."""
    if fingerprint is None and search:
        fingerprint, found_in = find_fingerprint(model_folder, plans)
    latest = float(plans.trained_target_times_s[-1])
    cases = training_facts(fingerprint, plans) if fingerprint is not None else []
    ranges = list(ranges_from_cases(cases, latest, share)) if cases else []
    references = [found_in or MODEL_FINGERPRINT] if cases else []
    ranges += target_time_ranges(plans.trained_target_times_s)
    if cases:  # the fingerprint gives the input times' spread; the plan the target times
        references.append(PLAN_TARGET_TIMES)
    else:
        ranges += input_time_ranges(plans.input_times_s, latest)
        references.append(PLAN_TIMES)
    if has_prior:
        ranges.append(outside_range())
        references.append(PRIOR_RANGE)
    return TrainingReference(tuple(ranges), tuple(references), categories_from_cases(cases))


def case_facts(canonical: CanonicalCase, input_times_s: Sequence[float] | np.ndarray,
               target_times_s: Sequence[float] | np.ndarray, reference: int,
               acquisition: AcquisitionFacts = UNKNOWN_ACQUISITION) -> CaseFacts:
    """A new case's facts from its canonical input phases: the statistics ``fingerprint_case`` records, inside
    the same TI-norm mask, and what its sidecar says of the acquisition; the outside fraction is added once
    measured on the plan grid."""
    mask = canonical.norm_mask.astype(bool)
    count = len(input_times_s)
    phases = tuple(phase_statistics(np.asarray(canonical.image[k]), mask) for k in range(count))
    return CaseFacts(tuple(float(s) for s in canonical.spacing), obliquity_deg(canonical.affine),
                     tuple(float(t) for t in input_times_s), tuple(float(t) for t in target_times_s), phases,
                     reference, field_strength_t=acquisition.field_strength_t,
                     fat_suppression=acquisition.fat_suppression)
