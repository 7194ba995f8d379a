"""Tests of ``iterdce_predict --output-format dicom``: derived series with new UIDs, DERIVED\\SECONDARY, a SYNTHETIC
description naming the time, the input's patient, study and grid; the export -> import round trip equals the
NIfTI output within quantisation; dcm2niix reads the exported series; inputs and templates checked first.

The model is a tiny synthesizer with random final weights (so the synthesized phases differ from the inputs).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from pydicom import dcmread

from iterdce.commands.predict import main as predict_main
from iterdce.core.checkpoint import save_checkpoint
from iterdce.dataset.nifti_io import read_image, write_image
from iterdce.dicom.derived import rescale
from iterdce.dicom.geometry import stack_slices
from iterdce.dicom.importer import DicomImportError, ImportSettings, import_dicom
from iterdce.dicom.report import case_id_for
from iterdce.dicom.scan import scan_tree
from iterdce.dicom.volume import read_volume
from iterdce.inference.dicom_output import iterdce_version
from iterdce.network.config import ModelConfig
from iterdce.network.synthesizer import build_synthesizer
from iterdce.preprocessing.plans_io import save_plans
from tests.dicom_phantom import PATIENT_NAME, StudyWriter, dcm2niix_binary, quantised, run_dcm2niix
from tests.helpers import synthetic_case, tiny_model_plans

torch.set_num_threads(1)

TIMES = [0.0, 85.0, 155.0, 225.0, 295.0, 365.0]
BOLUS_DELAY_S = 15.0  # the headers' ContrastBolusStartTime is 15 s after the pre-contrast acquisition
NETWORK = {"in_channels": 2, "features_per_stage": [4, 8], "pool_per_stage": [[2, 2, 2]], "time_embedding_dim": 8,
           "time_scale_s": 365.0, "use_time_embedding": True, "use_convlstm": True}
SHAPE = (16, 14, 6)
AFFINE = np.array([[0.0, 0.0, 2.0, -5.0], [0.8, 0.0, 0.0, -20.0], [0.0, -0.8, 0.0, 30.0], [0.0, 0.0, 0.0, 1.0]])


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results root with Dataset001_Phantom/RecursiveTrainer__plans: tiny plan, one fold, random final conv."""
    root = tmp_path_factory.mktemp("model")
    plans = tiny_model_plans(root, [16, 16, 8], NETWORK)
    config = ModelConfig.from_plan("iterative", NETWORK, [0, 1], len(TIMES))
    model = build_synthesizer(config)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        final = model.net.final_conv
        final.weight.copy_(torch.randn(final.weight.shape, generator=generator) * 0.05)
    folder = root / "results" / "Dataset001_Phantom" / "RecursiveTrainer__plans"
    save_plans(plans, folder / "plans.json")
    save_checkpoint(folder / "fold_0" / "checkpoint_final.pth",
                    {"network_state": model.state_dict(), "model_config": config.to_dict(), "epoch": 1})
    return root / "results"


@pytest.fixture(scope="module")
def exam(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A phantom case: its pre and first post-contrast phases as a DICOM study and as NIfTI inputs."""
    root = tmp_path_factory.mktemp("exam")
    image, _, _ = synthetic_case(SHAPE, TIMES, seed=7)
    writer = StudyWriter(root / "dicom", "PAT-7", seed=7, bolus_delay_s=BOLUS_DELAY_S)
    writer.write_series_per_phase(image[:2], AFFINE, TIMES[:2])
    case_id = case_id_for(next(iter(scan_tree(root / "dicom", progress=False).studies.values())))
    nifti = root / "nifti"
    for phase in range(2):
        write_image(nifti / f"{case_id}_{phase:04d}.nii.gz", quantised(image[phase]), AFFINE)
    header_times = [t - BOLUS_DELAY_S for t in TIMES[:2]]
    (nifti / f"{case_id}.json").write_text(json.dumps({"phase_times_s": header_times}))
    return {"root": root, "dicom": root / "dicom", "nifti": nifti, "case": case_id, "writer": writer}


def _predict(results: Path, *args: str) -> int:
    # float32: these tests compare predictions of one exam in two voxel orders, which bf16 rounds differently
    return predict_main(["-d", "1", "-f", "0", "--device", "cpu", "--precision", "fp32", "--quiet", "--results",
                         str(results), *args])


@pytest.fixture(scope="module")
def outputs(results: Path, exam: dict) -> dict:
    """NIfTI prediction from the NIfTI inputs, DICOM prediction from the DICOM study, and from NIfTI + template."""
    root = exam["root"]
    assert _predict(results, "-i", str(exam["nifti"]), "-o", str(root / "out_nii"), "--save-kinetic-map") == 0
    assert _predict(results, "-i", str(exam["dicom"]), "-o", str(root / "out_dcm"), "--output-format", "dicom",
                    "--save-kinetic-map") == 0
    assert _predict(results, "-i", str(exam["nifti"]), "-o", str(root / "out_tpl"), "--output-format", "dicom",
                    "--dicom-template", str(exam["dicom"])) == 0
    return {"nii": root / "out_nii", "dcm": root / "out_dcm" / exam["case"], "tpl": root / "out_tpl" / exam["case"]}


def canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxels and affine in the closest RAS+ voxel order: grids that are the same up to flips compare equal."""
    image = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(data, np.float32), affine))
    return np.asarray(image.dataobj), image.affine


