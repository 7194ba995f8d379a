"""Shared test helpers: tiny raw datasets in any supported layout (``make_raw_dataset``) and a tiny
preprocessed training set with its TrainingSetup (``build_preprocessed``, ``make_setup``).

Import them as ``from tests.helpers import ...``; conftest.py wraps some as fixtures.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from benchmarks.common import toy_plan
from iterdce.dataset.nifti_io import write_image
from iterdce.preprocessing.fingerprint import compute_fingerprint
from iterdce.preprocessing.pipeline import plan_and_preprocess
from iterdce.preprocessing.plan_schema import Plans
from iterdce.preprocessing.planner import plan_experiment
from iterdce.preprocessing.plans_io import as_plans, load_plans, save_plans
from iterdce.training.data_loader import PatchSampler
from iterdce.training.run_config import TrainingSetup
from iterdce.training.trainer import Trainer

DEFAULT_TIMES_S = (0.0, 85.0, 155.0, 225.0, 295.0, 365.0)
DEFAULT_AFFINE = np.array(
    [[0.8, 0.0, 0.0, -10.0], [0.0, 0.8, 0.0, -20.0], [0.0, 0.0, 2.0, 5.0], [0.0, 0.0, 0.0, 1.0]]
)
LAYOUTS = ("flat", "per_case", "4d")


def default_times(n_phases: int) -> list[float]:
    """The paper's protocol times for up to 6 phases, else pre-contrast plus one phase every 70 s."""
    if n_phases <= len(DEFAULT_TIMES_S):
        return list(DEFAULT_TIMES_S[:n_phases])
    return [0.0] + [85.0 + 70.0 * k for k in range(n_phases - 1)]


