"""Planner decisions on hand-made fingerprints, the memory estimate, and the plans.json schema check."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from iterdce.losses.synthesis import DEFAULT_LOSS_WEIGHTS
from iterdce.preprocessing.fingerprint import compute_fingerprint, protocols_found
from iterdce.preprocessing.fingerprint_schema import DatasetFingerprint
from iterdce.preprocessing.planner import plan_experiment, plan_summary
from iterdce.preprocessing.plans_io import Plans, PlansError, as_plans, load_plans, save_plans
from iterdce.preprocessing.topology import estimate_memory_gb, plan_topology
from iterdce.pretrained import pretrained_model_folder
from tests.helpers import make_raw_dataset

TIMES = [0.0, 85.0, 155.0, 225.0, 295.0, 365.0, 435.0, 505.0]


def plan_json(*args, **kwargs) -> dict:
    """The planner's plan in its JSON form (what plans.json holds)."""
    return plan_experiment(*args, **kwargs).to_dict()


def fingerprint(spacings: Sequence[Sequence[float]], shapes: Sequence[Sequence[int]], n_phases: int = 6,
                reference_phase: int | None = None, input_phases: Sequence[int] = (0, 1)) -> DatasetFingerprint:
    """A fingerprint in the format of ``compute_fingerprint``, one case per (spacing, shape)."""
    times = TIMES[:n_phases]
    cases = []
    for index, (spacing, shape) in enumerate(zip(spacings, shapes)):
        phases = [{"mean": 100.0 + 10.0 * k, "std": 20.0, "median": 100.0 + 10.0 * k,
                   "percentile_00_5": 5.0, "percentile_99_5": 200.0 + 20.0 * k} for k in range(n_phases)]
        cases.append({
            "case": f"case_{index:03d}", "spacing": [float(s) for s in spacing], "shape": list(shape),
            "shape_after_crop": list(shape), "phase_times_s": times, "phases": phases,
            "mask_voxels": int(np.prod(shape)) // 2, "has_lesion_labels": True, "lesion_count": 1,
            "lesion_volume_ml": 1.5, "lesion_relative_enhancement": [0.0] + [1.0] * (n_phases - 1),
            "breast_relative_enhancement": [0.0] + [0.2] * (n_phases - 1),
        })
    hand = DatasetFingerprint.from_dict({
        "dataset": "Dataset001_Hand", "layout": "flat", "num_phases": n_phases, "phase_times_s": times,
        "input_phases": list(input_phases), "reference_phase": reference_phase, "mask_kind": "foreground",
        "has_breast_masks": True, "orientation": "RAS (cases reoriented to the closest canonical voxel order)",
        "cases": cases, "protocols": []})
    return dataclasses.replace(hand, protocols=protocols_found(hand.cases))


def test_hand_made_fingerprint_has_the_computed_format(tmp_path: Path) -> None:
    dataset = make_raw_dataset(tmp_path / "raw", n_cases=2, shape=(16, 16, 8))
    computed = compute_fingerprint(dataset, num_processes=1, progress=False)
    hand = fingerprint([(1, 1, 1)], [(16, 16, 8)], n_phases=4).to_dict()
    assert DatasetFingerprint.from_dict(computed.to_dict()) == computed  # the file's JSON form reads back
    computed_json = computed.to_dict()
    assert set(hand) == set(computed_json)
    assert computed_json["protocols"] == [{"num_phases": 4, "cases": 2, "times_min_s": computed_json["phase_times_s"],
                                           "times_max_s": computed_json["phase_times_s"]}]
    assert set(hand["cases"][0]) == set(computed_json["cases"][0])
    assert set(hand["cases"][0]["phases"][0]) == set(computed_json["cases"][0]["phases"][0])
    plans = plan_json(computed, preset="tiny")
    assert as_plans(plans).to_dict() == plans  # valid: the checks of a plan read from disk pass


