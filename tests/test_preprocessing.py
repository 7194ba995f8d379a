"""Preprocessing: TI-norm, canonical orientation, resampling, preprocess -> restore, the pipeline and its CLI."""
from __future__ import annotations

import json
from pathlib import Path

import nibabel.orientations as nio
import numpy as np
import pytest
from scipy import ndimage

from iterdce.commands.plan_and_preprocess import main as plan_and_preprocess_main
from iterdce.dataset.case import DCECase
from iterdce.dataset.nifti_io import Geometry, read_image
from iterdce.dataset.verify import InvalidDatasetError
from iterdce.preprocessing import pipeline
from iterdce.preprocessing.case_io import normalization_mask, to_canonical_case
from iterdce.preprocessing.case_properties import CaseProperties
from iterdce.preprocessing.normalization import NormalizationError, apply_ti_norm, ti_norm_stats, undo_ti_norm
from iterdce.preprocessing.orientation import inverse_transform, reorient, to_canonical
from iterdce.preprocessing.plans_io import load_plans
from iterdce.preprocessing.preprocessor import preprocess_canonical, restore_phases
from iterdce.preprocessing.resampling import coarse_axis, resample_mask, resample_volume
from tests.helpers import make_raw_dataset

TIMES = np.array([0.0, 85.0, 155.0, 225.0])
SHAPE = (24, 24, 8)


def oblique_affine(spacing, permutation, flips, degrees: float = 12.0) -> np.ndarray:
    """Array axis j runs along world axis ``permutation[j]`` (sign ``flips[j]``), tilted by ``degrees``."""
    a = np.deg2rad(degrees)
    tilt = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    tilt = tilt @ np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]])
    axes = np.zeros((3, 3))
    for j, (world, sign) in enumerate(zip(permutation, flips)):
        axes[world, j] = sign
    affine = np.eye(4)
    affine[:3, :3] = tilt @ axes @ np.diag(spacing)
    affine[:3, 3] = [-40.0, 12.5, 30.0]
    return affine


def smooth_phases(shape, n_phases: int = 4, sigma=(3, 3, 2), seed: int = 0) -> np.ndarray:
    """Positive smooth phases [P, X, Y, Z] that enhance over time by different amounts per voxel."""
    rng = np.random.default_rng(seed)

    def field() -> np.ndarray:
        f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
        return f / np.abs(f).max()

    base, uptake = 100.0 + 30.0 * field(), 0.5 + 0.4 * field()
    return np.stack([base * (1.0 + uptake * k / n_phases) for k in range(n_phases)]).astype(np.float32)


def make_case(image: np.ndarray, affine: np.ndarray, lesion: np.ndarray | None = None) -> DCECase:
    return DCECase("case_x", image, TIMES[: image.shape[0]], Geometry(image.shape[1:], affine), lesion=lesion)


# ---------------------------------------------------------------- TI-norm


def test_ti_norm_standardizes_the_reference_and_keeps_enhancement_ratios() -> None:
    image = smooth_phases((16, 16, 8), n_phases=5)
    mask = np.zeros((16, 16, 8), bool)
    mask[3:13, 2:14, 1:7] = True
    stats = ti_norm_stats(image, mask, reference_phase=1)
    normalized = apply_ti_norm(image, stats)
    assert normalized.dtype == np.float32 and normalized.shape == image.shape
    reference = normalized[1][mask].astype(np.float64)
    assert abs(reference.mean()) < 1e-5 and abs(reference.std() - 1.0) < 1e-5

    def ratios(volume: np.ndarray) -> np.ndarray:
        means = np.array([phase[mask].mean(dtype=np.float64) for phase in volume])
        return (means - means[0]) / (means[1] - means[0])

    np.testing.assert_allclose(ratios(normalized), ratios(image), rtol=1e-4)
    assert ratios(image)[-1] > 3.0  # the phases really enhance differently
    restored = undo_ti_norm(normalized, stats)
    np.testing.assert_allclose(restored, image, atol=1e-4 * image.std())
    assert stats.to_dict() == {"mean": stats.mean, "std": stats.std, "reference_phase": 1}


