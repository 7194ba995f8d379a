"""The synthetic breast DCE phantom: physics units, kinetic ground truth, layout, geometry, determinism, CLI."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import dcmri
import numpy as np
import pytest

from iterdce.commands.simulate import main as simulate_main
from iterdce.core.kinetics_rule import classify_curve, curve_ratio
from iterdce.dataset.nifti_io import read_header, read_image
from iterdce.simulation import simulate_dataset
from iterdce.simulation.acquisition import apply_motion, bias_field, motion_shifts
from iterdce.simulation.case import simulate_case
from iterdce.simulation.config import SimulationConfig
from iterdce.simulation.kinetics import HEMATOCRIT, ParamSet, Physics
from iterdce.simulation.lesions import LesionPlacementError

SHAPE = (48, 48, 16)
TIMES = (0.0, 85.0, 155.0, 225.0, 295.0, 365.0)
REQUIRED_COLUMNS = {"case", "lesion", "curve_type", "ktrans_per_min", "ve", "vp", "volume_ml", "morphology",
                    "pattern", "curve_ratio"}


def _rows(dataset: Path) -> list[dict[str, str]]:
    with open(dataset / "cases.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _images(dataset: Path, case: str) -> np.ndarray:
    return np.stack([read_image(dataset / "imagesTr" / f"{case}_{p:04d}.nii.gz")[0] for p in range(len(TIMES))])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A 12-case dataset on a tiny grid (default spacing), made once for the module."""
    out = tmp_path_factory.mktemp("phantom") / "Dataset001_Phantom"
    simulate_dataset(out, 12, shape=SHAPE, seed=7)
    return out


def test_concentration_units_match_manual_extended_tofts():
    """Ktrans per minute becomes PS per second: compare with a direct numerical convolution."""
    physics = Physics(TIMES, bolus_arrival_s=15.0)
    params = ParamSet(ktrans_per_min=0.3, ve=0.3, vp=0.05, t10_s=1.4)
    t = physics.t_fine
    cp = dcmri.aif_parker(t, BAT=15.0) / (1 - HEMATOCRIT)
    kernel = (0.3 / 60.0) * np.exp(-(0.3 / 60.0) / 0.3 * t)
    manual = 0.05 * cp + np.convolve(cp, kernel)[: t.size] * (t[1] - t[0])
    expected = np.interp(TIMES, t, manual)
    got = physics.concentration(params)
    assert got[0] < 1e-6  # before the bolus
    np.testing.assert_allclose(got[1:], expected[1:], rtol=0.03)
    # blood follows the AIF; a non-enhancing tissue keeps its pre-contrast signal
    blood = physics.concentration(ParamSet(blood=True))
    np.testing.assert_allclose(blood, np.interp(TIMES, t, dcmri.aif_parker(t, BAT=15.0)))
    fat = physics.signal(ParamSet(t10_s=0.36))
    np.testing.assert_allclose(fat, fat[0])
    assert physics.signal(params)[1] > 1.5 * physics.signal(params)[0]


def test_declared_type_equals_rule_on_noiseless_curve_with_margin():
    config = SimulationConfig(shape=SHAPE)
    seen = set()
    for index in range(12):
        case = simulate_case(3, index, config, keep_noiseless=True)
        for row in case.lesion_rows:
            curve = case.noiseless[:, case.labels == row["lesion"]].astype(np.float64).mean(axis=1)
            ratio = float(curve_ratio(curve, case.times_s))
            assert classify_curve(curve, case.times_s) == row["curve_type"]
            assert min(abs(ratio - 0.10), abs(ratio + 0.10)) >= 0.045
            assert ratio == pytest.approx(row["curve_ratio"], abs=2e-3)
            seen.add(row["curve_type"])
    assert seen == {"persistent", "plateau", "washout"}


def test_dataset_json_and_layout(dataset):
    info = json.loads((dataset / "dataset.json").read_text())
    assert {"name", "description", "file_ending", "phase_times_s", "numTraining", "input_phases",
            "labels"} <= set(info)
    assert info["name"] == "Phantom" and info["file_ending"] == ".nii.gz"
    assert info["phase_times_s"] == list(TIMES) and info["numTraining"] == 12 and info["input_phases"] == [0, 1]
    assert len(list((dataset / "imagesTr").glob("*.nii.gz"))) == 12 * len(TIMES)
    assert len(list((dataset / "labelsTr").glob("*.nii.gz"))) == 12
    assert len(list((dataset / "masksTr").glob("*.nii.gz"))) == 12
    assert not (dataset / "timesTr").exists()