def test_isotropic_spacing_gives_median_spacing_and_isotropic_pooling() -> None:
    spacings = [(0.9, 0.9, 0.9), (1.0, 1.0, 1.0), (1.1, 1.1, 1.1), (1.0, 1.0, 1.0), (1.2, 1.2, 1.2)]
    plans = plan_json(fingerprint(spacings, [(200, 200, 200)] * 5), gpu_memory_gb=80.0)
    assert plans["spacing"] == pytest.approx([1.0, 1.0, 1.0])
    assert plans["patch_size"][0] == plans["patch_size"][1] == plans["patch_size"][2]
    pools = plans["network"]["pool_per_stage"]
    assert len(pools) >= 4
    assert all(pool == [2, 2, 2] for pool in pools)
    features = plans["network"]["features_per_stage"]
    assert len(features) == len(pools) + 1 and features[0] == 32 and max(features) <= 320
    tight = plan_json(fingerprint(spacings, [(200, 200, 200)] * 5), gpu_memory_gb=8.0)
    assert all(pool == [2, 2, 2] for pool in tight["network"]["pool_per_stage"][:3])


def test_anisotropic_axis_takes_tenth_percentile_and_is_pooled_late() -> None:
    z_spacings = [3.0, 3.5, 4.0, 4.5, 5.0, 4.0, 4.0, 3.2, 4.8, 4.1]
    plans = plan_json(fingerprint([(0.7, 0.7, z) for z in z_spacings], [(256, 256, 40)] * 10))
    assert plans["spacing"][:2] == pytest.approx([0.7, 0.7])
    assert plans["spacing"][2] == pytest.approx(np.percentile(z_spacings, 10))
    assert plans["spacing"][2] < np.median(z_spacings)
    pools = plans["network"]["pool_per_stage"]
    assert pools[0] == [2, 2, 1] and pools[1] == [2, 2, 1]
    assert any(pool[2] == 2 for pool in pools[2:]), "the coarse axis is pooled once in-plane has caught up"
    divisor = np.prod(np.array(pools), axis=0)
    assert all(p % d == 0 for p, d in zip(plans["patch_size"], divisor))
    assert plans["patch_size"][2] < plans["patch_size"][0]


def test_anisotropic_axis_with_many_slices_keeps_the_median() -> None:
    z_spacings = [3.0, 3.5, 4.0, 4.5, 5.0]
    plans = plan_json(fingerprint([(0.7, 0.7, z) for z in z_spacings], [(100, 100, 200)] * 5))
    assert plans["spacing"] == pytest.approx([0.7, 0.7, 4.0])


def test_small_images_clip_the_patch_to_the_median_shape() -> None:
    plans = plan_json(fingerprint([(1.0, 1.0, 1.0)] * 5, [(40, 36, 20)] * 5))
    patch = plans["patch_size"]
    assert all(p <= m for p, m in zip(patch, (40, 36, 20)))
    divisor = np.prod(np.array(plans["network"]["pool_per_stage"]), axis=0)
    assert all(p % d == 0 for p, d in zip(patch, divisor))
    assert patch == [40, 32, 20]


def test_tight_memory_budget_gives_a_smaller_patch() -> None:
    fp = fingerprint([(1.0, 1.0, 1.0)] * 10, [(200, 200, 200)] * 10)
    tight, generous = plan_json(fp, gpu_memory_gb=4.0), plan_json(fp, gpu_memory_gb=40.0)
    assert np.prod(tight["patch_size"]) < np.prod(generous["patch_size"])
    assert all(t <= g for t, g in zip(tight["patch_size"], generous["patch_size"]))
    assert tight["estimated_gpu_memory_gb"] <= 4.0
    assert generous["estimated_gpu_memory_gb"] <= 40.0


def test_generous_memory_budget_gives_a_larger_even_batch() -> None:
    fp = fingerprint([(1.0, 1.0, 1.0)] * 200, [(40, 36, 20)] * 200)
    tight, generous = plan_json(fp, gpu_memory_gb=1.2), plan_json(fp, gpu_memory_gb=12.0)
    assert tight["patch_size"] == generous["patch_size"]
    assert tight["batch_size"] == 2
    assert generous["batch_size"] > tight["batch_size"]
    for plans in (tight, generous):
        assert plans["batch_size"] >= 2 and plans["batch_size"] % 2 == 0
        assert plans["batch_size"] <= 8
        assert plans["estimated_gpu_memory_gb"] <= plans["gpu_memory_budget_gb"]


