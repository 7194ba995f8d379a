"""Tests of the evaluation metrics, kinetic-curve measures and training-free baselines."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from iterdce.evaluation.baselines import copy_last_phase, linear_extrapolation
from iterdce.evaluation.kinetics import (
    curve_type,
    curve_type_confusion,
    dtw_distance,
    lesion_curve,
    spearman,
)
from iterdce.evaluation.metrics import enhancement_error, mae, psnr, sharpness, ssim3d_numpy

SHAPE = (32, 32, 16)


@pytest.fixture
def volume() -> np.ndarray:
    return np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)


@pytest.fixture
def lesion() -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=np.uint8)
    mask[10:16, 12:20, 4:9] = 1
    return mask


# ---------------------------------------------------------------- image metrics


def test_sharpness_is_one_for_the_real_image_below_one_when_blurred_above_when_noisy(volume):
    textured = gaussian_filter(volume, 1.0)
    assert sharpness(textured, textured) == pytest.approx(1.0)
    assert sharpness(gaussian_filter(textured, 1.5), textured) < 0.5
    assert sharpness(textured + 0.3 * volume, textured) > 1.2
    assert sharpness(2 * textured, textured) == pytest.approx(4.0)  # gradient energy: squared contrast
    inside = np.zeros(SHAPE, bool)
    inside[:16] = True
    blurred_half = textured.copy()
    blurred_half[16:] = gaussian_filter(textured, 2.0)[16:]
    assert sharpness(blurred_half, textured, inside) == pytest.approx(1.0, abs=0.05)  # only the mask counts
    assert math.isnan(sharpness(textured, textured, np.zeros(SHAPE, bool)))
    assert math.isnan(sharpness(textured, np.ones(SHAPE)))  # a flat reference has no gradient energy


def test_identical_images(volume, lesion):
    assert psnr(volume, volume) == math.inf
    assert ssim3d_numpy(volume, volume) == pytest.approx(1.0, abs=1e-12)
    assert mae(volume, volume) == 0.0
    assert enhancement_error(volume, volume, lesion) == 0.0


@pytest.mark.parametrize("offset", [0.25, -1.5])
def test_constant_offset(volume, lesion, offset):
    pred = volume.astype(np.float64) + offset
    assert mae(pred, volume) == pytest.approx(abs(offset), rel=1e-6)
    assert enhancement_error(pred, volume, lesion) == pytest.approx(offset**2, rel=1e-6)
    assert mae(pred, volume, mask=lesion) == pytest.approx(abs(offset), rel=1e-6)


def test_psnr_matches_formula_for_known_mse(volume):
    signs = np.where(np.random.default_rng(1).random(SHAPE) < 0.5, -1.0, 1.0)
    pred = volume.astype(np.float64) + 0.5 * signs  # squared error is exactly 0.25 everywhere
    ref_range = float(volume.max()) - float(volume.min())
    assert psnr(pred, volume) == pytest.approx(10 * math.log10(ref_range**2 / 0.25), rel=1e-9)
    assert psnr(pred, volume, data_range=2.0) == pytest.approx(10 * math.log10(4.0 / 0.25), rel=1e-9)


def test_mask_restricts_every_metric(volume, lesion):
    pred = volume.astype(np.float64).copy()
    pred[lesion == 0] += 100.0  # wrong outside the lesion only
    assert psnr(pred, volume, mask=lesion) == math.inf
    assert mae(pred, volume, mask=lesion) == 0.0
    assert mae(pred, volume) == pytest.approx(100.0 * (lesion == 0).mean(), rel=1e-6)
    # data range is taken inside the mask: ref values inside the lesion only
    pred_in = volume.astype(np.float64) + np.where(lesion > 0, 0.1, 0.0)
    inside = volume[lesion > 0]
    expected = 10 * math.log10((float(inside.max()) - float(inside.min())) ** 2 / 0.01)
    assert psnr(pred_in, volume, mask=lesion) == pytest.approx(expected, rel=1e-6)


def test_ssim_mask_far_from_error_is_one(volume):
    pred = volume.copy()
    pred[:8] += np.random.default_rng(2).normal(size=pred[:8].shape).astype(np.float32)
    mask = np.zeros(SHAPE, dtype=bool)
    mask[20:] = True  # > Gaussian radius (5 voxels) away from the perturbed slab
    assert ssim3d_numpy(pred, volume, mask=mask) == pytest.approx(1.0, abs=1e-9)
    assert ssim3d_numpy(pred, volume) < 0.9


def _reference_ssim_map(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    """Wang et al. 2004 with a Gaussian window (sigma 1.5, truncated at 3.5 sigma), population covariance."""
    f = lambda a: gaussian_filter(a, sigma=1.5, truncate=3.5, mode="reflect")  # noqa: E731
    ux, uy = f(x), f(y)
    vx, vy, vxy = f(x * x) - ux**2, f(y * y) - uy**2, f(x * y) - ux * uy
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))


def test_ssim_matches_definition(volume, lesion):
    ref = volume.astype(np.float64)
    pred = 0.8 * ref + 0.3 * np.random.default_rng(3).normal(size=SHAPE)
    expected_map = _reference_ssim_map(pred, ref, float(ref.max() - ref.min()))
    assert ssim3d_numpy(pred, ref) == pytest.approx(expected_map.mean(), rel=1e-9)
    inside = ref[lesion > 0]  # the default data range is the reference's range inside the mask
    expected_masked = _reference_ssim_map(pred, ref, float(inside.max() - inside.min()))[lesion > 0].mean()
    assert ssim3d_numpy(pred, ref, mask=lesion) == pytest.approx(expected_masked, rel=1e-9)
    expected_fixed = _reference_ssim_map(pred, ref, 10.0)[lesion > 0].mean()
    assert ssim3d_numpy(pred, ref, mask=lesion, data_range=10.0) == pytest.approx(expected_fixed, rel=1e-9)


def test_ssim_small_volume_shrinks_window():
    ref = np.random.default_rng(4).normal(size=(9, 12, 4))
    assert ssim3d_numpy(ref, ref) == pytest.approx(1.0, abs=1e-12)
    assert 0.0 < ssim3d_numpy(ref + 0.5 * np.random.default_rng(5).normal(size=ref.shape), ref) < 1.0


def test_empty_mask_gives_nan(volume):
    empty = np.zeros(SHAPE, dtype=bool)
    pred = volume + 1
    for value in (psnr(pred, volume, empty), ssim3d_numpy(pred, volume, empty),
                  mae(pred, volume, empty), enhancement_error(pred, volume, empty)):
        assert math.isnan(value)


def test_bad_inputs_raise(volume):
    with pytest.raises(ValueError, match="differs from reference shape"):
        mae(volume[:-1], volume)
    with pytest.raises(ValueError, match="mask shape"):
        psnr(volume, volume, mask=np.ones((4, 4, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        mae(np.full(SHAPE, np.nan), volume)
    with pytest.raises(ValueError, match="constant inside the mask"):
        psnr(volume, np.zeros(SHAPE))
    with pytest.raises(ValueError, match="data_range must be positive"):
        ssim3d_numpy(volume, volume, data_range=0.0)
    with pytest.raises(ValueError, match="3D"):
        ssim3d_numpy(volume[0], volume[0])


# ---------------------------------------------------------------- kinetic curves

TIMES = [0.0, 60.0, 120.0, 180.0, 300.0]


@pytest.mark.parametrize(
    "last, expected",
    [(111.0, "persistent"), (110.0, "plateau"), (100.0, "plateau"), (90.0, "plateau"), (89.0, "washout")],
)
def test_curve_type_thresholds(last, expected):
    # S_early = max over post-contrast phases at t <= 120 s = 100; r = (last - 100) / 100
    assert curve_type([50.0, 80.0, 100.0, 95.0, last], TIMES) == expected


def test_curve_type_early_window():
    # the 180 s phase (200) is outside the early window; the 120 s phase (100) is inside it
    assert curve_type([50.0, 100.0, 80.0, 200.0, 111.0], TIMES) == "persistent"
    assert curve_type([50.0, 80.0, 100.0, 60.0, 105.0], TIMES) == "plateau"  # 80 as S_early -> persistent
    # no post-contrast phase at t <= 120 s: the first post-contrast phase is S_early
    assert curve_type([10.0, 100.0, 300.0, 89.0], [0.0, 150.0, 200.0, 300.0]) == "washout"
    assert curve_type([0.0, 0.0, 0.0, 1.0, 1.0], TIMES) == "none"  # S_early = 0: undefined
    with pytest.raises(ValueError, match="one value per phase time"):
        curve_type([1.0, 2.0, 3.0], TIMES)


def test_lesion_curve_means_per_phase(lesion):
    phases = np.stack([np.full(SHAPE, float(p)) for p in range(4)])
    phases[2][lesion > 0] = 7.0  # inside the lesion only
    np.testing.assert_allclose(lesion_curve(phases, lesion), [0.0, 1.0, 7.0, 3.0])
    assert np.isnan(lesion_curve(phases, np.zeros(SHAPE))).all()
    with pytest.raises(ValueError, match="does not match lesion mask"):
        lesion_curve(phases[0], lesion)


def test_spearman():
    a = np.array([1.0, 2.0, 3.5, 4.0, 8.0])
    assert spearman(a, np.exp(a)) == pytest.approx(1.0)
    assert spearman(a, -a**3) == pytest.approx(-1.0)
    assert spearman([1.0, 3.0, 2.0], [1.0, 2.0, 3.0]) == pytest.approx(0.5)
    assert math.isnan(spearman(a, np.ones(5)))  # constant curve: undefined
    assert math.isnan(spearman(a, [1.0, np.nan, 2.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match="equal length"):
        spearman(a, a[:3])


def test_dtw_distance():
    a = [0.0, 1.0, 2.0, 3.0]
    assert dtw_distance(a, a) == 0.0
    assert dtw_distance([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]) == pytest.approx(math.sqrt(3.0))
    assert dtw_distance([0.0, 1.0, 2.0], [0.0, 1.0, 1.0, 2.0]) == 0.0  # warping absorbs the repeat
    assert dtw_distance([0.0, 1.0, 2.0], [0.0, 1.0, 4.0]) == pytest.approx(2.0)
    assert math.isnan(dtw_distance(a, [0.0, np.nan]))


def test_curve_type_confusion_counts():
    true = ["persistent", "persistent", "plateau", "washout", "washout", "washout", "none", "plateau"]
    pred = ["persistent", "plateau", "plateau", "washout", "plateau", "washout", "washout", "none"]
    accuracy, matrix = curve_type_confusion(true, pred)
    assert list(matrix.index) == ["persistent", "plateau", "washout"] == list(matrix.columns)
    expected = np.array([[1, 1, 0], [0, 1, 0], [0, 1, 2]])
    np.testing.assert_array_equal(matrix.to_numpy(), expected)
    assert accuracy == pytest.approx(4 / 6)
    nan_accuracy, empty = curve_type_confusion(["none"], ["plateau"])
    assert math.isnan(nan_accuracy) and int(empty.to_numpy().sum()) == 0
    with pytest.raises(ValueError, match="unknown curve types"):
        curve_type_confusion(["type I"], ["plateau"])
    with pytest.raises(ValueError, match="predicted"):
        curve_type_confusion(["plateau"], [])


# ---------------------------------------------------------------- baselines


def test_copy_last_phase_repeats():
    inputs = np.random.default_rng(6).normal(size=(2, 4, 5, 3)).astype(np.float32)
    out = copy_last_phase(inputs, 3)
    assert out.shape == (3, 4, 5, 3) and out.dtype == np.float32
    for k in range(3):
        np.testing.assert_array_equal(out[k], inputs[-1])
    out[0] += 1  # a copy, not a view of the inputs
    np.testing.assert_array_equal(out[1], inputs[-1])
    with pytest.raises(ValueError, match="n_targets"):
        copy_last_phase(inputs, 0)


def test_linear_extrapolation_exact_on_linear_data():
    rng = np.random.default_rng(7)
    intercept, slope = rng.normal(size=(6, 5, 4)), rng.normal(size=(6, 5, 4))
    input_times, target_times = [-30.0, 0.0, 85.0], [155.0, 225.0, 365.0]
    inputs = np.stack([intercept + slope * t for t in input_times])
    inputs[0] += 50.0  # only the last two inputs define the line
    out = linear_extrapolation(inputs, input_times, target_times)
    expected = np.stack([intercept + slope * t for t in target_times])
    assert out.shape == (3, 6, 5, 4) and out.dtype == np.float64
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)
    assert linear_extrapolation(inputs.astype(np.float32), input_times, target_times).dtype == np.float32


def test_linear_extrapolation_rejects_bad_timing():
    inputs = np.zeros((2, 3, 3, 3))
    with pytest.raises(ValueError, match="must increase"):
        linear_extrapolation(inputs, [60.0, 60.0], [120.0])
    with pytest.raises(ValueError, match="input times"):
        linear_extrapolation(inputs, [0.0, 60.0, 90.0], [120.0])
    with pytest.raises(ValueError, match="at least two"):
        linear_extrapolation(inputs[:1], [0.0], [120.0])