def test_all_curve_types_and_table(dataset):
    rows = _rows(dataset)
    assert REQUIRED_COLUMNS <= set(rows[0])
    assert {r["curve_type"] for r in rows} == {"persistent", "plateau", "washout"}
    for row in rows:
        labels, _ = read_image(dataset / "labelsTr" / f"{row['case']}.nii.gz", dtype=np.uint8)
        count = int((labels == int(row["lesion"])).sum())
        assert float(row["volume_ml"]) == pytest.approx(count * 1.6 * 1.6 * 2.0 / 1000, rel=1e-3)
        assert row["morphology"] in {"round", "lobulated", "irregular", "spiculated"}
        assert row["pattern"] in {"homogeneous", "heterogeneous", "rim"}


def test_written_geometry_dtypes_and_lesions_inside_breast(dataset):
    img, geometry = read_header(dataset / "imagesTr" / "phantom_000_0000.nii.gz")
    assert geometry.shape == SHAPE and img.get_data_dtype() == np.float32
    np.testing.assert_allclose(geometry.spacing, (1.6, 1.6, 2.0))
    assert np.allclose(geometry.affine[:3, :3], np.diag((1.6, 1.6, 2.0)))  # RAS, no rotation
    for case in [f"phantom_{i:03d}" for i in range(12)]:
        label_img, label_geometry = read_header(dataset / "labelsTr" / f"{case}.nii.gz")
        mask_img, _ = read_header(dataset / "masksTr" / f"{case}.nii.gz")
        assert label_img.get_data_dtype() == np.uint8 and mask_img.get_data_dtype() == np.uint8
        assert label_geometry.matches(geometry)
        labels = np.asarray(label_img.dataobj)
        mask = np.asarray(mask_img.dataobj)
        assert set(np.unique(mask)) <= {0, 1} and mask.sum() > 0
        assert np.all(mask[labels > 0] == 1)


def test_noisy_written_curves_classify_as_declared(dataset):
    for row in _rows(dataset):
        labels, _ = read_image(dataset / "labelsTr" / f"{row['case']}.nii.gz", dtype=np.uint8)
        images = _images(dataset, row["case"])
        curve = images[:, labels == int(row["lesion"])].mean(axis=1)
        assert classify_curve(curve, TIMES) == row["curve_type"], row


def test_same_seed_identical_in_parallel_different_seed_differs(tmp_path, dataset):
    again = simulate_dataset(tmp_path / "again", 3, shape=SHAPE, seed=7, jobs=2).dataset_dir
    other = simulate_dataset(tmp_path / "other", 1, shape=SHAPE, seed=8).dataset_dir
    for case in ("phantom_000", "phantom_001", "phantom_002"):
        assert _images(again, case).tobytes() == _images(dataset, case).tobytes()
        for folder in ("labelsTr", "masksTr"):
            a = read_image(again / folder / f"{case}.nii.gz")[0]
            b = read_image(dataset / folder / f"{case}.nii.gz")[0]
            assert np.array_equal(a, b)
    assert not np.array_equal(_images(other, "phantom_000"), _images(dataset, "phantom_000"))


def test_spacing_shape_and_timing_jitter(tmp_path):
    out = simulate_dataset(tmp_path / "ds", 3, shape=(40, 44, 12), spacing=(2.0, 2.5, 3.0), seed=1,
                           timing_jitter_s=20.0).dataset_dir
    _, geometry = read_header(out / "imagesTr" / "phantom_002_0005.nii.gz")
    assert geometry.shape == (40, 44, 12)
    np.testing.assert_allclose(geometry.spacing, (2.0, 2.5, 3.0))
    rows = _rows(out)
    for index in range(3):
        case = f"phantom_{index:03d}"
        times = json.loads((out / "timesTr" / f"{case}.json").read_text())["phase_times_s"]
        assert len(times) == len(TIMES) and times[0] == 0.0
        assert all(b > a for a, b in zip(times, times[1:]))
        assert np.all(np.abs(np.array(times) - TIMES) <= 20.0)
        labels = read_image(out / "labelsTr" / f"{case}.nii.gz")[0]
        for row in (r for r in rows if r["case"] == case):
            curve = _images(out, case)[:, labels == int(row["lesion"])].mean(axis=1)
            assert classify_curve(curve, times) == row["curve_type"]
    all_times = [json.loads(p.read_text())["phase_times_s"] for p in sorted((out / "timesTr").glob("*.json"))]
    assert all_times[0] != all_times[1]