def test_batch_stays_small_on_a_small_dataset() -> None:
    plans = plan_json(fingerprint([(1.0, 1.0, 1.0)] * 3, [(40, 36, 20)] * 3), gpu_memory_gb=80.0)
    assert plans["batch_size"] == 2


def test_more_recursion_steps_raise_the_memory_estimate() -> None:
    topology = plan_topology([64, 64, 32], [1.0, 1.0, 2.0], 5, 32, 320)
    estimates = [estimate_memory_gb([64, 64, 32], topology, 2, steps) for steps in (1, 2, 4, 6)]
    assert all(a < b for a, b in zip(estimates, estimates[1:]))
    assert estimate_memory_gb([64, 64, 32], topology, 4, 2) > estimates[1]
    plans = [plan_json(fingerprint([(1.0, 1.0, 1.0)] * 3, [(40, 36, 20)] * 3, n_phases=n)) for n in (4, 6, 8)]
    assert [len(p["target_times_s"]) for p in plans] == [2, 4, 6]
    assert [p["patch_size"] for p in plans] == [plans[0]["patch_size"]] * 3
    memory = [p["estimated_gpu_memory_gb"] for p in plans]
    assert memory[0] < memory[1] < memory[2]
    assert "4 unrolled recursion steps" in plans[1]["memory_estimate_note"]
    # a third input phase adds a warm-up step (phase 1 -> 2) that is unrolled like the others
    three_inputs = plan_json(fingerprint([(1.0, 1.0, 1.0)] * 3, [(40, 36, 20)] * 3, input_phases=(0, 1, 2)))
    assert three_inputs["target_times_s"] == TIMES[3:6]
    assert "4 unrolled recursion steps" in three_inputs["memory_estimate_note"]
    assert three_inputs["estimated_gpu_memory_gb"] == plans[1]["estimated_gpu_memory_gb"]


def test_plan_fields_follow_the_fingerprint() -> None:
    plans = plan_json(fingerprint([(1.0, 1.0, 2.0)] * 4, [(64, 64, 32)] * 4), plans_name="myplan")
    assert plans["plans_name"] == "myplan" and plans["dataset"] == "Dataset001_Hand"
    assert plans["input_phases"] == [0, 1] and plans["target_times_s"] == TIMES[2:6]
    assert "reference_phase" not in plans and plans["normalization"]["reference_phase"] == 1
    assert plans["normalization"] == {"scheme": "ti_norm", "reference_phase": 1, "mask": "foreground",
                                      "reference_rule": "first post-contrast phase (phase index 1)"}
    assert plans["input_times_s"] == TIMES[:2] and plans["max_phases"] == 6
    assert plans["trained_target_times_s"] == [TIMES[2], TIMES[5]]
    assert plans["network"]["time_scale_s"] == 365.0
    # phase k has mean 100 + 10k, reference phase 1 mean 110 std 20 -> (5 - 110) / 20 and (300 - 110) / 20
    assert plans["intensity_range"] == pytest.approx([-5.25, 9.5])
    from_dataset_json = plan_json(fingerprint([(1, 1, 1)] * 2, [(32, 32, 16)] * 2, reference_phase=0))
    assert from_dataset_json["normalization"]["reference_phase"] == 0
    assert from_dataset_json["normalization"]["reference_rule"] == "dataset.json reference_phase"


def test_reference_phase_outside_the_inputs_is_rejected_by_the_planner() -> None:
    with pytest.raises(ValueError, match="reference phase 3 must be an input phase"):
        plan_json(fingerprint([(1, 1, 1)] * 2, [(32, 32, 16)] * 2, reference_phase=3))


def test_unknown_preset_and_empty_fingerprint_are_errors() -> None:
    fp = fingerprint([(1, 1, 1)] * 2, [(32, 32, 16)] * 2)
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        plan_json(fp, preset="huge")
    with pytest.raises(ValueError, match="no cases"):
        plan_json(dataclasses.replace(fp, cases=()))


def test_tiny_preset_is_smaller_than_default() -> None:
    fp = fingerprint([(1.0, 1.0, 1.0)] * 4, [(128, 128, 64)] * 4)
    tiny, default = plan_json(fp, preset="tiny"), plan_json(fp, preset="default")
    assert np.prod(tiny["patch_size"]) < np.prod(default["patch_size"])
    assert max(tiny["network"]["features_per_stage"]) <= 32
    assert tiny["training"]["warmup_epochs"] < default["training"]["warmup_epochs"]


