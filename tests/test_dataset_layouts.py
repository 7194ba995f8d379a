"""Reading cases from the three raw layouts, timing sidecars, NIfTI round trips and foreground masks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from iterdce.core.file_names import split_phase_name
from iterdce.dataset import nifti_io
from iterdce.dataset.case import CaseLoadError, DCECase, load_case
from iterdce.dataset.layout import detect_layout, discover_cases
from iterdce.dataset.masks import derive_foreground_mask, nonzero_mask
from iterdce.dataset.nifti_io import Geometry, ImageReadError, read_header, read_image, write_image
from iterdce.dataset.schema import DatasetSchemaError, load_dataset_json
from tests.helpers import LAYOUTS, default_times, make_raw_dataset, synthetic_case


def rotation(axis: int, degrees: float) -> np.ndarray:
    """3x3 rotation about array axis ``axis``."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[j, j], matrix[i, j], matrix[j, i] = c, c, -s, s
    return matrix


def oblique_affine() -> np.ndarray:
    """Rotated about two axes, anisotropic spacing 0.7 / 0.9 / 2.5 mm, off-centre."""
    affine = np.eye(4)
    affine[:3, :3] = rotation(2, 25.0) @ rotation(0, 12.0) @ np.diag([0.7, 0.9, 2.5])
    affine[:3, 3] = [-50.5, 20.25, 13.0]
    return affine


def load_all(dataset: Path) -> tuple[str, dict[str, DCECase]]:
    """Layout name and every case of a dataset, read with discover_cases + load_case."""
    info = load_dataset_json(dataset)
    discovery = discover_cases(dataset)
    assert discovery.stray == []
    return discovery.layout, {cid: load_case(files, info.phase_times_s) for cid, files in discovery.cases.items()}


def test_same_cases_read_identically_from_every_layout(tmp_path):
    affine = oblique_affine()
    shape = (12, 10, 6)
    loaded = {}
    for layout in LAYOUTS:
        found_layout, cases = load_all(make_raw_dataset(tmp_path / layout, layout=layout, shape=shape, affine=affine))
        assert found_layout == layout
        assert list(cases) == ["case_000", "case_001"]
        loaded[layout] = cases
    times = default_times(4)
    for index, case_id in enumerate(["case_000", "case_001"]):
        image, lesion, breast = synthetic_case(shape, times, seed=index)
        for layout in LAYOUTS:
            case = loaded[layout][case_id]
            assert case.case_id == case_id
            assert case.image.dtype == np.float32 and case.image.shape == (4, *shape)
            np.testing.assert_array_equal(case.image, image)
            np.testing.assert_array_equal(case.times_s, times)
            assert case.geometry.shape[:3] == shape and case.spatial_shape == shape
            np.testing.assert_allclose(case.geometry.affine, affine, atol=1e-5)
            np.testing.assert_allclose(case.spacing, (0.7, 0.9, 2.5), atol=1e-5)
            np.testing.assert_array_equal(case.lesion, lesion)
            np.testing.assert_array_equal(case.breast_mask, breast.astype(bool))
            assert case.lesion.any() and case.breast_mask.dtype == np.bool_
        assert not np.array_equal(loaded["flat"]["case_000"].image, loaded["flat"]["case_001"].image)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_timing_sidecar_overrides_dataset_json(tmp_path, layout):
    own = [-10.0, 60.0, 130.0, 200.0]
    dataset = make_raw_dataset(tmp_path, layout=layout, case_times={"case_001": own})
    _, cases = load_all(dataset)
    np.testing.assert_array_equal(cases["case_000"].times_s, default_times(4))
    np.testing.assert_array_equal(cases["case_001"].times_s, own)
    assert cases["case_001"].times_s.dtype == np.float64