def test_ti_norm_rejects_empty_masks_and_constant_references() -> None:
    image = smooth_phases((8, 8, 4))
    with pytest.raises(NormalizationError, match="0 voxel"):
        ti_norm_stats(image, np.zeros((8, 8, 4), bool), 1)
    image[1] = 7.0
    with pytest.raises(NormalizationError, match="reference phase 1 is constant"):
        ti_norm_stats(image, np.ones((8, 8, 4), bool), 1)


def test_normalization_mask_uses_only_the_input_phases() -> None:
    image = smooth_phases((16, 16, 8))
    image[:, :3] = 0.0
    case = make_case(image, np.eye(4))
    later_changed = make_case(image.copy(), np.eye(4))
    later_changed.image[2:] = 500.0
    foreground = normalization_mask(case, "foreground")
    np.testing.assert_array_equal(foreground, normalization_mask(later_changed, "foreground"))
    nonzero = normalization_mask(case, "nonzero")
    assert not nonzero[:3].any() and nonzero[3:].all()
    breast = np.zeros((16, 16, 8), bool)
    breast[5:9, 5:9, 2:6] = True
    case.breast_mask = breast
    np.testing.assert_array_equal(normalization_mask(case, "breast"), breast)
    np.testing.assert_array_equal(normalization_mask(case, "foreground"), foreground)


# ---------------------------------------------------------------- orientation and resampling


def test_canonical_orientation_round_trips_and_keeps_world_coordinates() -> None:
    affine = oblique_affine((0.7, 0.9, 3.0), permutation=(2, 0, 1), flips=(1, -1, 1))
    array = np.arange(2 * 5 * 6 * 7, dtype=np.float32).reshape(2, 5, 6, 7)
    canonical, canonical_affine, transform = to_canonical(array, affine)
    assert nio.aff2axcodes(canonical_affine) == ("R", "A", "S")
    assert canonical.shape == (2, 6, 7, 5)
    np.testing.assert_allclose(np.linalg.norm(canonical_affine[:3, :3], axis=0), [0.9, 3.0, 0.7])
    np.testing.assert_array_equal(reorient(canonical, inverse_transform(transform)), array)
    # every canonical voxel sits at the same world position as the original voxel with the same value
    original_index = np.array(np.unravel_index(canonical[0].astype(int).ravel(), array.shape[1:]))
    canonical_index = np.array(np.unravel_index(np.arange(canonical[0].size), canonical.shape[1:]))
    world_original = affine[:3, :3] @ original_index + affine[:3, 3:]
    world_canonical = canonical_affine[:3, :3] @ canonical_index + canonical_affine[:3, 3:]
    np.testing.assert_allclose(world_canonical, world_original, atol=1e-9)


def test_coarse_axis_is_resampled_linearly_without_overshoot() -> None:
    assert coarse_axis((0.7, 0.7, 4.0)) == 2 and coarse_axis((4.0, 0.7, 0.8)) == 0
    assert coarse_axis((1.0, 1.0, 2.0)) is None
    z = np.arange(6, dtype=np.float64)
    volume = np.broadcast_to((z**2)[None, None], (12, 12, 6)).astype(np.float32)
    coords = np.clip((np.arange(17) + 0.5) * 6 / 17 - 0.5, 0, 5)  # output voxel centres on the input grid
    linear = np.interp(coords, z, z**2)
    separate = resample_volume(volume, (12, 12, 17), separate_axis=2)
    np.testing.assert_allclose(separate[5, 7], linear, atol=1e-4)
    cubic = resample_volume(volume, (12, 12, 17), separate_axis=None)
    assert np.abs(cubic[5, 7] - linear).max() > 0.05
    labels = np.zeros((12, 12, 6), np.int16)
    labels[2:5, 2:5, 1:3], labels[7:10, 6:11, 3:6] = 1, 2
    resized = resample_mask(labels, (18, 18, 9))
    assert resized.dtype == np.int16 and set(np.unique(resized)) == {0, 1, 2}