def _series_volume(folder: Path) -> tuple[np.ndarray, np.ndarray, float]:
    """Voxels, RAS affine and largest RescaleSlope of one exported series folder."""
    series = next(iter(next(iter(scan_tree(folder, progress=False).studies.values())).series.values()))
    stack = stack_slices(series.slices)
    return read_volume(stack), stack.affine, max(s.slope for s in series.slices)


def test_exported_series_headers(outputs: dict, exam: dict):
    inputs = [dcmread(p, stop_before_pixels=True) for p in sorted(exam["dicom"].rglob("IM*"))]
    folders = sorted(p.name for p in outputs["dcm"].iterdir())
    assert folders == ["SYNTHETIC_kinetics", "SYNTHETIC_phase_0002_t155s", "SYNTHETIC_phase_0003_t225s",
                       "SYNTHETIC_phase_0004_t295s", "SYNTHETIC_phase_0005_t365s"]
    series_uids, sop_uids = set(), set()
    for name in folders:
        files = sorted((outputs["dcm"] / name).iterdir())
        assert len(files) == SHAPE[2]
        for path in files:
            ds = dcmread(path)
            assert list(ds.ImageType) == ["DERIVED", "SECONDARY"]
            assert ds.SeriesDescription.startswith("SYNTHETIC")
            assert "iterdce" in ds.DerivationDescription and iterdce_version() in ds.DerivationDescription
            assert "Dataset001_Phantom/RecursiveTrainer__plans" in ds.DerivationDescription
            assert (ds.PatientName, ds.PatientID) == (PATIENT_NAME, "PAT-7")
            assert ds.StudyInstanceUID == inputs[0].StudyInstanceUID
            assert ds.FrameOfReferenceUID == inputs[0].FrameOfReferenceUID
            assert len(ds.SourceImageSequence) == 2
            series_uids.add(ds.SeriesInstanceUID)
            sop_uids.add(ds.SOPInstanceUID)
        positions = sorted(tuple(round(float(v), 4) for v in dcmread(p).ImagePositionPatient) for p in files)
        assert positions == sorted(tuple(round(float(v), 4) for v in d.ImagePositionPatient)
                                   for d in inputs if d.SeriesNumber == 2)  # the input slices' positions
        if "phase_0003" in name:
            assert ds.SeriesDescription == "SYNTHETIC phase 3 t=225s"
    assert len(series_uids) == 5 and len(sop_uids) == 5 * SHAPE[2]
    assert not series_uids & {d.SeriesInstanceUID for d in inputs}
    assert not sop_uids & {d.SOPInstanceUID for d in inputs}