def test_bad_sidecar_raises_naming_the_file(tmp_path):
    dataset = make_raw_dataset(tmp_path, case_times={"case_000": [0, 60, 130, 200]})
    sidecar = dataset / "timesTr" / "case_000.json"
    sidecar.write_text(json.dumps({"phase_times_s": [0, 60, 130]}))
    files = discover_cases(dataset).cases["case_000"]
    with pytest.raises(CaseLoadError, match="case_000_0003.nii.gz is phase 3, but timesTr/case_000.json lists 3"):
        load_case(files, tuple(default_times(4)))
    sidecar.write_text(json.dumps({"phase_times_s": [0, 60, 50, 200]}))
    with pytest.raises(DatasetSchemaError, match="case_000.json.*not strictly increasing"):
        load_case(files, tuple(default_times(4)))


def test_load_case_errors_name_case_and_file(tmp_path):
    dataset = make_raw_dataset(tmp_path)
    times = tuple(default_times(4))
    (dataset / "imagesTr" / "case_001_0002.nii.gz").unlink()
    data, geometry = read_image(dataset / "masksTr" / "case_000.nii.gz")
    shifted = geometry.affine.copy()
    shifted[0, 3] += 3.0
    write_image(dataset / "masksTr" / "case_000.nii.gz", data.astype(np.uint8), shifted)
    cases = discover_cases(dataset).cases
    with pytest.raises(CaseLoadError, match="case case_001: missing phase file.*case_001_0002"):
        load_case(cases["case_001"], times)
    with pytest.raises(CaseLoadError, match="case case_000: .*masksTr/case_000.nii.gz affine differs"):
        load_case(cases["case_000"], times)
    write_image(dataset / "masksTr" / "case_000.nii.gz", np.zeros((16, 16, 9), np.uint8), geometry)
    with pytest.raises(CaseLoadError, match=r"masksTr/case_000.nii.gz has shape \(16, 16, 9\)"):
        load_case(discover_cases(dataset).cases["case_000"], times)


def test_4d_frame_count_is_checked_on_load(tmp_path):
    dataset = make_raw_dataset(tmp_path, layout="4d", n_phases=5)
    files = discover_cases(dataset).cases["case_000"]
    with pytest.raises(CaseLoadError, match=r"case_000.nii.gz has shape \(16, 16, 8, 5\), expected 4D with 4 frames"):
        load_case(files, tuple(default_times(4)))
    assert load_case(files, tuple(default_times(5))).num_phases == 5


def test_layout_detection_and_names(tmp_path):
    with pytest.raises(FileNotFoundError, match="no imagesTr/.*nor images/"):
        detect_layout(tmp_path)
    assert split_phase_name("DUKE_001_0003.nii.gz") == ("DUKE_001", 3, ".nii.gz")
    assert split_phase_name("case_0001.nii") == ("case", 1, ".nii")
    assert split_phase_name("case_001.nii.gz") is None and split_phase_name("case_0001.nii.gz.bak") is None


def test_4d_duplicate_case_files_are_stray(tmp_path):
    dataset = make_raw_dataset(tmp_path, layout="4d")
    data, geometry = read_image(dataset / "imagesTr" / "case_000.nii.gz")
    write_image(dataset / "imagesTr" / "case_000.nii", data, geometry)
    discovery = discover_cases(dataset)
    assert discovery.layout == "4d" and sorted(discovery.cases) == ["case_000", "case_001"]
    assert discovery.cases["case_000"].volume_4d.name == "case_000.nii"
    assert [(p.name, reason) for p, reason in discovery.stray] == [
        ("case_000.nii.gz", "duplicate of case_000.nii (case case_000)")]