# ---------------------------------------------------------------- preprocess -> restore


def test_restore_inverts_preprocessing_exactly_at_the_plan_spacing() -> None:
    affine = oblique_affine((3.0, 0.7, 0.8), permutation=(2, 0, 1), flips=(-1, 1, -1))
    image = smooth_phases((10, 24, 20), sigma=(1, 3, 3))
    image[:, :2] = 0.0  # air outside the field of view: cropped away, pasted back as zeros
    image[:, :, -3:] = 0.0
    lesion = np.zeros((10, 24, 20), np.int16)
    lesion[4:7, 8:14, 6:11] = 1
    canonical = to_canonical_case(make_case(image, affine, lesion), "foreground")
    assert canonical.spacing == pytest.approx((0.7, 0.8, 3.0), abs=1e-6)
    result = preprocess_canonical(canonical, canonical.spacing, reference_phase=1, mask_kind="foreground")
    props = result.properties
    assert props.cropped_shape == (21, 20, 8) and props.resampled_shape == props.cropped_shape
    assert props.original_shape == (10, 24, 20) and props.to_dict()["original_affine"] == affine.tolist()
    assert result.data.shape == (4, 21, 20, 8) and result.data.dtype == np.float32
    assert result.lesion.sum() == lesion.sum() and result.mask.dtype == bool
    reference = result.data[1][result.mask].astype(np.float64)
    assert abs(reference.mean()) < 1e-5 and abs(reference.std() - 1.0) < 1e-5
    restored = restore_phases(result.data, props)
    assert restored.shape == image.shape
    np.testing.assert_allclose(restored, image, atol=1e-4 * image.std())
    assert np.all(restored[:, :2] == 0.0) and np.all(restored[:, :, -3:] == 0.0)


@pytest.mark.parametrize("spacing, target", [((0.8, 0.8, 2.0), (1.2, 1.2, 1.5)), ((0.7, 0.7, 4.0), (1.0, 1.0, 3.0))])
def test_restore_after_resampling_keeps_shape_and_intensities(spacing, target) -> None:
    """Tolerance on smooth images: mean abs error < 1% and max error < 5% of the intensity range."""
    shape = (40, 40, 16)
    image = smooth_phases(shape, sigma=(4, 4, 2) if spacing[2] < 3 else (5, 5, 1.5))
    affine = oblique_affine(spacing, permutation=(0, 1, 2), flips=(1, 1, 1), degrees=5.0)
    canonical = to_canonical_case(make_case(image, affine), "foreground")
    result = preprocess_canonical(canonical, target, reference_phase=1, mask_kind="foreground")
    expected = [round(n * s / t) for n, s, t in zip(shape, spacing, target)]
    assert list(result.data.shape[1:]) == expected == list(result.properties.resampled_shape)
    restored = restore_phases(result.data, result.properties)
    assert restored.shape == image.shape
    error = np.abs(restored - image) / (image.max() - image.min())
    assert error.mean() < 0.01 and error.max() < 0.05


# ---------------------------------------------------------------- the pipeline


def run(dataset: Path, root: Path, messages: list[str] | None = None, **kwargs) -> dict:
    log = messages.append if messages is not None else (lambda _: None)
    return pipeline.plan_and_preprocess(dataset, root, num_processes=1, progress=False, log=log, **kwargs)