def test_plan_round_trips_and_broken_plans_are_rejected_naming_the_file(tmp_path: Path) -> None:
    plans = plan_json(fingerprint([(0.8, 0.8, 2.0)] * 4, [(96, 96, 40)] * 4))
    assert as_plans(plans).to_dict() == plans  # valid: the checks of a plan read from disk pass
    path = tmp_path / "plans.json"
    save_plans(plans, path)
    assert load_plans(path).to_dict() == plans

    def broken(change) -> str:
        edited = json.loads(json.dumps(plans))
        change(edited)
        target = tmp_path / "broken.json"
        target.write_text(json.dumps(edited))
        with pytest.raises(PlansError) as info:
            load_plans(target)
        assert str(target) in str(info.value)
        return str(info.value)

    assert "missing key patch_size" in broken(lambda p: p.pop("patch_size"))
    assert "version 5 is not supported" in broken(lambda p: p.update(version=5))
    assert "reference_phase must be one of input_phases" in broken(lambda p: p["normalization"].update(
        reference_phase=4))
    assert "batch_size must be an integer, got '8'" in broken(lambda p: p.update(batch_size="8"))
    assert "spacing must hold 3 positive numbers" in broken(lambda p: p.update(spacing=[1.0, -1.0, 2.0]))
    assert "intensity_range" in broken(lambda p: p.update(intensity_range=[3.0]))
    assert "strictly increasing" in broken(lambda p: p.update(target_times_s=[300.0, 200.0]))
    assert "max_phases (3) must be at least" in broken(lambda p: p.update(max_phases=3))
    # nested sections are checked as strictly as the top level, every problem at once
    both = broken(lambda p: (p["optimizer"].pop("recursive_lr"), p["augmentation"].pop("probability_noise")))
    assert "missing key optimizer.recursive_lr" in both and "missing key augmentation.probability_noise" in both
    assert "missing key network.use_convlstm" in broken(lambda p: p["network"].pop("use_convlstm"))
    # the network section is checked by the network's own config (one set of checks for plans and checkpoints)
    assert "time_embedding_dim must be a positive even integer, got 7" in broken(
        lambda p: p["network"].update(time_embedding_dim=7))
    assert "pool_per_stage has 1 entries" in broken(lambda p: p["network"].update(pool_per_stage=[[2, 2, 2]]))
    assert "unknown key training.warmup_epoch" in broken(lambda p: p["training"].update(warmup_epoch=3))
    assert "unknown key network.in_channels" in broken(lambda p: p["network"].update(in_channels=2))
    assert "loss_weights.l2: unknown loss term" in broken(lambda p: p["loss_weights"].update(l2=1.0))
    assert "loss_weights.l1 must be a non-negative number" in broken(lambda p: p["loss_weights"].update(l1=-1.0))
    assert "optimizer.betas" in broken(lambda p: p["optimizer"].update(betas=[0.9]))
    without_ssim = json.loads(json.dumps(plans))
    del without_ssim["loss_weights"]["ssim"]  # a term a plan leaves out gets its default weight
    assert as_plans(without_ssim).loss_weights == plans["loss_weights"] | {"ssim": DEFAULT_LOSS_WEIGHTS["ssim"]}
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PlansError, match="bad.json: not valid JSON"):
        load_plans(tmp_path / "bad.json")
    with pytest.raises(PlansError, match="missing.json: no plan found"):
        load_plans(tmp_path / "missing.json")
    with pytest.raises(PlansError, match="refusing to write"):
        save_plans({**plans, "version": 9}, tmp_path / "never.json")
    assert not (tmp_path / "never.json").exists()


def as_version_3(plans: dict) -> dict:
    """A current plan written as version 3 did: no contrast-uptake augmentation keys."""
    old = json.loads(json.dumps(plans))
    del old["augmentation"]["enhancement_scale_range"], old["augmentation"]["probability_enhancement_scale"]
    old["version"] = 3
    return old