@pytest.mark.parametrize("codes", [(1, 1), (1, 2), (0, 2), (2, 0)])
def test_nifti_round_trip_keeps_geometry_codes_and_values(tmp_path, codes):
    rng = np.random.default_rng(3)
    data = (rng.random((9, 7, 5)) * 1000 - 200).astype(np.float32)
    geometry = Geometry(data.shape, oblique_affine(), qform_code=codes[0], sform_code=codes[1])
    path = tmp_path / "sub" / "image.nii.gz"
    write_image(path, data, geometry)
    back, back_geometry = read_image(path)
    assert back.dtype == np.float32 and back.shape == data.shape
    np.testing.assert_array_equal(back, data)
    np.testing.assert_allclose(back_geometry.affine, geometry.affine, atol=1e-5)
    assert (back_geometry.qform_code, back_geometry.sform_code) == codes
    np.testing.assert_allclose(back_geometry.spacing, (0.7, 0.9, 2.5), atol=1e-5)
    assert back_geometry.matches(geometry) and back_geometry.shape == (9, 7, 5)
    assert read_header(path)[1].shape == (9, 7, 5)
    assert sorted(p.name for p in path.parent.iterdir()) == ["image.nii.gz"]


def test_nifti_bool_and_integer_masks_round_trip(tmp_path):
    mask = np.zeros((4, 5, 6), dtype=bool)
    mask[1:3, 2:4, 3:5] = True
    write_image(tmp_path / "mask.nii.gz", mask, np.eye(4))
    assert read_header(tmp_path / "mask.nii.gz")[0].get_data_dtype() == np.uint8
    back, _ = read_image(tmp_path / "mask.nii.gz", dtype=np.int16)
    assert back.dtype == np.int16
    np.testing.assert_array_equal(back, mask.astype(np.int16))


def test_failed_write_leaves_no_temp_file_and_keeps_old_file(tmp_path, monkeypatch):
    target = tmp_path / "image.nii.gz"
    write_image(target, np.ones((3, 3, 3), np.float32), np.eye(4))
    old = target.read_bytes()

    def broken_save(img, filename):
        Path(filename).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nifti_io.nib, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_image(target, np.zeros((3, 3, 3), np.float32), np.eye(4))
    with pytest.raises(OSError, match="disk full"):
        write_image(tmp_path / "new.nii.gz", np.zeros((3, 3, 3), np.float32), np.eye(4))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["image.nii.gz"]
    assert target.read_bytes() == old


def test_corrupt_file_error_names_the_file(tmp_path):
    path = tmp_path / "bad_0000.nii.gz"
    path.write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(ImageReadError, match=r"bad_0000.nii.gz: cannot be read as NIfTI"):
        read_image(path)


def test_derive_foreground_mask_finds_bright_block_in_noise():
    rng = np.random.default_rng(7)
    shape = (32, 32, 16)
    block = np.zeros(shape, dtype=bool)
    block[8:24, 10:26, 4:12] = True
    phases = []
    for gain in (1.0, 1.3, 1.5):
        background = np.abs(rng.normal(0.0, 8.0, shape) + 1j * rng.normal(0.0, 8.0, shape))
        phases.append(np.where(block, 100.0 * gain + rng.normal(0.0, 8.0, shape), background))
    mask = derive_foreground_mask(np.stack(phases).astype(np.float32))
    assert mask.shape == shape and mask.dtype == np.bool_
    assert mask[9:23, 11:25, 5:11].all()
    grown = np.zeros(shape, dtype=bool)
    grown[7:25, 9:27, 3:13] = True
    assert not mask[~grown].any()
    dice = 2 * np.logical_and(mask, block).sum() / (mask.sum() + block.sum())
    assert dice > 0.9


def test_foreground_of_constant_image_is_everything_and_nonzero_mask():
    assert derive_foreground_mask(np.full((2, 4, 4, 3), 5.0, np.float32)).all()
    image = np.zeros((2, 4, 4, 3), np.float32)
    image[1, 1, 2, 0] = -1.0
    image[0, 3, 3, 2] = 2.0
    expected = np.zeros((4, 4, 3), dtype=bool)
    expected[1, 2, 0] = expected[3, 3, 2] = True
    np.testing.assert_array_equal(nonzero_mask(image), expected)
