"""Tests of ``iterdce_import_dicom``: phantom cases written as DICOM (three conventions, oblique and sagittal)
import to the phantom's voxels, affine and times; dcm2niix agrees on the geometry; a tree with three studies and a
broken one imports to a dataset the verifier accepts; refusals; anonymisation; the report."""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom import dcmread

from iterdce.commands.import_dicom import main as import_main
from iterdce.commands.verify_dataset import main as verify_main
from iterdce.dataset.nifti_io import read_image
from iterdce.dicom.geometry import GeometryError, stack_slices
from iterdce.dicom.headers import Slice
from iterdce.dicom.importer import DicomImportError, ImportSettings, import_dicom
from iterdce.simulation.simulate import simulate_dataset
from tests.dicom_phantom import PATIENT_NAME, StudyWriter, dcm2niix_binary, quantised, run_dcm2niix
from tests.helpers import synthetic_case

TIMES = [0.0, 62.5, 140.0, 215.0]
SHAPE = (16, 14, 6)
CONVENTIONS = {"a": "write_series_per_phase", "b": "write_temporal_series", "c": "write_enhanced"}
CONVENTION_NAMES = {"a": "series per phase", "b": "temporal positions in one series", "c": "enhanced multi-frame"}
TIME_TAGS = {"a": "AcquisitionTime (0008,0032)", "b": "TriggerTime (0018,1060)",
             "c": "TemporalPositionTimeOffset (0020,930D)"}


def rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = [a for a in range(3) if a != axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


def oblique_affine() -> np.ndarray:
    """An axial acquisition tilted about two axes, anisotropic voxels, off-centre."""
    affine = np.eye(4)
    affine[:3, :3] = rotation(0, 20.0) @ rotation(2, -30.0) @ np.diag([0.9, 0.7, 2.5])
    affine[:3, 3] = [-30.0, 12.5, 40.0]
    return affine


def sagittal_affine() -> np.ndarray:
    """A sagittal acquisition: columns run posterior, rows inferior, slices from left to right (as scanners do)."""
    return np.array([[0.0, 0.0, 2.0, -8.0], [-0.9, 0.0, 0.0, 35.0], [0.0, -0.9, 0.0, 60.0], [0.0, 0.0, 0.0, 1.0]])


GEOMETRIES = {"oblique": oblique_affine, "sagittal": sagittal_affine}


def canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    image = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data, np.float32), affine))
    return np.asarray(image.dataobj), image.affine


def phantom(seed: int = 0) -> np.ndarray:
    return synthetic_case(SHAPE, TIMES, seed=seed)[0]


def write_study(root: Path, convention: str, affine: np.ndarray, seed: int, **kwargs) -> StudyWriter:
    writer = StudyWriter(root, f"PAT-{seed}", seed=seed, bolus_delay_s=kwargs.pop("bolus_delay_s", None))
    getattr(writer, CONVENTIONS[convention])(phantom(seed), affine, TIMES, **kwargs)
    return writer