def synthetic_case(
    shape: Sequence[int], times_s: Sequence[float], seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Phases [P, X, Y, Z] float32 (smooth, positive, enhancing), lesion labels and breast mask (uint8).

    The tissue is an ellipsoid of smooth random texture in a noisy dark background; the breast enhances
    a little and a small spherical lesion a lot, both rising with the time since injection.
    """
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    coords = np.meshgrid(*[np.linspace(-1.0, 1.0, s) for s in shape], indexing="ij")
    breast = (coords[0] / 0.85) ** 2 + (coords[1] / 0.85) ** 2 + (coords[2] / 0.95) ** 2 <= 1.0
    center = [float(rng.uniform(-0.2, 0.2)) for _ in shape]
    lesion = sum(((c - m) / 0.35) ** 2 for c, m in zip(coords, center)) <= 1.0
    texture = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=1.5)
    texture /= np.abs(texture).max() + 1e-8
    tissue = 100.0 + 25.0 * texture
    phases = []
    for t in times_s:
        uptake = 1.0 - np.exp(-max(float(t), 0.0) / 120.0)
        noise = np.abs(rng.normal(0.0, 2.0, shape))
        enhanced = tissue * (1.0 + 0.2 * uptake * breast + 1.5 * uptake * lesion)
        phases.append(np.where(breast, enhanced, 5.0) + noise + 0.5)
    image = np.stack(phases).astype(np.float32)
    return image, (lesion & breast).astype(np.uint8), breast.astype(np.uint8)


def _write_case(
    dataset_dir: Path, layout: str, case_id: str, image: np.ndarray, lesion: np.ndarray, breast: np.ndarray,
    affine: np.ndarray, with_masks: bool,
) -> None:
    if layout == "4d":
        write_image(dataset_dir / "imagesTr" / f"{case_id}.nii.gz", np.moveaxis(image, 0, -1), affine)
    else:
        folder = dataset_dir / ("imagesTr" if layout == "flat" else f"images/{case_id}")
        for phase, volume in enumerate(image):
            write_image(folder / f"{case_id}_{phase:04d}.nii.gz", volume, affine)
    if with_masks:
        labels, masks = ("segmentations", "masks") if layout == "per_case" else ("labelsTr", "masksTr")
        write_image(dataset_dir / labels / f"{case_id}.nii.gz", lesion, affine)
        write_image(dataset_dir / masks / f"{case_id}.nii.gz", breast, affine)


def make_raw_dataset(
    root: Path,
    n_cases: int = 2,
    shape: Sequence[int] = (16, 16, 8),
    n_phases: int = 4,
    layout: str = "flat",
    affine: np.ndarray | None = None,
    with_masks: bool = True,
    times: Sequence[float] | None = None,
    case_times: Mapping[str, Sequence[float]] | None = None,
    dataset_id: int = 1,
    name: str = "Phantom",
    seed: int = 0,
) -> Path:
    """Write a small valid raw dataset ``root/DatasetNNN_<name>`` and return its folder.

    ``layout``: ``flat`` (imagesTr/labelsTr/masksTr), ``per_case`` (MAMA-MIA images/<case>/,
    segmentations/, masks/) or ``4d`` (one 4D imagesTr/<case>.nii.gz). Cases are ``case_000``,
    ``case_001``, ...; case ``k`` has the same voxels in every layout for a given ``seed``.
    ``times`` goes into dataset.json (default: the paper's protocol); ``case_times`` writes
    ``timesTr/<case>.json`` sidecars, and the case's voxels then follow its own times.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    times = list(times) if times is not None else default_times(n_phases)
    if len(times) != n_phases:
        raise ValueError(f"{len(times)} times for {n_phases} phases")
    affine = DEFAULT_AFFINE if affine is None else np.asarray(affine, dtype=np.float64)
    dataset_dir = Path(root) / f"Dataset{dataset_id:03d}_{name}"
    dataset_dir.mkdir(parents=True, exist_ok=False)
    case_times = dict(case_times or {})
    unknown = set(case_times) - {f"case_{i:03d}" for i in range(n_cases)}
    if unknown:
        raise ValueError(f"case_times for cases that are not written: {sorted(unknown)}")
    for index in range(n_cases):
        case_id = f"case_{index:03d}"
        own_times = case_times.get(case_id, times)
        image, lesion, breast = synthetic_case(shape, own_times, seed=seed * 1000 + index)
        _write_case(dataset_dir, layout, case_id, image, lesion, breast, affine, with_masks)
        if case_id in case_times:
            (dataset_dir / "timesTr").mkdir(exist_ok=True)
            payload = {"phase_times_s": [float(t) for t in own_times]}
            (dataset_dir / "timesTr" / f"{case_id}.json").write_text(json.dumps(payload))
    dataset_json = {
        "name": name,
        "description": f"tiny synthetic test dataset ({layout} layout)",
        "file_ending": ".nii.gz",
        "phase_times_s": times,
        "numTraining": n_cases,
        "input_phases": [0, 1],
        "labels": [1],
    }
    (dataset_dir / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    return dataset_dir


DATASET = "Dataset001_Phantom"


def build_preprocessed(root: Path) -> Path:
    """6 phantom cases (24x24x8, 6 phases) preprocessed with the tiny preset, then shrunk for speed.

    plans.json is rewritten with a 2-stage [4, 8] network and a 16x16x8 patch (the CLI reads it from disk).
    Returns the preprocessed root (the dataset is ``root/preprocessed/Dataset001_Phantom``).
    """
    raw = make_raw_dataset(root / "raw", n_cases=6, shape=(24, 24, 8), n_phases=6)
    preprocessed = root / "preprocessed"
    plan_and_preprocess(raw, preprocessed, num_processes=1, preset="tiny", progress=False, log=lambda *a: None)
    path = preprocessed / DATASET / "plans.json"
    plans = load_plans(path).to_dict()
    save_plans(toy_plan(plans), path)
    return preprocessed


def make_setup(preprocessed_root: Path, results: Path, plans_change=None, **kwargs) -> TrainingSetup:
    """A CPU TrainingSetup on the shared dataset; ``plans_change(plans)`` edits a copy of the plan."""
    plans = load_plans(preprocessed_root / DATASET / "plans.json").to_dict()
    if plans_change is not None:
        plans_change(plans)
    options = {"fold": 0, "epochs": 1, "iterations_per_epoch": 2, "num_workers": 0, "device": "cpu",
               "progress": False, **kwargs}
    return TrainingSetup(preprocessed_dataset=preprocessed_root / DATASET, results_dataset=results / DATASET,
                         plans=as_plans(plans), **options)


def first_batch(trainer: Trainer) -> dict[str, torch.Tensor]:
    sampler = PatchSampler(trainer.setup.data_dir, trainer.train_cases, trainer.plans.patch_size,
                           trainer.plans.batch_size, None, seed=3)
    return {k: torch.from_numpy(v) for k, v in sampler.batch(0).items() if k != "lesion_centred"}


def tiny_model_plans(root: Path, patch: Sequence[int], network: Mapping) -> Plans:
    """A tiny-preset plan of a 2-case raw dataset written under ``root/raw``, with ``patch`` and ``network``
    (its ``in_channels`` dropped: the synthesizer sets its own channel count)."""
    raw = make_raw_dataset(root / "raw", n_cases=2, shape=(16, 16, 8), n_phases=6)
    plans = plan_experiment(compute_fingerprint(raw, 1, progress=False), preset="tiny")
    return plans.replace(patch_size=list(patch), network={k: v for k, v in network.items() if k != "in_channels"})
