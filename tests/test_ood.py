"""The out-of-distribution check (iterdce/inference/ood.py, ood_reference.py): its record, its verdict on cases
inside and outside the training ranges, the fingerprint's new tilt field, and ``"ood"`` in a prediction's
``<case>.json`` with the references that were available."""
from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pytest

from iterdce.dataset.nifti_io import Geometry, read_image
from iterdce.dataset.schema import AcquisitionFacts, load_acquisition_facts
from iterdce.inference.ood import (
    CaseFacts,
    OODReport,
    TrainingReference,
    assess,
    categories_from_cases,
    outside_range,
    ranges_from_cases,
    target_time_ranges,
    warning_text,
)
from iterdce.inference.ood_reference import MODEL_FINGERPRINT, PLAN_TIMES, training_facts, training_reference
from iterdce.preprocessing.fingerprint import FINGERPRINT_FILE, compute_fingerprint
from iterdce.preprocessing.fingerprint_schema import DatasetFingerprint, PhaseStatistics
from iterdce.preprocessing.orientation import obliquity_deg
from iterdce.preprocessing.plan_schema import Plans
from tests import test_predictor
from tests.helpers import make_raw_dataset
from tests.test_predictor import (
    TIMES,
    RecordingIdentity,
    make_model,
    predictor_for,
    smooth_phases,
    write_case,
    write_model_folder,
)

base_plans = test_predictor.base_plans  # the fixture: a plan of the real planner with a tiny network
TRAINED_TARGETS = (150.0, 400.0)


def facts(spacing=(0.8, 0.8, 2.0), tilt=1.0, early_s=80.0, targets=(200.0, 300.0), enhancement=1.5,
          outside=0.001) -> CaseFacts:
    """A case with a pre-contrast and an early phase (the reference), its statistics scaled by ``enhancement``."""
    pre = PhaseStatistics(100.0, 20.0, 100.0, 60.0, 140.0)
    early = PhaseStatistics(100.0 * (1 + enhancement), 60.0, 250.0, 90.0, 400.0)
    return CaseFacts(spacing, tilt, (0.0, early_s), targets, (pre, early), 1, outside)


def reference() -> TrainingReference:
    """Training cases spread over spacing 0.7-1.0 x 1-2.5 mm, tilt 0-4 deg, early phase 60-100 s, enhancement 1-2."""
    cases = [facts((s, s, z), tilt, t, enhancement=e) for s, z, tilt, t, e in
             [(0.7, 1.0, 0.0, 60.0, 1.0), (0.85, 2.5, 4.0, 100.0, 2.0), (1.0, 1.5, 2.0, 80.0, 1.4)]]
    ranges = ranges_from_cases(cases, TRAINED_TARGETS[1]) + target_time_ranges(TRAINED_TARGETS)
    return TrainingReference(ranges + (outside_range(),), ("test",))


def test_report_round_trip_and_fingerprint_tilt_is_optional():
    report = OODReport(True, 2.5, ("spacing S-I 4 mm, trained 1-2.5 mm",), ("plan",))
    assert OODReport.from_json(json.loads(json.dumps(report.to_json()))) == report
    raw = {"dataset": "D", "layout": "flat", "num_phases": 2, "phase_times_s": [0, 60], "protocols": [],
           "input_phases": [0, 1], "reference_phase": None, "mask_kind": "foreground", "has_breast_masks": False,
           "orientation": "RAS", "cases": [{
               "case": "c", "spacing": [1, 1, 2], "shape": [4, 4, 4], "shape_after_crop": [4, 4, 4],
               "phase_times_s": [0, 60], "phases": [dict(mean=1, std=1, median=1, percentile_00_5=0,
                                                         percentile_99_5=2)] * 2,
               "mask_voxels": 10, "has_lesion_labels": False, "lesion_count": 0, "lesion_volume_ml": 0.0,
               "lesion_relative_enhancement": None, "breast_relative_enhancement": None}]}
    old = DatasetFingerprint.from_dict(raw)  # made before the tilt was recorded
    assert old.cases[0].oblique_deg is None
    assert DatasetFingerprint.from_dict(old.to_dict()) == old
    tilted = np.diag([1.0, 1.0, 2.0, 1.0])
    angle = np.radians(10.0)
    tilted[:3, :3] = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]]) \
        @ np.diag([1.0, 1.0, 2.0])
    assert obliquity_deg(np.diag([0.7, 0.7, 3.0, 1.0])[:, [2, 0, 1, 3]]) == pytest.approx(0.0)
    assert obliquity_deg(tilted) == pytest.approx(10.0)


def test_a_case_like_the_training_cases_is_not_flagged():
    report = assess(facts(), reference())
    assert not report.flag and report.score == 0.0 and report.reasons == ()
    slightly = assess(facts(spacing=(1.05, 1.05, 2.6)), reference())  # within the tolerance of the ranges
    assert not slightly.flag and 0 < slightly.score <= 1
    assert warning_text({"case": report}) is None