def read_report(dataset: Path) -> list[dict[str, str]]:
    with open(dataset / "import_report.csv", newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
@pytest.mark.parametrize("convention", sorted(CONVENTIONS))
def test_import_reproduces_the_phantom(tmp_path: Path, convention: str, geometry: str):
    affine = GEOMETRIES[geometry]()
    write_study(tmp_path / "dicom", convention, affine, seed=3)
    summary = import_dicom(tmp_path / "dicom", tmp_path / "Dataset001_X", ImportSettings(progress=False))
    (case,) = summary.cases
    image = phantom(3)
    for phase in range(len(TIMES)):
        data, got = read_image(tmp_path / "Dataset001_X" / "imagesTr" / f"{case}_{phase:04d}.nii.gz")
        np.testing.assert_allclose(got.affine, affine, atol=1e-4)  # the phantom's own voxel order
        np.testing.assert_allclose(data, quantised(image[phase]), atol=1e-4)
    timing = json.loads((tmp_path / "Dataset001_X" / "timesTr" / f"{case}.json").read_text())
    assert timing["phase_times_s"] == pytest.approx(TIMES, abs=1e-3)
    assert timing["time_tags"] == [TIME_TAGS[convention]] * len(TIMES)
    assert timing["convention"] == CONVENTION_NAMES[convention]


@pytest.mark.parametrize("separate_by, tag", [("TriggerTime", "TriggerTime (0018,1060)"),
                                             ("AcquisitionTime", "AcquisitionTime (0008,0032)")])
def test_temporal_series_without_identifiers(tmp_path: Path, separate_by: str, tag: str):
    """Convention (b) without TemporalPositionIdentifier: the k-th image in time at each position is phase k."""
    StudyWriter(tmp_path / "dicom", "PAT-8", seed=8).write_temporal_series(phantom(8), sagittal_affine(), TIMES,
                                                                           separate_by)
    (case,) = import_dicom(tmp_path / "dicom", tmp_path / "Dataset001_X", ImportSettings(progress=False)).cases
    for phase in (0, 3):
        data, _ = read_image(tmp_path / "Dataset001_X" / "imagesTr" / f"{case}_{phase:04d}.nii.gz")
        np.testing.assert_allclose(data, quantised(phantom(8)[phase]), atol=1e-4)
    timing = json.loads((tmp_path / "Dataset001_X" / "timesTr" / f"{case}.json").read_text())
    assert timing["phase_times_s"] == pytest.approx(TIMES) and timing["time_tags"][0] == tag


def test_enhanced_object_without_temporal_position_index(tmp_path: Path):
    StudyWriter(tmp_path / "dicom", "PAT-9", seed=9).write_enhanced(phantom(9), oblique_affine(), TIMES,
                                                                    temporal_index=False)
    (case,) = import_dicom(tmp_path / "dicom", tmp_path / "Dataset001_X", ImportSettings(progress=False)).cases
    data, _ = read_image(tmp_path / "Dataset001_X" / "imagesTr" / f"{case}_0002.nii.gz")
    np.testing.assert_allclose(data, quantised(phantom(9)[2]), atol=1e-4)


def test_import_of_a_left_handed_grid_is_the_same_grid(tmp_path: Path):
    """A NIfTI affine with negative determinant: the importer stacks slices along the normal, i.e. reversed."""
    affine = oblique_affine() @ np.diag([1.0, 1.0, -1.0, 1.0])
    write_study(tmp_path / "dicom", "a", affine, seed=4)
    (case,) = import_dicom(tmp_path / "dicom", tmp_path / "Dataset001_X", ImportSettings(progress=False)).cases
    data, got = read_image(tmp_path / "Dataset001_X" / "imagesTr" / f"{case}_0001.nii.gz")
    assert np.linalg.det(got.affine) > 0
    for ours, theirs in zip(canonical(data, got.affine), canonical(quantised(phantom(4)[1]), affine)):
        np.testing.assert_allclose(ours, theirs, atol=1e-4)


@pytest.mark.skipif(dcm2niix_binary() is None, reason="dcm2niix not installed (pip install dcm2niix)")
@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_dcm2niix_agrees_on_geometry(tmp_path: Path, geometry: str):
    affine = GEOMETRIES[geometry]()
    writer = StudyWriter(tmp_path / "dicom", "PAT-5", seed=5)
    writer.write_series_per_phase(phantom(5)[:1], affine, TIMES[:1])
    theirs = nib.as_closest_canonical(run_dcm2niix(tmp_path / "dicom", tmp_path / "dcm2niix"))
    ours = canonical(quantised(phantom(5)[0]), affine)
    assert theirs.shape == ours[0].shape
    np.testing.assert_allclose(theirs.affine, ours[1], atol=1e-3)  # mm
    np.testing.assert_allclose(theirs.get_fdata(), ours[0], atol=1e-3)


SITE_CASES = {  # the simulator's site profiles: (site, stored shape, seed) that fit a lesion in a tiny volume
    "B": ("a", (48, 48, 16), 1),  # axial LPS, oblique
    "C": ("b", (48, 48, 16), 1),  # axial RAS or LPS, oblique
    "D": ("c", (32, 32, 32), 1),  # sagittal, oblique
}


@pytest.fixture(scope="module")
def site_phantoms(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[np.ndarray, np.ndarray, list]]:
    """One case of the phantom simulator per site profile: phases [P, X, Y, Z], stored affine, times (s)."""
    root = tmp_path_factory.mktemp("sites")
    cases = {}
    for index, (site, (_, shape, seed)) in enumerate(SITE_CASES.items()):
        summary = simulate_dataset(root / f"Dataset{index + 1:03d}_{site}", 1, shape=shape, seed=seed, site=site)
        (case,) = summary.case_ids
        phases = sorted((summary.dataset_dir / "imagesTr").glob(f"{case}_*.nii.gz"))
        volumes = [read_image(path) for path in phases]
        times = json.loads((summary.dataset_dir / "timesTr" / f"{case}.json").read_text())["phase_times_s"]
        cases[site] = (np.stack([v for v, _ in volumes]), volumes[0][1].affine, times)
    return cases


def test_tree_of_three_conventions_and_a_broken_study(tmp_path: Path, site_phantoms: dict, capsys):
    """The issue's check: phantom cases of three sites as three studies in the three conventions, and one study
    with a missing slice; the dataset is accepted by the verifier and holds the phantom's voxels, grid, times."""
    root = tmp_path / "dicom"
    writers = {}
    for index, (site, (convention, _, _)) in enumerate(SITE_CASES.items()):
        image, affine, times = site_phantoms[site]
        writers[site] = StudyWriter(root, f"PAT-{site}", seed=index, bolus_delay_s=10.0 if site == "B" else None)
        getattr(writers[site], CONVENTIONS[convention])(image, affine, times)
    write_study(root, "a", sagittal_affine(), seed=13, skip_slice=(2, 3))
    (root / "notes.txt").write_text("not DICOM")
    dataset = tmp_path / "raw" / "Dataset005_Clinical"
    assert import_main(["-i", str(root), "-o", str(dataset), "--quiet"]) == 0
    out = capsys.readouterr()
    assert "imported 3 case(s)" in out.out and "missing slice" in out.err
    assert verify_main(["-d", str(dataset)]) == 0
    rows = read_report(dataset)
    assert [r["status"] for r in rows] == ["imported"] * 3 + ["skipped"]
    assert "missing slice(s)" in rows[3]["notes"] and "series 3" in rows[3]["notes"]
    info = json.loads((dataset / "dataset.json").read_text())
    assert info["name"] == "Clinical" and info["numTraining"] == 3
    for site, writer in writers.items():
        image, affine, times = site_phantoms[site]
        case = "case_" + hashlib.sha256(writer.study_uid.encode()).hexdigest()[:12]
        row = next(r for r in rows if r["case"] == case)
        assert row["convention"] == CONVENTION_NAMES[SITE_CASES[site][0]]
        timing = json.loads((dataset / "timesTr" / f"{case}.json").read_text())
        expected_times = np.asarray(times) - (10.0 if site == "B" else times[0])  # B: bolus 10 s after BASE_TIME
        assert timing["time_reference"].startswith("ContrastBolusStartTime" if site == "B" else "first")
        np.testing.assert_allclose(timing["phase_times_s"], expected_times, atol=1e-3)
        for phase in (0, len(times) - 1):
            data, got = read_image(dataset / "imagesTr" / f"{case}_{phase:04d}.nii.gz")
            ours, theirs = canonical(data, got.affine), canonical(quantised(image[phase]), affine)
            np.testing.assert_allclose(ours[1], theirs[1], atol=1e-4)
            np.testing.assert_allclose(ours[0], theirs[0], atol=1e-3)


def test_no_identifiers_in_the_dataset_and_stable_ids(tmp_path: Path):
    write_study(tmp_path / "dicom", "a", oblique_affine(), seed=20)
    first = import_dicom(tmp_path / "dicom", tmp_path / "Dataset001_A", ImportSettings(progress=False))
    again = import_dicom(tmp_path / "dicom", tmp_path / "Dataset001_B", ImportSettings(progress=False))
    salted = import_dicom(tmp_path / "dicom", tmp_path / "Dataset001_C", ImportSettings(salt="s3cret",
                                                                                        progress=False))
    assert first.cases == again.cases != salted.cases
    assert first.cases[0].startswith("case_") and len(first.cases[0]) == 17
    header = next(p for p in (tmp_path / "dicom").rglob("IM*"))
    ds = dcmread(header, stop_before_pixels=True)
    secrets = [PATIENT_NAME, "PAT-20", "ACC123", "Doctor", ds.StudyInstanceUID, ds.SeriesInstanceUID,
               "DYN phase"]
    for path in (tmp_path / "Dataset001_A").rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            content = gzip.decompress(content) if path.name.endswith(".gz") else content
            assert not [s for s in secrets if s.encode() in content], path
    kept = import_dicom(tmp_path / "dicom", tmp_path / "Dataset001_D", ImportSettings(keep_ids=True,
                                                                                      progress=False))
    assert kept.cases == [ds.StudyInstanceUID]
    assert read_report(tmp_path / "Dataset001_D")[0]["study_uid"] == ds.StudyInstanceUID


def test_case_ids_from_patient_id_refuse_a_second_study_of_the_patient(tmp_path: Path):
    for seed in (30, 31):
        StudyWriter(tmp_path / "dicom", "PAT-30", seed=seed).write_enhanced(phantom(seed), oblique_affine(), TIMES)
    summary = import_dicom(tmp_path / "dicom", tmp_path / "Dataset001_X",
                           ImportSettings(case_id_from="PatientID", progress=False))
    assert len(summary.cases) == 1
    assert "already taken by another study" in summary.skipped[0].notes[0]


def test_phases_on_different_grids_refuse_the_study(tmp_path: Path):
    writer = StudyWriter(tmp_path / "dicom", "PAT-40", seed=40)
    image = phantom(40)
    writer.write_series_per_phase(image[:3], oblique_affine(), TIMES[:3])
    shifted = oblique_affine()
    shifted[:3, 3] += [0.0, 0.0, 1.0]
    writer.write_series_per_phase(image[3:], shifted, TIMES[3:])
    with pytest.raises(DicomImportError, match="phases disagree in geometry: series 4"):
        import_dicom(tmp_path / "dicom", tmp_path / "Dataset001_X", ImportSettings(progress=False))


def test_subtraction_series_are_not_phases(tmp_path: Path):
    writer = StudyWriter(tmp_path / "dicom", "PAT-45", seed=45)
    writer.write_series_per_phase(phantom(45), oblique_affine(), TIMES)
    writer.image_type = ["ORIGINAL", "PRIMARY", "SUB"]
    writer.write_series_per_phase(phantom(45)[3:] - phantom(45)[:1] + 10, oblique_affine(), [300.0])
    summary = import_dicom(tmp_path / "dicom", tmp_path / "Dataset001_X", ImportSettings(progress=False))
    row = read_report(tmp_path / "Dataset001_X")[0]
    assert row["phases"] == str(len(TIMES)) and summary.cases
    assert "series 5: derived image (ImageType ORIGINAL\\PRIMARY\\SUB)" in row["skipped"]


def test_philips_private_scale_is_noted(tmp_path: Path):
    writer = StudyWriter(tmp_path / "dicom", "PAT-50", seed=50)
    writer.private.append((0x2005100E, "FL", 1.5))
    writer.write_series_per_phase(phantom(50), oblique_affine(), TIMES)
    import_dicom(tmp_path / "dicom", tmp_path / "Dataset001_X", ImportSettings(progress=False))
    assert "Philips private scale factors (2005,100E) present" in read_report(tmp_path / "Dataset001_X")[0]["notes"]


def test_undecodable_pixel_data_skips_the_study_naming_the_file(tmp_path: Path):
    write_study(tmp_path / "dicom", "c", oblique_affine(), seed=70)
    write_study(tmp_path / "dicom", "a", oblique_affine(), seed=71)
    victim = next(p for p in sorted((tmp_path / "dicom").rglob("IM*"))
                  if dcmread(p, stop_before_pixels=True).get("NumberOfFrames") is None)
    victim.write_bytes(victim.read_bytes()[:-100])  # pixel data cut short
    summary = import_dicom(tmp_path / "dicom", tmp_path / "Dataset001_X", ImportSettings(progress=False))
    assert len(summary.cases) == 1
    assert str(victim) in summary.skipped[0].notes[0] and "pixel data cannot be read" in summary.skipped[0].notes[0]
    assert len(list((tmp_path / "Dataset001_X" / "imagesTr").iterdir())) == len(TIMES)


def test_existing_output_is_kept_unless_overwrite(tmp_path: Path, capsys):
    write_study(tmp_path / "dicom", "c", oblique_affine(), seed=60)
    dataset = tmp_path / "Dataset001_X"
    dataset.mkdir()
    (dataset / "mine.txt").write_text("keep")
    assert import_main(["-i", str(tmp_path / "dicom"), "-o", str(dataset), "--quiet"]) == 1
    assert "folder is not empty" in capsys.readouterr().err and (dataset / "mine.txt").exists()
    # --overwrite replaces only a dataset the importer wrote: the user's file is named and kept
    assert import_main(["-i", str(tmp_path / "dicom"), "-o", str(dataset), "--quiet", "--overwrite"]) == 1
    assert "mine.txt is not one of them" in capsys.readouterr().err and (dataset / "mine.txt").read_text() == "keep"
    (dataset / "mine.txt").unlink()
    assert import_main(["-i", str(tmp_path / "dicom"), "-o", str(dataset), "--quiet"]) == 0
    first = (dataset / "dataset.json").read_bytes()
    assert import_main(["-i", str(tmp_path / "dicom"), "-o", str(dataset), "--quiet", "--overwrite"]) == 0
    assert (dataset / "dataset.json").read_bytes() == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left
    assert import_main(["-i", str(tmp_path / "nowhere"), "-o", str(tmp_path / "Dataset002_Y"), "--quiet"]) == 1
    assert "DICOM folder does not exist" in capsys.readouterr().err


def _slice(position, orientation=(1, 0, 0, 0, 1, 0), spacing=(0.5, 0.5)) -> Slice:
    return Slice(Path("x"), None, np.asarray(position, float), np.asarray(orientation, float), spacing, 4, 4)


@pytest.mark.parametrize("slices, message", [
    ([_slice((0, 0, z)) for z in (0, 2, 4, 8, 10)], "missing slice"),
    ([_slice((0, 0, z)) for z in (0, 2, 4.3, 6, 8)], "irregular slice spacing"),
    ([_slice((0, 0.3 * z, z)) for z in (0, 2, 4, 6)], "gantry tilt"),
    ([_slice((0, 0, 0)), _slice((0, 0, 2), (1, 0, 0, 0, 0.9998, 0.02))], "mixed orientations"),
    ([_slice((0, 0, z)) for z in (0, 2, 2, 4)], "duplicate slice position"),
    ([_slice((0, 0, 0)), _slice((0, 0, 2), spacing=(0.6, 0.5))], "different PixelSpacing"),
    ([_slice((0, 0, 0))], "not a volume"),
])
def test_stacks_that_are_refused(slices, message):
    with pytest.raises(GeometryError, match=message):
        stack_slices(slices)


def test_stack_sorts_by_position_not_by_file_order():
    slices = [_slice((1.0, 2.0, z)) for z in (4.0, 0.0, 2.0, 6.0)]
    stack = stack_slices(slices)
    assert [float(s.position[2]) for s in stack.slices] == [0.0, 2.0, 4.0, 6.0]
    np.testing.assert_allclose(stack.affine, [[-0.5, 0, 0, -1.0], [0, -0.5, 0, -2.0], [0, 0, 2.0, 0], [0, 0, 0, 1]])