def test_fat_suppression_scales_only_fat():
    on = simulate_case(5, 0, SimulationConfig(shape=SHAPE), keep_noiseless=True).noiseless
    off = simulate_case(5, 0, SimulationConfig(shape=SHAPE, fat_suppression=False), keep_noiseless=True).noiseless
    changed = ~np.isclose(on[0], off[0])
    ratio = on[0][changed] / off[0][changed]
    assert changed.sum() > 100 and 0.1 <= ratio.min() and ratio.max() <= 0.25
    assert np.ptp(ratio) < 1e-3
    np.testing.assert_allclose(on[:, ~changed], off[:, ~changed])
    assert off[0][changed].mean() > 1.5 * np.percentile(off[0][~changed & (off[0] > 0)], 99)
    assert off[0][changed].mean() > 2 * on[0][changed].mean()


def test_bias_field_and_motion():
    rng = np.random.default_rng(0)
    field = bias_field(rng, (20, 24, 8))
    assert field.shape == (20, 24, 8) and np.exp(-0.26) < field.min() < field.max() < np.exp(0.26)
    assert np.abs(np.diff(field, axis=0)).max() < 0.05
    shifts = motion_shifts(rng, 6, 1.0, (0.5, 0.5, 2.0))
    assert np.all(shifts[0] == 0) and np.all(np.linalg.norm(shifts[1:] * (0.5, 0.5, 2.0), axis=1) <= 1.0)
    images = np.zeros((2, 10, 10, 4), dtype=np.float32)
    images[:, 4, 4, 2] = 1.0
    moved = apply_motion(images, np.array([[0, 0, 0], [1.0, 0, 0]]))
    assert moved[0, 4, 4, 2] == 1.0 and moved[1, 5, 4, 2] == 1.0 and moved[1, 4, 4, 2] == 0.0


def test_motion_moves_only_post_contrast_phases():
    still = simulate_case(2, 1, SimulationConfig(shape=SHAPE))
    moving = simulate_case(2, 1, SimulationConfig(shape=SHAPE, motion_mm=1.5))
    assert moving.images.shape == still.images.shape
    assert np.array_equal(moving.labels, still.labels)
    assert np.array_equal(moving.images[0], still.images[0])
    for phase in range(1, len(TIMES)):
        assert not np.array_equal(moving.images[phase], still.images[phase])
    assert moving.lesion_rows
    for row in moving.lesion_rows:  # motion never changes what the written curve says
        curve = moving.images[:, moving.labels == row["lesion"]].mean(axis=1)
        assert classify_curve(curve, moving.times_s) == row["curve_type"]


def test_invalid_settings_and_too_small_field_of_view(tmp_path):
    with pytest.raises(ValueError, match="timing jitter"):
        SimulationConfig(timing_jitter_s=40.0).validate()
    with pytest.raises(ValueError, match="shape"):
        SimulationConfig(shape=(10, 48, 16)).validate()
    with pytest.raises(ValueError, match="snr"):
        SimulationConfig(snr=0.0).validate()
    with pytest.raises(LesionPlacementError, match="--shape or --spacing"):
        for index in range(12):
            simulate_case(0, index, SimulationConfig(shape=(24, 24, 8), spacing=(0.5, 0.5, 1.0)))


def test_cli_runs_and_guards_existing_output(tmp_path, capsys):
    out = tmp_path / "Dataset002_Cli"
    argv = ["-o", str(out), "-n", "2", "--shape", "40", "40", "12", "--seed", "4", "--snr", "30",
            "--spacing", "2", "2", "3", "--motion", "0.5", "--no-fat-suppression"]
    assert simulate_main(argv) == 0
    assert "wrote 2 cases" in capsys.readouterr().out
    info = json.loads((out / "dataset.json").read_text())
    assert info["simulation"]["fat_suppression"] is False and info["simulation"]["snr"] == 30.0
    assert simulate_main(argv) == 1
    assert "not empty" in capsys.readouterr().err
    assert simulate_main(argv + ["--overwrite"]) == 0
    assert simulate_main(["-o", str(tmp_path / "bad"), "--snr", "-1"]) == 1
    assert "snr" in capsys.readouterr().err