def test_other_spacing_late_targets_and_intensities_are_flagged_with_their_reasons():
    coarse = assess(facts(spacing=(0.8, 0.8, 4.0)), reference())
    assert coarse.flag and coarse.score > 1
    assert coarse.reasons == ("spacing S-I 4 mm, trained 1-2.5 mm",)
    late = assess(facts(targets=(200.0, 600.0)), reference())
    assert late.flag and late.reasons == ("latest target time 600 s, trained 150-400 s",)
    strong = assess(facts(enhancement=4.0, outside=0.2), reference())
    assert strong.flag and any(r.startswith("body-mean relative enhancement 4, trained 1-2") for r in strong.reasons)
    assert any(r.startswith("body outside the prior's range 20.0 %") for r in strong.reasons)
    unknown = assess(dataclasses.replace(facts(spacing=(0.8, 0.8, 4.0)), oblique_deg=None, phases=()),
                     TrainingReference(reference().ranges[:1], ()))
    assert not unknown.flag  # only the features both sides know are compared
    text = warning_text({"a": coarse, "b": late, "c": unknown})
    assert text is not None and text.count("\n") == 2 and "a: score" in text and "spacing S-I 4 mm" in text


def test_field_strength_and_fat_suppression_from_sidecars(tmp_path):
    sidecar = tmp_path / "case.json"
    sidecar.write_text(json.dumps({"phase_times_s": [0, 60, 120], "field_strength_t": 1.5, "fat_suppression": False}))
    assert load_acquisition_facts(sidecar) == AcquisitionFacts(1.5, False)
    sidecar.write_text(json.dumps({"phase_times_s": [0, 60, 120], "field_strength_t": "3T", "fat_suppression": 1}))
    assert load_acquisition_facts(sidecar) == AcquisitionFacts()  # malformed: unknown, never an error
    assert load_acquisition_facts(None) == AcquisitionFacts()
    trained = [dataclasses.replace(facts(), field_strength_t=3.0, fat_suppression=fat) for fat in (True, False)]
    ref = dataclasses.replace(reference(), categories=categories_from_cases(trained))
    low_field = assess(dataclasses.replace(facts(), field_strength_t=1.5, fat_suppression=True), ref)
    assert low_field.flag and low_field.reasons == ("field strength 1.5 T, trained 3 T",)
    assert not assess(dataclasses.replace(facts(), field_strength_t=3.0), ref).flag
    assert not assess(facts(), ref).flag  # a case whose sidecar does not say is not compared


def test_training_cases_from_a_fingerprint_lie_inside_its_reference(tmp_path, base_plans):
    raw = make_raw_dataset(tmp_path / "raw", n_cases=3, shape=(16, 16, 8), n_phases=6)
    fingerprint = compute_fingerprint(raw, 1, progress=False)
    plans = Plans.from_dict(base_plans)
    cases = training_facts(fingerprint, plans)
    assert len(cases) == 3 and all(c.oblique_deg == pytest.approx(0.0) for c in cases)
    ref = training_reference(tmp_path, plans, False, fingerprint, MODEL_FINGERPRINT)
    assert ref.references[0] == MODEL_FINGERPRINT
    assert all(not assess(case, ref).flag for case in cases)


def test_prediction_records_ood_in_every_case_json(tmp_path, base_plans):
    """Without a fingerprint the plan's times are the reference; with one in the model folder, its ranges: a case
    with other spacing is flagged, with one warning line naming it."""
    folder = write_model_folder(tmp_path / "results", base_plans, {0: make_model()})
    shape = (16, 16, 8)
    write_case(tmp_path / "in", "case_a", smooth_phases(shape), Geometry(shape, np.diag([0.8, 0.8, 2.0, 1])))
    predictor = predictor_for(folder)
    predictor.models = [RecordingIdentity()]
    predictor.predict_folder(tmp_path / "in", tmp_path / "out")
    ood = json.loads((tmp_path / "out" / "case_a.json").read_text())["ood"]
    assert ood == {"flag": False, "score": 0.0, "reasons": [], "references": [PLAN_TIMES]}
    raw = make_raw_dataset(tmp_path / "raw", n_cases=2, shape=shape, n_phases=6)
    (raw / "timesTr").mkdir()
    for case in ("case_000", "case_001"):  # the training cases' sidecars say 3 T
        (raw / "timesTr" / f"{case}.json").write_text(json.dumps({"phase_times_s": TIMES, "field_strength_t": 3}))
    (folder / FINGERPRINT_FILE).write_text(json.dumps(compute_fingerprint(raw, 1, progress=False).to_dict()))
    training_case = [read_image(raw / "imagesTr" / f"case_000_{p:04d}.nii.gz") for p in (0, 1)]
    phases, geometry = np.stack([image for image, _ in training_case]), training_case[0][1]
    write_case(tmp_path / "in2", "case_a", phases, geometry)  # a training case: inside every range
    coarse = geometry.affine.copy()
    coarse[:3, 2] *= 3.0
    write_case(tmp_path / "in2", "case_b", phases, Geometry(geometry.shape, coarse))
    (tmp_path / "in2" / "case_b.json").write_text(json.dumps({"phase_times_s": TIMES[:2], "field_strength_t": 1.5}))
    predictor = predictor_for(folder)
    predictor.models = [RecordingIdentity()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor.predict_folder(tmp_path / "in2", tmp_path / "fp")
    ood_b = json.loads((tmp_path / "fp" / "case_b.json").read_text())["ood"]
    assert ood_b["flag"] and ood_b["references"][0] == MODEL_FINGERPRINT
    assert not json.loads((tmp_path / "fp" / "case_a.json").read_text())["ood"]["flag"]
    assert ood_b["reasons"][0].startswith("spacing S-I") and "field strength 1.5 T, trained 3 T" in ood_b["reasons"]
    flagged = [str(w.message) for w in caught if "differ from the data" in str(w.message)]
    assert len(flagged) == 1 and "case_b: score" in flagged[0] and "case_a" not in flagged[0]
