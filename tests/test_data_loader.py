"""Tests for training patches and augmentation: lesion-centred pairs, phase alignment, determinism, workers."""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.common import synthetic_sidecar
from iterdce.preprocessing.plan_schema import AugmentationPlan
from iterdce.training.augmentation import build_transforms, center_crop, extraction_size
from iterdce.training.data_loader import (
    PatchSampler,
    extract_patch,
    load_preprocessed,
    make_loader,
    random_center,
    validation_batches,
)

torch.set_num_threads(1)

TIMES = [0.0, 85.0, 155.0, 225.0, 295.0, 365.0]
SHAPE = (48, 48, 16)
PATCH = [16, 16, 8]
LESION = (slice(2, 6), slice(40, 44), slice(1, 5))  # a 4x4x4 lesion near a corner of the volume


def write_case(folder: Path, case_id: str, seed: int, with_lesion: bool) -> None:
    """A preprocessed case as the preprocessor writes it: <case>.npz (data, lesion, mask) + <case>.json."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0.0, 1.0, SHAPE).astype(np.float32)
    data = np.stack([base + 0.5 * k for k in range(len(TIMES))]).astype(np.float32)
    lesion = np.zeros(SHAPE, np.uint8)
    if with_lesion:
        lesion[LESION] = 1
    mask = np.ones(SHAPE, np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / f"{case_id}.npz", data=data, lesion=lesion, mask=mask)
    (folder / f"{case_id}.json").write_text(json.dumps(synthetic_sidecar(case_id, SHAPE, TIMES)))


@pytest.fixture(scope="session")
def case_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two cases with a corner lesion and one without."""
    folder = tmp_path_factory.mktemp("patches")
    write_case(folder, "lesion_a", 0, True)
    write_case(folder, "lesion_b", 1, True)
    write_case(folder, "healthy", 2, False)
    return folder


def aug(**changes) -> AugmentationPlan:
    return dataclasses.replace(AugmentationPlan(), **changes)


NO_INTENSITY = {"probability_gamma": 0.0, "probability_multiplicative": 0.0, "probability_noise": 0.0,
                "probability_bias_field": 0.0}


# ----- patch geometry -----------------------------------------------------------------------------------
def test_extract_patch_fills_outside_per_channel() -> None:
    array = np.arange(2 * 4 * 4 * 2, dtype=np.float32).reshape(2, 4, 4, 2)
    patch = extract_patch(array, [0, 0, 0], [4, 4, 2], np.array([-1.0, -2.0], np.float32))
    assert patch.shape == (2, 4, 4, 2)
    assert np.array_equal(patch[:, 2:, 2:, 1:], array[:, :2, :2, :1])  # the centre lands at the patch middle
    assert (patch[0, :2] == -1).all() and (patch[1, :, :, :1] == -2).all()
    inside = extract_patch(array, [2, 2, 1], [4, 4, 2], 0.0)
    assert np.array_equal(inside, array)


def test_random_centres_keep_the_patch_inside() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        center = random_center(rng, SHAPE, PATCH)
        for c, n, s in zip(center, SHAPE, PATCH):
            assert 0 <= c - s // 2 and c - s // 2 + s <= n
    assert random_center(rng, (4, 48, 16), PATCH)[0] == 2  # an axis smaller than the patch: its centre


def test_extraction_size_leaves_room_for_rotation_and_zoom() -> None:
    assert extraction_size(PATCH, None) == PATCH
    assert extraction_size(PATCH, aug(probability_spatial=0.0)) == PATCH
    bigger = extraction_size(PATCH, aug())
    assert bigger[0] > PATCH[0] and bigger[1] > PATCH[1] and bigger[2] >= PATCH[2]
    assert all(b % 2 == 0 for b in bigger)
    assert center_crop(np.zeros((2, *bigger)), PATCH).shape == (2, *PATCH)


