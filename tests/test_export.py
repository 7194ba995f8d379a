"""Tests of the export: synthesized phases written in the input geometry, and the voxel-wise kinetic map."""
from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from iterdce.core.file_names import phase_file_name as output_name
from iterdce.core.kinetics_rule import CURVE_CODES
from iterdce.dataset.nifti_io import Geometry, read_image
from iterdce.inference.export import ENHANCING_THRESHOLD, kinetic_map, write_kinetic_map, write_phases

TIMES = [0.0, 85.0, 155.0, 225.0, 295.0, 365.0]
SHAPE = (24, 24, 8)
BODY = (slice(2, 22), slice(2, 22), slice(1, 7))
# region -> (voxels, curve over the 6 phases, expected code)
REGIONS = {
    "persistent": ((slice(4, 8), slice(4, 8), slice(2, 6)), [100, 200, 220, 240, 250, 260], 1),  # r = +0.30
    "plateau": ((slice(4, 8), slice(10, 14), slice(2, 6)), [100, 200, 205, 208, 206, 205], 2),  # r = +0.025
    "washout": ((slice(4, 8), slice(16, 20), slice(2, 6)), [100, 200, 190, 175, 160, 150], 3),  # r = -0.25
    "r_at_plus_10_percent": ((slice(10, 14), slice(4, 8), slice(2, 6)), [100, 200, 200, 210, 215, 220], 2),
    "enhancing_at_50_percent": ((slice(10, 14), slice(10, 14), slice(2, 6)), [100, 150, 160, 170, 180, 190], 1),
    "weak_enhancement": ((slice(10, 14), slice(16, 20), slice(2, 6)), [100, 130, 140, 150, 160, 170], 0),
    "washout_below_-10_percent": ((slice(16, 20), slice(4, 8), slice(2, 6)), [100, 200, 190, 185, 181, 179], 3),
}


def oblique_affine() -> np.ndarray:
    angle = np.radians(30.0)
    rotation = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.eye(3)[:, [1, 2, 0]] @ np.diag([0.7, 0.9, 2.5])
    affine[:3, 3] = [10.0, -20.0, 5.5]
    return affine


def hand_made_phases() -> np.ndarray:
    """Air (0) around a body block of constant 100 holding regions with known curves."""
    phases = np.zeros((len(TIMES), *SHAPE), dtype=np.float32)
    phases[(slice(None), *BODY)] = 100.0
    for voxels, curve, _ in REGIONS.values():
        phases[(slice(None), *voxels)] = np.asarray(curve, dtype=np.float32)[:, None, None, None]
    return phases


def test_output_name_is_case_and_four_digit_phase():
    assert output_name("case_007", 3) == "case_007_0003.nii.gz"
    assert output_name("a_b", 12) == "a_b_0012.nii.gz"


@pytest.mark.parametrize("codes", [(1, 1), (1, 2), (2, 1), (0, 1)])
def test_write_phases_keeps_shape_affine_codes_and_values(tmp_path, codes):
    rng = np.random.default_rng(0)
    phases = rng.normal(100.0, 20.0, size=(3, 7, 5, 4))  # float64 in, float32 on disk
    geometry = Geometry((7, 5, 4), oblique_affine(), qform_code=codes[0], sform_code=codes[1])
    paths = write_phases(phases, geometry, tmp_path / "out", "case", [2, 3, 4])
    assert [p.name for p in paths] == ["case_0002.nii.gz", "case_0003.nii.gz", "case_0004.nii.gz"]
    for path, expected in zip(paths, phases):
        image = nib.load(str(path))
        assert image.shape == (7, 5, 4) and image.get_data_dtype() == np.float32
        np.testing.assert_allclose(image.affine, geometry.affine, atol=1e-5)
        assert (int(image.header["qform_code"]), int(image.header["sform_code"])) == codes
        np.testing.assert_allclose(np.asarray(image.dataobj), expected.astype(np.float32), rtol=0, atol=0)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]  # no temporaries


def test_kinetic_map_codes_hand_made_curves():
    codes = kinetic_map(hand_made_phases(), TIMES)
    assert codes.dtype == np.uint8 and codes.shape == SHAPE
    for name, (voxels, _, expected) in REGIONS.items():
        assert (codes[voxels] == expected).all(), name
    labelled = np.zeros(SHAPE, dtype=bool)
    for voxels, _, _ in REGIONS.values():
        labelled[voxels] = True
    assert (codes[~labelled] == CURVE_CODES["none"]).all()  # air and non-enhancing body
    assert ENHANCING_THRESHOLD == 0.5


def test_kinetic_map_takes_the_highest_early_phase():
    """Two post-contrast phases at <= 120 s: S_early is the higher one (rule of DATA_FORMAT.md)."""
    times = [0.0, 60.0, 110.0, 200.0, 300.0]
    phases = np.zeros((5, *SHAPE), dtype=np.float32)
    phases[(slice(None), *BODY)] = 100.0
    region = (slice(8, 14), slice(8, 14), slice(2, 6))
    phases[(slice(None), *region)] = np.array([100, 150, 200, 190, 190], np.float32)[:, None, None, None]
    codes = kinetic_map(phases, times)
    assert (codes[region] == CURVE_CODES["plateau"]).all()  # (190 - 200) / 200; with phase 1 alone: persistent


def test_kinetic_map_is_zero_without_signal_and_warns_nothing():
    phases = np.zeros((len(TIMES), *SHAPE), dtype=np.float32)
    phases[1:, 5:10, 5:10, 2:5] = 50.0  # enhances from a pre-contrast value of 0: no ratio defined
    with np.errstate(all="raise"):
        codes = kinetic_map(phases, TIMES)
    assert (codes == 0).all()


def test_write_kinetic_map_is_uint8_in_input_geometry(tmp_path):
    geometry = Geometry(SHAPE, oblique_affine(), qform_code=1, sform_code=2)
    path = write_kinetic_map(hand_made_phases(), TIMES, geometry, tmp_path, "case_x")
    assert path == tmp_path / "case_x_kinetics.nii.gz"
    image = nib.load(str(path))
    assert image.get_data_dtype() == np.uint8 and image.shape == SHAPE
    np.testing.assert_allclose(image.affine, geometry.affine, atol=1e-5)
    assert int(image.header["sform_code"]) == 2
    data, _ = read_image(path, dtype=np.uint8)
    np.testing.assert_array_equal(data, kinetic_map(hand_made_phases(), TIMES))
