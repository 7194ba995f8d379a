"""benchmarks/cross_site_data.py: a dataset trained with another dataset's plan gets its own name and times."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.cross_site_data import merge_sites, prepare_training_set
from iterdce.preprocessing.plans_io import load_plans
from tests.helpers import make_raw_dataset

SLOW_TIMES = [0.0, 100.0, 250.0, 400.0]


def test_a_borrowed_plan_carries_the_new_datasets_name_and_trained_times(tmp_path: Path) -> None:
    raw_root, preprocessed = tmp_path / "raw", tmp_path / "preprocessed"
    first = make_raw_dataset(raw_root, dataset_id=900, name="SiteA")
    slow = make_raw_dataset(raw_root, dataset_id=901, name="SiteB", times=SLOW_TIMES, seed=1)
    source, _, _ = prepare_training_set([first], raw_root, preprocessed, "Dataset899_SitesA", "tiny", 1)
    source_plan = load_plans(source / "plans.json")

    target, plan, cases = prepare_training_set([slow], raw_root, preprocessed, "Dataset898_Other", "tiny", 1,
                                               plan_from=source / "plans.json")

    assert plan["dataset"] == "Dataset898_Other"
    assert plan["trained_target_times_s"] == pytest.approx([250.0, 400.0])
    assert source_plan.trained_target_times_s[1] < 250.0  # the source plan's range differs from the new one
    written = load_plans(target / "plans.json")
    assert written.dataset == "Dataset898_Other"
    assert written.trained_target_times_s == pytest.approx((250.0, 400.0))
    # what shapes the network and the preprocessed arrays is the source plan's
    assert written.patch_size == source_plan.patch_size and written.spacing == source_plan.spacing
    assert written.network == source_plan.network
    assert cases == ["siteb_case_000", "siteb_case_001"]
    assert json.loads((target / "dataset.json").read_text())["name"] == "Other"


def test_merged_sites_name_their_input_phases_and_refuse_a_different_count(tmp_path: Path) -> None:
    site = make_raw_dataset(tmp_path / "raw", dataset_id=900, name="SiteA", n_phases=5)
    merged = merge_sites([site], tmp_path / "raw" / "Dataset899_SitesA", input_phases=3)
    info = json.loads((merged / "dataset.json").read_text())
    assert info["input_phases"] == [0, 1, 2]
    assert merge_sites([site], merged, input_phases=3) == merged  # the same request reuses it
    with pytest.raises(SystemExit, match=r"merged earlier with input phases \[0, 1, 2\], asked for \[0, 1\]"):
        merge_sites([site], merged)


def test_a_site_simulated_without_early_frames_is_not_reused_with_them(tmp_path: Path) -> None:
    from benchmarks.cross_site import parse_args
    from benchmarks.cross_site_data import simulate_sites

    folder = tmp_path / "raw" / "Dataset900_SiteA"
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"simulation": {"seed": 0}}))  # written before the option
    assert simulate_sites(tmp_path / "raw", ["A"], [2], [64, 56, 16], seed=0, jobs=1) == [folder]
    with pytest.raises(SystemExit, match="Dataset900_SiteA: simulated with 0 early frames, asked for 4"):
        simulate_sites(tmp_path / "raw", ["A"], [2], [64, 56, 16], seed=0, jobs=1, early_frames=4)
    assert parse_args(["--early-frames", "4"]).input_phases == 5
    assert parse_args(["--early-frames", "4", "--input-phases", "3"]).input_phases == 3
    assert parse_args([]).input_phases == 2
    with pytest.raises(SystemExit):  # site D's timing jitter leaves no room for 5 frames
        parse_args(["--early-frames", "5"])


def test_a_trainer_other_than_the_default_names_its_runs_and_trains_the_variants_only() -> None:
    from benchmarks.cross_site import Study, parse_args

    args = parse_args(["--trainer", "InputChannelsTrainer", "--precision", "fp32"])
    study = Study(args, Path("out"), 0.0, Path("pre"), {}, {}, Path("test"), [], [])
    assert study.suffix == "_InputChannelsTrainer_fp32"
    assert Study(parse_args([]), Path("out"), 0.0, Path("pre"), {}, {}, Path("test"), [], []).suffix == ""
    with pytest.raises(SystemExit):
        parse_args(["--trainer", "InputChannelsTrainer", "--pretrain-cases", "4"])


def test_a_dataset_json_naming_more_inputs_keeps_everything_else(tmp_path: Path) -> None:
    from benchmarks.cross_site_data import dataset_json_with_inputs

    raw = tmp_path / "raw"
    (raw / "timesTr").mkdir(parents=True)
    (raw / "dataset.json").write_text(json.dumps({"name": "site", "input_phases": [0, 1], "num_phases": 6}))
    scored = dataset_json_with_inputs(raw, 3, tmp_path / "scored")
    assert json.loads(scored.read_text()) == {"name": "site", "input_phases": [0, 1, 2], "num_phases": 6}
    assert (scored.parent / "timesTr").resolve() == (raw / "timesTr").resolve()