def test_export_import_round_trip_equals_nifti_output(outputs: dict, exam: dict, tmp_path: Path):
    """Input study + synthetic series -> iterdce_import_dicom --include-derived -> the NIfTI prediction.

    AFFINE has a negative determinant, so the import (slices in ascending order along the normal) holds the
    slices in reverse order: the same grid, compared in canonical voxel order."""
    tree = tmp_path / "tree"
    shutil.copytree(exam["dicom"], tree / "inputs")
    shutil.copytree(outputs["dcm"], tree / "synthetic")
    with pytest.raises(DicomImportError, match="derived image"):  # synthetic series are not phases by default
        import_dicom(tree, tmp_path / "Dataset003_Refused", ImportSettings(progress=False))
    summary = import_dicom(tree, tmp_path / "Dataset002_RoundTrip", ImportSettings(include_derived=True,
                                                                                    progress=False))
    assert summary.cases == [exam["case"]]
    case = exam["case"]
    times = json.loads((tmp_path / "Dataset002_RoundTrip" / "timesTr" / f"{case}.json").read_text())
    np.testing.assert_allclose(times["phase_times_s"], [-BOLUS_DELAY_S, 85 - BOLUS_DELAY_S, 155, 225, 295, 365],
                               atol=1e-3)
    for phase in range(2, 6):
        expected, geometry = read_image(outputs["nii"] / f"{case}_{phase:04d}.nii.gz")
        got, got_geometry = read_image(tmp_path / "Dataset002_RoundTrip" / "imagesTr" / f"{case}_{phase:04d}.nii.gz")
        slope = _series_volume(next(outputs["dcm"].glob(f"SYNTHETIC_phase_{phase:04d}_*")))[2]
        got, got_affine = canonical(got, got_geometry.affine)
        expected, affine = canonical(expected, geometry.affine)
        assert float(np.abs(got - expected).max()) <= slope / 2 + 1e-5 * float(np.abs(expected).max())
        assert float(np.abs(expected - canonical(quantised(synthetic_case(SHAPE, TIMES, seed=7)[0][1]), AFFINE)[0]
                            ).max()) > 100 * slope  # the model changed its input: a real comparison
        np.testing.assert_allclose(got_affine, affine, atol=1e-4)
    codes, geometry = read_image(outputs["nii"] / f"{case}_kinetics.nii.gz")
    volume, affine, _ = _series_volume(outputs["dcm"] / "SYNTHETIC_kinetics")
    assert np.count_nonzero(codes) > 0
    np.testing.assert_array_equal(canonical(volume, affine)[0], canonical(codes, geometry.affine)[0])
    np.testing.assert_allclose(canonical(volume, affine)[1], canonical(codes, geometry.affine)[1], atol=1e-4)


# Exports from other inputs of the same exam agree within the two quantisations plus 1e-4 of the intensity range:
# inputs whose affines differ in the last float digits are resampled to the plan's spacing a little differently.


def test_template_export_equals_dicom_input_export(outputs: dict):
    for folder in sorted(outputs["tpl"].iterdir()):
        exported, affine, slope = _series_volume(folder)
        reference, reference_affine, _ = _series_volume(outputs["dcm"] / folder.name)
        assert float(np.abs(exported - reference).max()) <= slope + 1e-4 * float(np.abs(reference).max())
        np.testing.assert_allclose(affine, reference_affine, atol=1e-6)
    assert not (outputs["tpl"] / "SYNTHETIC_kinetics").exists()  # not asked for


@pytest.mark.skipif(dcm2niix_binary() is None, reason="dcm2niix not installed (pip install dcm2niix)")
def test_dcm2niix_reads_the_exported_series(outputs: dict, exam: dict, tmp_path: Path):
    converted = run_dcm2niix(outputs["dcm"] / "SYNTHETIC_phase_0004_t295s", tmp_path)
    expected = nib.as_closest_canonical(nib.load(outputs["nii"] / f"{exam['case']}_0004.nii.gz"))
    got = nib.as_closest_canonical(converted)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.affine, expected.affine, atol=1e-3)
    slope = _series_volume(outputs["dcm"] / "SYNTHETIC_phase_0004_t295s")[2]
    assert float(np.abs(got.get_fdata() - expected.get_fdata()).max()) <= slope / 2 + 1e-3


