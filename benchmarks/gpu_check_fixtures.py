"""What the gpu_check sections share: plans made from a synthetic fingerprint, a tiny preprocessed dataset,
trainers built as ``iterdce_train`` builds them, synthetic batches, and GPU helpers (sync counting, timing).

Nothing here reads NIfTI or needs batchgenerators, so it runs where only torch and numpy are installed.
"""
from __future__ import annotations

import copy
import json
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import synchronize, synthetic_sidecar, toy_plan
from iterdce.core.file_names import CHECKPOINT_FINAL, archive_name
from iterdce.preprocessing.fingerprint_schema import (
    CaseFingerprint,
    DatasetFingerprint,
    PhaseStatistics,
    ProtocolSummary,
)

DATASET = "Dataset999_GpuCheck"
TIMES_S = [0.0, 85.0, 155.0, 225.0, 295.0, 365.0]


class Skip(Exception):
    """Raised by a section that does not apply here (its message says why); reported as SKIP."""


@dataclass
class Context:
    """The run's device, size and scratch folder, and what one section leaves for the next."""

    device: torch.device
    dry_run: bool
    work: Path
    placeholders: list[str]
    state: dict = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"


def fingerprint(shape: list[int], spacing: list[float]) -> DatasetFingerprint:
    """A one-case fingerprint with the paper's protocol: enough for ``plan_experiment``."""
    times = tuple(float(t) for t in TIMES_S)
    phases = tuple(PhaseStatistics(100.0, 20.0, 100.0, 0.0, 300.0) for _ in times)
    case = CaseFingerprint("case_000", tuple(spacing), tuple(shape), tuple(shape), times, phases, 1, True, 1, 1.0,
                           None, None)
    return DatasetFingerprint(DATASET, "flat", len(times), times, (ProtocolSummary(len(times), 1, times, times),),
                              (0, 1), None, "foreground", False, "RAS", (case,))


def make_plan(preset: str, dry_run: bool) -> dict:
    """The planner's plan (its JSON form) for a 256 x 256 x 96 (0.8 x 0.8 x 2 mm) cohort; ``dry_run`` shrinks it
    to toy size."""
    from iterdce.preprocessing.planner import plan_experiment

    plans = plan_experiment(fingerprint([256, 256, 96], [0.8, 0.8, 2.0]), preset).to_dict()
    if dry_run:
        toy_plan(plans, [4, 8] if preset == "tiny" else [4, 8, 16])
    return plans


def prepare_dataset(ctx: Context, plans: dict, n_cases: int = 3) -> Path:
    """``<work>/preprocessed/<DATASET>`` with splits and ``n_cases`` preprocessed cases (npz + json) of smooth noise."""
    from iterdce.preprocessing.pipeline import data_folder

    root = ctx.work / "preprocessed" / DATASET
    folder = data_folder(root, plans["plans_name"])
    folder.mkdir(parents=True, exist_ok=True)
    cases = [f"case_{i:03d}" for i in range(n_cases)]
    shape = [int(p * 1.5) for p in plans["patch_size"]]
    for index, case in enumerate(cases):
        if (folder / archive_name(case)).is_file():
            continue
        data = smooth_phases(shape, len(TIMES_S), seed=index)
        lesion = np.zeros(shape, np.uint8)
        lesion[tuple(slice(s // 3, s // 3 + max(2, s // 4)) for s in shape)] = 1
        np.savez(folder / archive_name(case), data=data, lesion=lesion, mask=np.ones(shape, np.uint8))
        (folder / f"{case}.json").write_text(json.dumps(synthetic_sidecar(case, shape, TIMES_S)))
    splits = root / "splits_final.json"
    if not splits.is_file():  # written once: DDP ranks read it while they start
        splits.write_text(json.dumps([{"train": cases[:-1], "val": cases[-1:]}]))
    return root


def smooth_phases(shape: list[int], n_phases: int, seed: int) -> np.ndarray:
    """[n_phases, *shape] float32: smooth noise that brightens with the phase index (TI-normalized scale)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 1, *shape, generator=generator)
    smooth = torch.nn.functional.avg_pool3d(noise, 3, stride=1, padding=1, count_include_pad=False)[0, 0]
    return np.stack([(smooth * (1 + 0.2 * k) + 0.1 * k).numpy() for k in range(n_phases)]).astype(np.float32)


def make_trainer(ctx: Context, trainer_class: type, plans: dict, results: str, resume: bool = False,
                 device: str | None = None):
    """``trainer_class`` on the prepared dataset, writing under ``<work>/<results>``."""
    from iterdce.preprocessing.plans_io import as_plans
    from iterdce.training.run_config import TrainingSetup

    root = prepare_dataset(ctx, plans)
    setup = TrainingSetup(root, ctx.work / results / DATASET, plans["plans_name"], fold=0, epochs=2,
                          iterations_per_epoch=2, num_workers=0, device=device or str(ctx.device), resume=resume,
                          progress=False, plans=as_plans(copy.deepcopy(plans)))
    return trainer_class(setup)


def synthetic_batch(plans: dict, device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    """A training batch as the loader makes it: data [B, P, *patch], times [B, P], lesion and mask [B, 1, ...]."""
    batch, patch = int(plans["batch_size"]), [int(p) for p in plans["patch_size"]]
    protocol = plans["input_times_s"] + plans["target_times_s"]
    data = np.stack([smooth_phases(patch, len(protocol), seed * 100 + b) for b in range(batch)])
    times = np.tile(np.asarray(protocol, np.float32), (batch, 1))
    ones = np.ones((batch, 1, *patch), np.float32)
    arrays = {"data": data, "times": times, "lesion": ones * 0, "mask": ones}
    return {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}


def parameters_vector(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().float().flatten() for p in model.parameters()])


@contextmanager
def count_syncs(device: torch.device) -> Iterator[list[str]]:
    """Messages of the host synchronisations inside the block (CUDA's sync debug mode; empty on CPU)."""
    found: list[str] = []
    if device.type != "cuda":
        yield found
        return
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode("default")
    found.extend(str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message))


@contextmanager
def cudnn_flags(benchmark: bool, deterministic: bool) -> Iterator[None]:
    """Set cuDNN's autotuning / determinism for a block and restore them after."""
    before = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = benchmark, deterministic
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = before


def peak_bytes(ctx: Context, run: Callable[[], object]) -> tuple[object, int]:
    """(``run()``, CUDA memory allocated at its peak above what was allocated before; 0 on CPU)."""
    if not ctx.cuda:
        return run(), 0
    synchronize(ctx.device)
    torch.cuda.reset_peak_memory_stats(ctx.device)
    base = torch.cuda.memory_allocated(ctx.device)
    result = run()
    synchronize(ctx.device)
    return result, torch.cuda.max_memory_allocated(ctx.device) - base


def model_folder(ctx: Context, plans: dict) -> Path:
    """A model folder (plans.json + fold_0/checkpoint_final.pth) for the predictor: the warm-up section's if
    it ran, else one written here from untrained weights (so prediction checks do not depend on training's)."""
    if "warmup_folder" in ctx.state:
        return ctx.state["warmup_folder"]
    from iterdce.training.trainer_recursive import WarmupTrainer

    trainer = make_trainer(ctx, WarmupTrainer, plans, "results_predict")
    trainer.output.mkdir(parents=True, exist_ok=True)
    trainer.copy_plans()
    trainer.save(CHECKPOINT_FINAL)
    return trainer.output.parent