# ----- sampling -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("augmentation", [None, aug(probability_spatial=1.0)])
def test_even_slots_are_lesion_centred(case_folder: Path, augmentation) -> None:
    sampler = PatchSampler(case_folder, ["lesion_a", "lesion_b"], PATCH, 4, augmentation, seed=5)
    random_with_lesion = 0
    for index in range(12):
        batch = sampler.batch(index)
        assert batch["data"].shape == (4, 6, *PATCH) and batch["lesion"].shape == (4, 1, *PATCH)
        assert batch["lesion_centred"].tolist() == [True, False, True, False]
        for slot in (0, 2):
            assert batch["lesion"][slot].sum() > 0, (index, slot)
            # the patch is centred on a lesion voxel; rotation, zoom and mirroring move it by a voxel or so
            near = 0 if augmentation is None else 2
            centre = tuple(slice(p // 2 - near, p // 2 + near + 1) for p in PATCH)
            assert batch["lesion"][(slot, 0, *centre)].max() == 1, (index, slot)
        random_with_lesion += int(batch["lesion"][1].sum() > 0) + int(batch["lesion"][3].sum() > 0)
    assert random_with_lesion < 12  # random patches of this volume rarely reach the corner lesion
    assert np.array_equal(batch["times"], np.array([TIMES] * 4, np.float32))


def test_a_case_without_lesion_gives_random_patches(case_folder: Path) -> None:
    sampler = PatchSampler(case_folder, ["healthy"], PATCH, 2, None, seed=5)
    for index in range(4):
        batch = sampler.batch(index)
        assert batch["lesion_centred"].tolist() == [False, False]
        assert batch["lesion"].sum() == 0 and batch["mask"].min() == 1
    with pytest.raises(ValueError, match="no training cases"):
        PatchSampler(case_folder, [], PATCH, 2, None, seed=5)


def test_batches_are_a_pure_function_of_seed_rank_and_index(case_folder: Path) -> None:
    every = aug(probability_spatial=1.0, probability_gamma=1.0, probability_multiplicative=1.0,
                probability_noise=1.0)
    cases = ["lesion_a", "lesion_b", "healthy"]
    first = PatchSampler(case_folder, cases, PATCH, 2, every, seed=11)
    np.random.seed(1)
    random.seed(1)
    a = first.batch(3)
    np.random.seed(2)  # outside random state must not leak into a batch
    random.seed(2)
    b = PatchSampler(case_folder, cases, PATCH, 2, every, seed=11).batch(3)
    for key in a:
        assert np.array_equal(a[key], b[key]), key
    assert not np.array_equal(a["data"], first.batch(4)["data"])
    other_rank = PatchSampler(case_folder, cases, PATCH, 2, every, seed=11, rank=1).batch(3)
    assert not np.array_equal(a["data"], other_rank["data"])
    other_seed = PatchSampler(case_folder, cases, PATCH, 2, every, seed=12).batch(3)
    assert not np.array_equal(a["data"], other_seed["data"])


def test_background_workers_give_the_same_batches(case_folder: Path) -> None:
    every = aug(probability_spatial=1.0, probability_gamma=1.0, probability_noise=1.0)
    sampler = PatchSampler(case_folder, ["lesion_a", "healthy"], PATCH, 2, every, seed=3)
    inline = list(make_loader(sampler, 5, 9, num_workers=0, pin_memory=False))
    background = list(make_loader(sampler, 5, 9, num_workers=1, pin_memory=False))
    assert len(inline) == len(background) == 4
    for x, y in zip(inline, background):
        assert x["data"].dtype == torch.float32 and x["data"].shape == (2, 6, *PATCH)
        for key in x:
            assert torch.equal(x[key], y[key]), key
    assert torch.equal(inline[0]["data"], torch.from_numpy(sampler.batch(5)["data"]))


# ----- augmentation keeps the phases aligned ------------------------------------------------------------
def scaled_phases(size, constants, seed: int = 0) -> dict[str, np.ndarray]:
    """A batch of 2 samples whose phase k is the same positive image times ``constants[k]``."""
    rng = np.random.default_rng(seed)
    image = 1.0 + rng.random((2, 1, *size)).astype(np.float32) * 3.0
    data = (image * np.asarray(constants, np.float32)[None, :, None, None, None]).astype(np.float32)
    seg = np.stack([(image[:, 0] > 2.5), np.ones_like(image[:, 0], bool)], axis=1).astype(np.float32)
    return {"data": data, "seg": seg}


def test_spatial_augmentation_moves_every_phase_alike() -> None:
    constants = [1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    settings = aug(probability_spatial=1.0, **NO_INTENSITY)
    size = extraction_size(PATCH, settings)
    batch = scaled_phases(size, constants)
    unaugmented = center_crop(batch["data"], PATCH)
    np.random.seed(0)
    out = build_transforms(PATCH, settings)(**{k: v.copy() for k, v in batch.items()})
    data = out["data"]
    assert data.shape == (2, 6, *PATCH) and out["seg"].shape == (2, 2, *PATCH)
    assert np.abs(data - unaugmented).max() > 0.1  # the transform did move the voxels
    for k, c in enumerate(constants):
        np.testing.assert_allclose(data[:, k], data[:, 0] * c, rtol=1e-4, atol=1e-4)
    # the lesion label moved with the image: it still marks where the (shared) image is bright
    lesion = out["seg"][:, 0] > 0.5
    assert data[:, 0][lesion].mean() > data[:, 0][~lesion].mean() + 0.5


def test_intensity_augmentation_keeps_the_order_of_phase_means() -> None:
    constants = [1.0, 1.3, 1.6, 1.9, 2.2, 2.5]
    settings = aug(probability_spatial=1.0, probability_gamma=1.0, probability_multiplicative=1.0,
                   probability_noise=1.0)
    transforms = build_transforms(PATCH, settings)
    size = extraction_size(PATCH, settings)
    changed = 0
    for seed in range(5):
        batch = scaled_phases(size, constants, seed)
        np.random.seed(seed)
        random.seed(seed)
        data = transforms(**{k: v.copy() for k, v in batch.items()})["data"]
        plain = center_crop(batch["data"], PATCH)
        means = data.mean(axis=(2, 3, 4))
        assert (np.diff(means, axis=1) > 0).all(), means
        ratios = data[:, 1:].mean(axis=(2, 3, 4)) / data[:, :1].mean(axis=(2, 3, 4))
        changed += int(not np.allclose(ratios, np.asarray(constants[1:]) / constants[0], rtol=1e-3))
        assert not np.allclose(data, plain)
    assert changed > 0  # gamma / noise did act on the intensities


# ----- validation patches --------------------------------------------------------------------------------
def test_validation_patches_are_fixed_and_hit_the_lesion(case_folder: Path) -> None:
    batches = validation_batches(case_folder, ["lesion_a", "healthy"], PATCH, 2)
    assert [len(b["data"]) for b in batches] == [2, 1]  # lesion + centre patch, then the healthy centre patch
    assert batches[0]["lesion"][0].sum() == 4 * 4 * 4 and batches[0]["lesion"][1].sum() == 0
    case = load_preprocessed(case_folder, "lesion_a")
    assert np.array_equal(batches[0]["data"][1].numpy(), case.data[:, 16:32, 16:32, 4:12])
    again = validation_batches(case_folder, ["lesion_a", "healthy"], PATCH, 2)
    assert all(torch.equal(x["data"], y["data"]) for x, y in zip(batches, again))


def test_bias_field_is_smooth_bounded_and_shared_by_all_phases() -> None:
    from iterdce.training.bias_field import BiasFieldTransform, random_bias_field

    field = random_bias_field((24, 20, 12), 0.3, np.random.default_rng(0))
    assert field.shape == (24, 20, 12)
    assert np.exp(-0.3) - 1e-5 <= field.min() and field.max() <= np.exp(0.3) + 1e-5
    assert np.log(field).max() - np.log(field).min() > 0.3  # it really varies
    assert np.abs(np.diff(np.log(field), axis=0)).max() < 0.2  # and smoothly, voxel to voxel
    base = np.random.default_rng(1).uniform(1.0, 2.0, (24, 20, 12)).astype(np.float32)
    factors = np.array([1.0, 2.5, 2.2, 1.9], np.float32)
    data = np.stack([np.stack([base * c for c in factors])])  # [1, phases, X, Y, Z], air floor 0 below
    data[0, :, 0, 0, 0] = 0.0
    np.random.seed(3)
    out = BiasFieldTransform(0.3, 1.0)(data=data.copy())["data"][0]
    assert not np.allclose(out, data[0])
    inside = base > 0
    inside[0, 0, 0] = False
    for k, c in enumerate(factors):
        np.testing.assert_allclose(out[k][inside], out[0][inside] * c, rtol=1e-5)


def test_enhancement_scale_changes_only_the_height_of_every_curve() -> None:
    from iterdce.training.enhancement_scale import EnhancementScaleTransform

    rng = np.random.default_rng(4)
    data = rng.normal(0.0, 1.0, (3, 5, 6, 6, 4)).astype(np.float32)  # [B, phases, X, Y, Z]
    doubled = EnhancementScaleTransform((2.0, 2.0), 1.0)(data=data.copy())["data"]
    np.testing.assert_array_equal(doubled[:, 0], data[:, 0])  # the pre-contrast phase is kept
    np.testing.assert_allclose(doubled[:, 1:] - doubled[:, :1], 2.0 * (data[:, 1:] - data[:, :1]), rtol=1e-5,
                               atol=1e-5)
    np.random.seed(7)
    drawn = EnhancementScaleTransform((0.67, 1.5), 1.0)(data=data.copy())["data"]
    for b in range(3):  # one factor per sample, within the range, shared by every phase and voxel
        factor = (drawn[b, 1:] - drawn[b, :1]) / (data[b, 1:] - data[b, :1])
        assert 0.67 - 1e-4 <= float(np.median(factor)) <= 1.5 + 1e-4
        np.testing.assert_allclose(factor, np.median(factor), rtol=1e-3)
    np.random.seed(7)
    again = EnhancementScaleTransform((0.67, 1.5), 1.0)(data=data.copy())["data"]
    np.testing.assert_array_equal(drawn, again)  # deterministic per seed
    np.random.seed(7)
    state = np.random.get_state()[1].copy()
    off = EnhancementScaleTransform((0.67, 1.5), 0.0)(data=data.copy())["data"]
    np.testing.assert_array_equal(off, data)
    assert np.array_equal(np.random.get_state()[1], state)  # off draws nothing: older runs keep their streams


def test_enhancement_scale_is_off_by_default_and_checked_by_the_plan() -> None:
    assert AugmentationPlan().probability_enhancement_scale == 0.0
    bad = AugmentationPlan(enhancement_scale_range=(0.0, 1.5))
    assert any("enhancement_scale_range must be positive" in p for p in bad.problems())
    names = [type(t).__name__ for t in build_transforms([8, 8, 4], AugmentationPlan()).transforms]
    assert names.index("EnhancementScaleTransform") < names.index("GammaTransform")
