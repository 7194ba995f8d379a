"""Tests of the predictor: tile-major blending, fold averaging, TTA, end-to-end geometry and intensity through
preprocessing and export, case timing and requested target times (refusals, skipping and the
``iterdce_predict`` command: tests/test_predictor_errors.py).

Model folders are written by hand (plans.json from the planner on a tiny dataset, tiny networks with features
[4, 8]); a fresh IterUNet has a zero final conv, so it returns its input phase at every step ("identity").
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from iterdce.core.checkpoint import save_checkpoint
from iterdce.core.errors import OutputLocationError
from iterdce.dataset.nifti_io import Geometry, read_image, write_image
from iterdce.inference.inputs import PredictionInputError
from iterdce.inference.predictor import IterativePredictor, PredictionSettings
from iterdce.inference.sliding_window import finalize, gaussian_importance_map, tile_grid
from iterdce.inference.tiled import importance_floor, mirror_sets, predict_volume
from iterdce.network.config import ModelConfig
from iterdce.network.synthesizer import build_synthesizer
from iterdce.preprocessing.fingerprint import compute_fingerprint
from iterdce.preprocessing.orientation import to_canonical
from iterdce.preprocessing.planner import plan_experiment
from iterdce.preprocessing.plans_io import save_plans
from tests.helpers import make_raw_dataset

torch.set_num_threads(1)

TIMES = [0.0, 85.0, 155.0, 225.0, 295.0, 365.0]
PATCH = [16, 16, 8]
NETWORK = {"in_channels": 2, "features_per_stage": [4, 8], "pool_per_stage": [[2, 2, 2]], "time_embedding_dim": 8,
           "time_scale_s": 365.0, "use_time_embedding": True, "use_convlstm": True}
OBLIQUE_SPACING = (0.7, 0.9, 2.5)
# conv kernels may sum in another order for another batch size: ~1e-6 of the output's magnitude
BATCH_RTOL = 1e-5
IDENTITY_RTOL = 1e-4  # of the input's intensity range: blending and TI-norm round trip are exact up to float32


# ---------------------------------------------------------------------------------------------- helpers

def rotation(axis: int, degrees: float) -> np.ndarray:
    """3x3 rotation about world axis ``axis``."""
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    i, j = [a for a in range(3) if a != axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


def oblique_affine(spacing=OBLIQUE_SPACING) -> np.ndarray:
    """Rotated about two axes, anisotropic, axes permuted (array axis 0 runs along world z, 1 along x, 2 along y)."""
    affine = np.eye(4)
    permutation = np.eye(3)[:, [2, 0, 1]]
    affine[:3, :3] = rotation(0, 25.0) @ rotation(2, 35.0) @ permutation @ np.diag(spacing)
    affine[:3, 3] = [-30.0, 12.5, 40.0]
    return affine


def canonical_spacing(affine: np.ndarray, shape) -> list[float]:
    """The spacing a case with this affine has after reorientation (what the plan spacing is compared to)."""
    canonical_affine = to_canonical(np.zeros(shape, np.float32), affine)[1]
    return [float(s) for s in np.linalg.norm(canonical_affine[:3, :3], axis=0)]


def smooth_phases(shape, seed: int = 0) -> np.ndarray:
    """Two smooth positive input phases (pre, post = pre * enhancement) with a zero border along axis 0."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=3.0, mode="wrap")
    field /= np.abs(field).max()
    pre = 100.0 + 40.0 * field
    post = pre * (1.3 + 0.2 * ndimage.gaussian_filter(rng.standard_normal(shape), 3.0, mode="wrap"))
    image = np.stack([pre, post]).astype(np.float32)
    image[:, :1] = 0.0  # air outside the field of view: exercises the crop box and the paste back
    return image


def write_case(folder: Path, case_id: str, phases: np.ndarray, geometry: Geometry) -> None:
    for index, volume in enumerate(phases):
        write_image(folder / f"{case_id}_{index:04d}.nii.gz", volume, geometry)