def as_version_2(plans: dict) -> dict:
    """A current plan written as version 2 did: one protocol, ``phase_times_s`` and ``target_phases`` indices."""
    old = as_version_3(plans)
    times = old.pop("input_times_s") + old.pop("target_times_s")
    n_in = len(old["input_phases"])
    del old["max_phases"], old["trained_target_times_s"]
    old.update(version=2, phase_times_s=times, target_phases=list(range(n_in, len(times))))
    return old


def test_version_3_plans_are_migrated_with_the_uptake_augmentation_off(tmp_path: Path) -> None:
    plans = plan_json(fingerprint([(0.8, 0.8, 2.0)] * 4, [(96, 96, 40)] * 4))
    assert plans["version"] == 4 and plans["augmentation"]["probability_enhancement_scale"] == 0.0
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(as_version_3(plans)))
    assert load_plans(path).to_dict() == plans
    shipped = load_plans(pretrained_model_folder("phantom_sites_abc") / "plans.json")  # written as version 3
    assert shipped.augmentation.probability_enhancement_scale == 0.0


def test_version_2_plans_are_migrated_when_read(tmp_path: Path) -> None:
    plans = plan_json(fingerprint([(0.8, 0.8, 2.0)] * 4, [(96, 96, 40)] * 4))
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(as_version_2(plans)))
    assert load_plans(path).to_dict() == plans
    path.write_text(json.dumps({**as_version_2(plans), "target_phases": [2, 9]}))
    with pytest.raises(PlansError, match=r"target_phases \[2, 9\] are not indices"):
        load_plans(path)


def test_mixed_protocols_are_planned_as_times() -> None:
    """Cases of 4, 5 and 6 phases: the default protocol is dataset.json's, the longest case sets max_phases
    and the trained range covers every case's targets."""
    fp = fingerprint([(1.0, 1.0, 1.0)] * 3, [(40, 36, 20)] * 3).to_dict()
    fp["cases"][1]["phase_times_s"] = [0.0, 90.0, 190.0, 290.0]
    fp["cases"][2]["phase_times_s"] = [0.0, 75.0, 155.0, 235.0, 315.0]
    for case in fp["cases"][1:]:
        n = len(case["phase_times_s"])
        case["phases"] = case["phases"][:n]
    plans = plan_json(DatasetFingerprint.from_dict(fp))
    assert plans["input_times_s"] == TIMES[:2] and plans["target_times_s"] == TIMES[2:6]
    assert plans["max_phases"] == 6 and plans["trained_target_times_s"] == [155.0, 365.0]
    fp["cases"][0]["phase_times_s"] = [0.0, 85.0, 400.0, 450.0, 500.0, 600.0]
    assert plan_json(DatasetFingerprint.from_dict(fp))["trained_target_times_s"] == [155.0, 600.0]
    fp["cases"][1]["phase_times_s"] = [0.0, 90.0]
    with pytest.raises(ValueError, match="case_001 have no phase after the 2 input phases"):
        plan_json(DatasetFingerprint.from_dict(fp))


def test_version_1_plans_are_migrated_when_read(tmp_path: Path) -> None:
    plans = plan_json(fingerprint([(0.8, 0.8, 2.0)] * 4, [(96, 96, 40)] * 4))
    version_1 = as_version_2(plans)
    version_1.update(version=1, reference_phase=1, ssim={"window_size": 11, "sigma": 1.5})
    version_1["network"]["in_channels"] = 2
    version_1["optimizer"].update(name="adamw", schedule="poly")
    path = tmp_path / "plans.json"
    path.write_text(json.dumps(version_1))
    assert load_plans(path).to_dict() == plans
    version_1["optimizer"]["name"] = "sgd"
    path.write_text(json.dumps(version_1))
    with pytest.raises(PlansError, match="optimizer.name = 'sgd' is not supported"):
        load_plans(path)


def test_plan_summary_mentions_patch_spacing_and_batch() -> None:
    plans = plan_json(fingerprint([(0.8, 0.8, 2.0)] * 4, [(96, 96, 40)] * 4))
    summary = plan_summary(Plans.from_dict(plans))
    assert "patch" in summary and " x ".join(map(str, plans["patch_size"])) in summary
    assert "spacing" in summary and "0.8, 0.8, 2" in summary
    assert f"/ {plans['batch_size']}" in summary
    assert "TI-norm on phase 1" in summary