def test_dicom_output_checks_inputs_before_writing(results: Path, exam: dict, tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert _predict(results, "-i", str(exam["nifti"]), "-o", str(out), "--output-format", "dicom") == 1
    assert "no DICOM images found" in capsys.readouterr().err
    shifted = tmp_path / "shifted"
    for path in exam["nifti"].iterdir():
        if path.name.endswith(".nii.gz"):
            data, geometry = read_image(path)
            affine = geometry.affine.copy()
            affine[0, 3] += 1.0
            write_image(shifted / path.name, data, affine)
    assert _predict(results, "-i", str(shifted), "-o", str(out), "--output-format", "dicom",
                    "--dicom-template", str(exam["dicom"])) == 1
    assert "is not the DICOM series' grid" in capsys.readouterr().err
    assert not out.exists()
    with pytest.raises(SystemExit):
        _predict(results, "-i", str(exam["nifti"]), "-o", str(out), "--dicom-template", str(exam["dicom"]))


def test_dicom_output_skips_finished_cases(results: Path, exam: dict, outputs: dict, capsys):
    out = outputs["dcm"].parent
    assert _predict(results, "-i", str(exam["dicom"]), "-o", str(out), "--output-format", "dicom",
                    "--save-kinetic-map") == 0
    assert "1 case(s) already predicted" in capsys.readouterr().out


def test_enhanced_multi_frame_input_gives_the_same_series(results: Path, exam: dict, outputs: dict, tmp_path: Path):
    """The same two phases stored as one enhanced object: same predictions, frames referenced by number."""
    image, _, _ = synthetic_case(SHAPE, TIMES, seed=7)
    StudyWriter(tmp_path / "dicom", "PAT-7", seed=8, bolus_delay_s=BOLUS_DELAY_S).write_enhanced(
        image[:2], AFFINE, TIMES[:2])
    assert _predict(results, "-i", str(tmp_path / "dicom"), "-o", str(tmp_path / "out"), "--output-format",
                    "dicom") == 0
    (case_dir,) = (tmp_path / "out").iterdir()
    for folder in sorted(case_dir.iterdir()):
        exported, affine, slope = _series_volume(folder)
        reference, reference_affine, _ = _series_volume(outputs["dcm"] / folder.name)
        assert float(np.abs(exported - reference).max()) <= slope + 1e-4 * float(np.abs(reference).max())
        np.testing.assert_allclose(affine, reference_affine, atol=1e-4)
    first = dcmread(next(iter(sorted(next(iter(case_dir.iterdir())).iterdir()))))
    frames = sorted(int(item.ReferencedFrameNumber) for item in first.SourceImageSequence)
    assert frames[1] == frames[0] + 1 and frames[0] % 2 == 1  # pre and post frames of one position


@pytest.mark.skipif(dcm2niix_binary() is None, reason="dcm2niix not installed (pip install dcm2niix)")
def test_template_accepts_dcm2niix_conversions_of_the_inputs(results: Path, exam: dict, outputs: dict,
                                                             tmp_path: Path):
    """dcm2niix flips the row order: the NIfTI grid is the template's up to axis directions."""
    converted = tmp_path / "converted"
    converted.mkdir()
    for phase in range(2):
        single = tmp_path / f"series_{phase}"
        for path in exam["dicom"].rglob("IM*"):
            if int(dcmread(path, stop_before_pixels=True).SeriesNumber) == phase + 1:
                single.mkdir(exist_ok=True)
                shutil.copy(path, single / path.name)
        image = run_dcm2niix(single, tmp_path / f"nii_{phase}")
        assert not np.allclose(image.affine, AFFINE, atol=1e-3)  # another voxel order than the DICOM's
        nib.save(image, converted / f"{exam['case']}_{phase:04d}.nii.gz")
    shutil.copy(exam["nifti"] / f"{exam['case']}.json", converted)
    assert _predict(results, "-i", str(converted), "-o", str(tmp_path / "out"), "--output-format", "dicom",
                    "--dicom-template", str(exam["dicom"])) == 0
    for folder in sorted((tmp_path / "out" / exam["case"]).iterdir()):
        exported, _, slope = _series_volume(folder)
        reference = _series_volume(outputs["dcm"] / folder.name)[0]
        assert float(np.abs(exported - reference).max()) <= slope + 1e-4 * float(np.abs(reference).max())


@pytest.mark.parametrize("low, high", [(0.0, 1.0), (-1000.0, 5.0e6), (123.25, 123.25), (-3.5, -1.0)])
def test_rescale_spans_the_range_without_clipping(low: float, high: float):
    volume = np.linspace(low, high, 1000).reshape(10, 10, 10)
    stored, slope, intercept = rescale(volume)
    assert stored.dtype == np.uint16 and slope > 0
    assert np.abs(stored * slope + intercept - volume).max() <= slope / 2 * (1 + 1e-6) + 1e-9 * abs(high)
    codes = np.array([[[0, 1], [2, 3]]], dtype=np.float32)
    assert rescale(codes, integer_codes=True)[1:] == (1.0, 0.0)
    with pytest.raises(ValueError, match="integers"):
        rescale(codes + 0.5, integer_codes=True)


def test_dicom_output_at_requested_times(results: Path, exam: dict, tmp_path: Path):
    """--target-times with DICOM output: one series per requested time, named and described by it."""
    assert _predict(results, "-i", str(exam["dicom"]), "-o", str(tmp_path / "out"), "--output-format", "dicom",
                    "--target-times", "120", "300") == 0
    folders = sorted(p.name for p in (tmp_path / "out" / exam["case"]).iterdir())
    assert folders == ["SYNTHETIC_phase_0002_t120s", "SYNTHETIC_phase_0003_t300s"]
    first = next((tmp_path / "out" / exam["case"] / folders[1]).iterdir())
    assert dcmread(first).SeriesDescription == "SYNTHETIC phase 3 t=300s"