@pytest.fixture(scope="module")
def base_plans(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A plan from the real planner (tiny preset) with a tiny network and patch put in."""
    raw = make_raw_dataset(tmp_path_factory.mktemp("raw"), n_cases=2, shape=(16, 16, 8), n_phases=6)
    plans = plan_experiment(compute_fingerprint(raw, 1, progress=False), preset="tiny").to_dict()
    assert plans["input_times_s"] + plans["target_times_s"] == TIMES and plans["max_phases"] == 6
    # the synthesizer sets the channel count; no kinetic prior
    network = {**{k: v for k, v in NETWORK.items() if k != "in_channels"}, "kinetic_prior": False}
    return {**plans, "patch_size": list(PATCH), "network": network}


def make_model(seed: int | None = None, scale: float = 0.05) -> nn.Module:
    """The plan's synthesizer; ``seed`` None keeps the zero final conv (identity), else random final weights."""
    model = build_synthesizer(ModelConfig.from_plan("iterative", NETWORK, [0, 1], len(TIMES)))
    if seed is not None:
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            final = model.net.final_conv
            final.weight.copy_(torch.randn(final.weight.shape, generator=generator) * scale)
            final.bias.copy_(torch.randn(final.bias.shape, generator=generator) * scale)
    return model.eval()


def write_model_folder(results: Path, plans: dict, folds: dict, checkpoint: str = "final") -> Path:
    """``<results>/Dataset001_Phantom/RecursiveTrainer__plans`` with plans.json and one checkpoint per fold."""
    folder = results / "Dataset001_Phantom" / "RecursiveTrainer__plans"
    save_plans(plans, folder / "plans.json")
    for fold, model in folds.items():
        save_checkpoint(folder / f"fold_{fold}" / f"checkpoint_{checkpoint}.pth",
                        {"network_state": model.state_dict(), "model_config": ModelConfig.from_plan(
                            "iterative", NETWORK, [0, 1], len(TIMES)).to_dict(), "epoch": 1})
    return folder


def predictor_for(folder: Path, folds=(0,), **settings) -> IterativePredictor:
    return IterativePredictor(folder, PredictionSettings(folds=folds, device="cpu", progress=False, **settings))


class ConstantModel(nn.Module):
    """Returns ``value + k`` for target k at every voxel: blending must give back exactly these constants."""

    def __init__(self, n_targets: int, value: float) -> None:
        super().__init__()
        self.n_targets, self.value = n_targets, value

    def forward(self, inputs: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        offsets = torch.arange(self.n_targets, dtype=torch.float32).view(1, -1, 1, 1, 1)
        return torch.zeros(inputs.shape[0], self.n_targets, *inputs.shape[2:]) + self.value + offsets


class RampModel(nn.Module):
    """Ignores the input and returns the tile's axis-0 voxel index: flips of TTA turn it into a constant."""

    def forward(self, inputs: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        ramp = torch.arange(inputs.shape[2], dtype=torch.float32).view(1, 1, -1, 1, 1)
        return ramp.expand(inputs.shape[0], 2, *inputs.shape[2:]).clone()


class RecordingIdentity(nn.Module):
    """Identity synthesizer that records the times it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[torch.Tensor] = []

    def forward(self, inputs: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
        self.times.append(times.clone())
        return inputs[:, 1:2].expand(-1, times.shape[1] - 2, -1, -1, -1).clone()


def random_inputs(shape, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(2, *shape, generator=generator)


# ------------------------------------------------------------------------------------ predict_volume

def test_single_tile_prediction_equals_whole_volume_forward():
    model = make_model(seed=1, scale=0.5)
    inputs, times = random_inputs(PATCH), torch.tensor(TIMES)
    tiled = predict_volume([model], inputs, times, PATCH, n_targets=4, precision="fp32")
    with torch.no_grad():
        whole = model(inputs[None], times[None])[0]
    assert tiled.shape == (4, *PATCH)
    assert float((whole - inputs[1:2]).abs().max()) > 1e-2  # the model really changes its input
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)


def test_multi_tile_prediction_matches_per_tile_reference():
    """Tile-major: every tile runs all steps on its own, then each step is Gaussian-blended into its phase."""
    model, shape = make_model(seed=2, scale=0.5), (24, 20, 11)
    inputs, times = random_inputs(shape, seed=3), torch.tensor(TIMES)
    result = predict_volume([model], inputs, times, PATCH, n_targets=4, tile_batch=3, precision="fp32")
    weights = gaussian_importance_map(PATCH, min_weight=importance_floor(PATCH))
    accumulator, weight_sum = torch.zeros(4, *shape), torch.zeros(shape)
    with torch.no_grad():
        for tile in tile_grid(shape, PATCH, 0.5):
            accumulator[(..., *tile)] += model(inputs[(slice(None), *tile)][None], times[None])[0] * weights
            weight_sum[tile] += weights
    reference = finalize(accumulator, weight_sum)
    torch.testing.assert_close(result, reference, atol=BATCH_RTOL * float(reference.abs().max()), rtol=0)


@pytest.mark.parametrize("patch", [(16, 16, 8), (7, 12, 5), (9, 9, 9)])
def test_importance_floor_reproduces_monais_gaussian_map(patch):
    """MONAI: exp(-x^2 / (2 sigma^2)) on x = -(p-1)/2 .. (p-1)/2, sigma = p / 8, clamped at 1e-3 *before* scaling."""
    axes = [np.exp(-(np.arange(p) - (p - 1) / 2.0) ** 2 / (2 * (p / 8.0) ** 2)) for p in patch]
    monai_like = np.maximum(np.einsum("i,j,k->ijk", *axes), 1e-3)
    ours = gaussian_importance_map(patch, min_weight=importance_floor(patch)).double().numpy()
    np.testing.assert_allclose(ours, monai_like / monai_like.max(), rtol=1e-6)
    assert importance_floor((9, 9, 9)) == pytest.approx(1e-3)  # odd sizes: a voxel sits on the peak


@pytest.mark.parametrize("shape", [(37, 29, 13), (10, 7, 5), (16, 40, 8)])
def test_blending_constant_tiles_gives_constant_volume(shape):
    result = predict_volume([ConstantModel(4, 3.5)], random_inputs(shape), torch.tensor(TIMES), PATCH, 4,
                            tile_batch=2)
    assert result.shape == (4, *shape)
    for k in range(4):
        torch.testing.assert_close(result[k], torch.full(shape, 3.5 + k), atol=1e-5, rtol=1e-6)


def test_fold_average_equals_mean_of_single_fold_predictions():
    models = [make_model(seed=10, scale=0.5), make_model(seed=11, scale=0.5)]
    inputs, times = random_inputs((26, 18, 12), seed=4), torch.tensor(TIMES)
    single = [predict_volume([m], inputs, times, PATCH, 4) for m in models]
    assert float((single[0] - single[1]).abs().max()) > 1e-2  # the folds really differ
    averaged = predict_volume(models, inputs, times, PATCH, 4)
    mean = (single[0] + single[1]) / 2
    torch.testing.assert_close(averaged, mean, atol=BATCH_RTOL * float(mean.abs().max()), rtol=0)


def test_tile_batch_size_does_not_change_the_result():
    model, inputs, times = make_model(seed=5, scale=0.5), random_inputs((30, 17, 9), seed=5), torch.tensor(TIMES)
    one = predict_volume([model], inputs, times, PATCH, 4, tile_batch=1)
    many = predict_volume([model], inputs, times, PATCH, 4, tile_batch=7)
    torch.testing.assert_close(one, many, atol=BATCH_RTOL * float(one.abs().max()), rtol=0)


def test_mirroring_tta_flips_tiles_and_flips_outputs_back():
    assert mirror_sets([0, 2]) == [(), (0,), (2,), (0, 2)]
    inputs, times = random_inputs(PATCH), torch.tensor(TIMES)
    plain = predict_volume([RampModel()], inputs, times, PATCH, 2)
    torch.testing.assert_close(plain[0, :, 0, 0], torch.arange(16, dtype=torch.float32))
    mirrored = predict_volume([RampModel()], inputs, times, PATCH, 2, mirror_axes=[0])
    torch.testing.assert_close(mirrored, torch.full((2, *PATCH), 7.5), atol=1e-5, rtol=0)
    # mirroring axis 2 does not touch the axis-0 ramp
    torch.testing.assert_close(predict_volume([RampModel()], inputs, times, PATCH, 2, mirror_axes=[2]), plain)


# --------------------------------------------------------------------- end to end: geometry and intensities

@pytest.mark.parametrize("shape", [(20, 18, 9), (6, 12, 10)], ids=["multi-tile", "smaller-than-patch"])
def test_identity_network_reproduces_input_phase_in_input_geometry(tmp_path, base_plans, shape):
    """Plan spacing = the case's spacing: no resampling, so the round trip is exact up to float32 rounding."""
    affine = oblique_affine()
    plans = {**base_plans, "spacing": canonical_spacing(affine, shape)}
    folder = write_model_folder(tmp_path / "results", plans, {0: make_model()})
    phases = smooth_phases(shape, seed=1)
    geometry = Geometry(shape, affine, qform_code=1, sform_code=2)
    write_case(tmp_path / "in", "case_a", phases, geometry)
    assert predictor_for(folder).predict_folder(tmp_path / "in", tmp_path / "out") == ["case_a"]
    tolerance = IDENTITY_RTOL * float(np.ptp(phases[1]))
    for phase in (2, 3, 4, 5):
        path = tmp_path / "out" / f"case_a_{phase:04d}.nii.gz"
        image = nib.load(str(path))
        assert image.shape == shape and image.get_data_dtype() == np.float32
        np.testing.assert_allclose(image.affine, affine, atol=1e-5)
        assert int(image.header["qform_code"]) == 1 and int(image.header["sform_code"]) == 2
        data = np.asarray(image.dataobj)
        np.testing.assert_allclose(data, phases[1], atol=tolerance, rtol=0)
        assert (data[:1] == 0).all()  # outside the crop box: the background the input had


def test_identity_network_through_resampling_reproduces_smooth_input(tmp_path, base_plans):
    """Plan spacing != case spacing: resampled there and back (cubic in-plane, linear along the 2.5 mm axis)."""
    shape, affine = (24, 22, 10), oblique_affine()
    plans = {**base_plans, "spacing": [1.0, 1.2, 1.0]}
    assert canonical_spacing(affine, shape) != plans["spacing"]
    folder = write_model_folder(tmp_path / "results", plans, {0: make_model()})
    phases = smooth_phases(shape, seed=2)
    write_case(tmp_path / "in", "case_r", phases, Geometry(shape, affine))
    predictor_for(folder).predict_folder(tmp_path / "in", tmp_path / "out")
    value_range = float(np.ptp(phases[1][1:]))
    for phase in (2, 5):
        data, geometry = read_image(tmp_path / "out" / f"case_r_{phase:04d}.nii.gz")
        assert data.shape == shape and geometry.matches(Geometry(shape, affine), atol=1e-5)
        error = np.abs(data - phases[1])[2:-1]  # away from the zero border (a step that no spline keeps)
        assert float(error.max()) <= 0.03 * value_range
        assert float(error.mean()) <= 0.005 * value_range


def test_case_timing_sidecar_reaches_the_network(tmp_path, base_plans):
    folder = write_model_folder(tmp_path / "results", base_plans, {0: make_model()})
    shape = (16, 16, 8)
    for case_id in ("case_a", "case_b", "case_c"):
        write_case(tmp_path / "in", case_id, smooth_phases(shape), Geometry(shape, np.diag([0.8, 0.8, 2.0, 1])))
    (tmp_path / "in" / "case_a.json").write_text(json.dumps({"phase_times_s": [-10.0, 60.0]}))
    (tmp_path / "in" / "case_b.json").write_text(json.dumps({"phase_times_s": [0, 70, 140, 210, 280, 350]}))
    (tmp_path / "in" / "case_c.json").write_text(json.dumps({"phase_times_s": [0, 80, 160, 240]}))  # own protocol
    predictor = predictor_for(folder)
    recorder = RecordingIdentity()
    predictor.models = [recorder]
    predictor.predict_folder(tmp_path / "in", tmp_path / "out")
    seen = [r[0].tolist() for r in recorder.times]
    assert seen == [[-10.0, 60.0, *TIMES[2:]], [0, 70, 140, 210, 280, 350], [0, 80, 160, 240]]  # sorted cases
    written = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.startswith("case_c"))
    assert written == ["case_c.json", "case_c_0002.nii.gz", "case_c_0003.nii.gz"]
    sidecar = json.loads((tmp_path / "out" / "case_c.json").read_text())
    assert sidecar["phase_times_s"] == [0, 80, 160, 240] and sidecar["synthesized_phases"] == [2, 3]


def test_requested_target_times_and_the_extrapolation_warning(tmp_path, base_plans):
    """--target-times: every case is synthesized at those times (inputs keep their own); times beyond the trained
    range (155-365 s, tolerated 118.5-401.5 s) are predicted with one warning naming them."""
    folder = write_model_folder(tmp_path / "results", base_plans, {0: make_model()})
    shape = (16, 16, 8)
    for case_id in ("case_a", "case_b"):
        write_case(tmp_path / "in", case_id, smooth_phases(shape), Geometry(shape, np.diag([0.8, 0.8, 2.0, 1])))
    (tmp_path / "in" / "case_a.json").write_text(json.dumps({"phase_times_s": [0, 90, 190, 290]}))
    settings = dict(folds=(0,), device="cpu", progress=False)
    predictor = IterativePredictor(folder, PredictionSettings(**settings, target_times=(120.0, 200.0, 400.0)))
    recorder = RecordingIdentity()
    predictor.models = [recorder]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predictor.predict_folder(tmp_path / "in", tmp_path / "out")
    assert [r[0].tolist() for r in recorder.times] == [[0, 90, 120, 200, 400], [0, 85, 120, 200, 400]]
    assert (tmp_path / "out" / "case_b_0004.nii.gz").is_file()
    far = IterativePredictor(folder, PredictionSettings(**settings, target_times=(155.0, 600.0, 900.0)))
    far.models = [RecordingIdentity()]
    with pytest.warns(UserWarning, match=r"target time\(s\) 600, 900 s of 2 case\(s\) lie outside the times this "
                                         r"model was trained on \(155-365 s"):
        far.predict_folder(tmp_path / "in", tmp_path / "far")
    with pytest.raises(PredictionInputError, match="not strictly increasing"):
        IterativePredictor(folder, PredictionSettings(**settings, target_times=(60.0,))).predict_folder(
            tmp_path / "in", tmp_path / "never")
    assert not (tmp_path / "never").exists()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "case_a.json").write_text('{"phase_times_s": [0, 90, 190, 290]}')  # the user's file
    with pytest.raises(OutputLocationError, match="case_a.json: exists and was not written by iterdce_predict"):
        predictor.predict_folder(tmp_path / "in", tmp_path / "mine")