def snapshot(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_outputs(first: Path, second: Path) -> None:
    """Every file of two preprocessed folders: the same names, the same JSON, the same arrays."""
    names = sorted(snapshot(first))
    assert names == sorted(snapshot(second))
    for name in names:
        if name.endswith(".npz"):
            with np.load(first / name) as a, np.load(second / name) as b:
                assert sorted(a.files) == sorted(b.files)
                for key in a.files:
                    np.testing.assert_array_equal(a[key], b[key], err_msg=f"{name}:{key}")
        elif name.endswith(".json"):
            assert json.loads((first / name).read_text()) == json.loads((second / name).read_text()), name
        else:
            assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_pipeline_writes_fingerprint_plan_cases_and_folds(tmp_path: Path) -> None:
    dataset = make_raw_dataset(tmp_path / "raw", n_cases=6, shape=SHAPE)
    plans = run(dataset, tmp_path / "pre")
    out = tmp_path / "pre" / dataset.name
    fingerprint = json.loads((out / "dataset_fingerprint.json").read_text())
    assert [c["case"] for c in fingerprint["cases"]] == [f"case_{i:03d}" for i in range(6)]
    assert load_plans(out / "plans.json") == plans
    assert plans.spacing == pytest.approx([0.8, 0.8, 2.0]) and plans.reference_phase == 1
    assert plans.normalization.mask == "foreground" and plans.batch_size >= 2
    assert all(p <= s for p, s in zip(plans.patch_size, SHAPE))
    assert sorted(p.name for p in (out / "plans_data").glob("*.npz")) == [f"case_{i:03d}.npz" for i in range(6)]
    for index in range(6):
        case = f"case_{index:03d}"
        sidecar = json.loads((out / "plans_data" / f"{case}.json").read_text())
        with np.load(out / "plans_data" / f"{case}.npz", allow_pickle=False) as npz:
            assert sorted(npz.files) == ["data", "lesion", "mask"]
            data, lesion, mask = npz["data"], npz["lesion"], npz["mask"].astype(bool)
        assert data.dtype == np.float32 and data.shape == (4, *SHAPE)
        assert lesion.shape == mask.shape == SHAPE and lesion.max() == 1
        reference = data[1][mask].astype(np.float64)
        assert abs(reference.mean()) < 1e-5 and abs(reference.std() - 1.0) < 1e-5
        assert sidecar["plan_key"] == pipeline.plan_key(plans) and sidecar["ti_norm"]["mask"] == "foreground"
        raw = np.stack([read_image(dataset / "imagesTr" / f"{case}_{p:04d}.nii.gz")[0] for p in range(4)])
        np.testing.assert_allclose(restore_phases(data, CaseProperties.from_dict(sidecar)), raw, atol=1e-4 * raw.std())
    splits = json.loads((out / "splits_final.json").read_text())
    assert len(splits) == 5
    vals = [set(fold["val"]) for fold in splits]
    assert sum(map(len, vals)) == 6 and set().union(*vals) == {f"case_{i:03d}" for i in range(6)}
    assert (out / "dataset.json").read_text() == (dataset / "dataset.json").read_text()


def test_second_run_skips_every_case(tmp_path: Path) -> None:
    dataset = make_raw_dataset(tmp_path / "raw", n_cases=6, shape=SHAPE)
    run(dataset, tmp_path / "pre")
    before = snapshot(tmp_path / "pre")
    messages: list[str] = []
    run(dataset, tmp_path / "pre", messages)
    assert snapshot(tmp_path / "pre") == before
    assert "6 case(s) already preprocessed, 0 to do" in messages


def test_killed_run_resumes_to_the_same_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = make_raw_dataset(tmp_path / "raw", n_cases=6, shape=SHAPE)
    run(dataset, tmp_path / "clean")
    original, done = pipeline.run_preprocess_job, []

    def killed_after_two(job: pipeline.PreprocessJob) -> str:
        if len(done) == 2:
            raise KeyboardInterrupt("simulated kill")
        done.append(original(job))
        return done[-1]

    monkeypatch.setattr(pipeline, "run_preprocess_job", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        run(dataset, tmp_path / "resumed")
    written = sorted(p.name for p in (tmp_path / "resumed" / dataset.name / "plans_data").iterdir())
    assert written == ["case_000.json", "case_000.npz", "case_001.json", "case_001.npz"]
    monkeypatch.setattr(pipeline, "run_preprocess_job", original)
    messages: list[str] = []
    run(dataset, tmp_path / "resumed", messages)
    assert "2 case(s) already preprocessed, 4 to do" in messages
    assert_same_outputs(tmp_path / "clean", tmp_path / "resumed")


def test_half_written_or_corrupt_cases_are_redone(tmp_path: Path) -> None:
    dataset = make_raw_dataset(tmp_path / "raw", n_cases=6, shape=SHAPE)
    run(dataset, tmp_path / "clean")
    run(dataset, tmp_path / "pre")
    data_dir = tmp_path / "pre" / dataset.name / "plans_data"
    (data_dir / "case_001.json").unlink()
    archive = (data_dir / "case_002.npz").read_bytes()
    (data_dir / "case_002.npz").write_bytes(archive[: len(archive) // 2])
    (data_dir / "case_003.npz").write_bytes(b"not an archive" * 10)
    with np.load(data_dir / "case_004.npz") as npz:
        np.savez(data_dir / "case_004.npz", data=npz["data"], lesion=npz["lesion"])  # the mask is missing
    before = snapshot(tmp_path / "pre")
    messages: list[str] = []
    run(dataset, tmp_path / "pre", messages)
    assert "2 case(s) already preprocessed, 4 to do" in messages
    after = snapshot(tmp_path / "pre")
    changed = sorted(name for name in after if after[name] != before.get(name))
    assert changed == [f"{dataset.name}/plans_data/case_00{i}.{ext}" for i in (1, 2, 3, 4) for ext in ("json", "npz")]
    assert_same_outputs(tmp_path / "clean", tmp_path / "pre")


def test_broken_dataset_writes_nothing(tmp_path: Path) -> None:
    dataset = make_raw_dataset(tmp_path / "raw", n_cases=3, shape=SHAPE)
    (dataset / "imagesTr" / "case_002_0003.nii.gz").unlink()
    with pytest.raises(InvalidDatasetError, match="case_002_0003.nii.gz: missing phase file"):
        run(dataset, tmp_path / "pre")
    assert not (tmp_path / "pre").exists()


def test_normalization_failure_names_the_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dataset = make_raw_dataset(tmp_path / "raw", n_cases=2, shape=SHAPE)

    def failing(*args, **kwargs):
        raise NormalizationError("TI-norm mask holds 0 voxel(s); cannot compute statistics")

    monkeypatch.setattr(pipeline, "preprocess_canonical", failing)
    with pytest.raises(NormalizationError, match=r"case case_000 \(.*case_000_0000.nii.gz.*\): TI-norm mask holds"):
        run(dataset, tmp_path / "pre")


def test_cli_runs_with_two_processes_and_reports_broken_datasets(tmp_path: Path, capsys) -> None:
    make_raw_dataset(tmp_path / "raw", n_cases=4, shape=SHAPE)
    roots = ["--raw", str(tmp_path / "raw"), "--preprocessed", str(tmp_path / "pre")]
    assert plan_and_preprocess_main(["-d", "1", "-np", "2", "--preset", "tiny", *roots]) == 0
    out = tmp_path / "pre" / "Dataset001_Phantom"
    assert len(list((out / "plans_data").glob("*.npz"))) == 4
    assert load_plans(out / "plans.json").preset == "tiny"
    assert "patch / batch" in capsys.readouterr().out

    broken = make_raw_dataset(tmp_path / "raw", n_cases=2, shape=SHAPE, dataset_id=2, name="Broken")
    (broken / "imagesTr" / "case_001_0002.nii.gz").unlink()
    code = plan_and_preprocess_main(["-d", "2", "-np", "1", *roots])
    assert code != 0
    error = capsys.readouterr().err
    assert "error: [case_001]" in error and "case_001_0002.nii.gz: missing phase file" in error
    assert not (tmp_path / "pre" / broken.name).exists()
    assert plan_and_preprocess_main(["-d", "7", *roots]) != 0
    assert "not found" in capsys.readouterr().err
