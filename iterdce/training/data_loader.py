"""Training patches: foreground-aware pairs (a lesion-centred patch + a random patch) from preprocessed cases.

Every batch is a pure function of (seed, rank, batch index), whichever worker builds it; this is what
makes a resumed run bit-identical to an uninterrupted one and gives each DDP rank its own samples.
"""
from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from iterdce.core.parallel import interrupts_blocked
from iterdce.preprocessing.case_files import CaseArrays, load_preprocessed
from iterdce.preprocessing.plan_schema import AugmentationPlan
from iterdce.training.augmentation import build_transforms, center_crop, extraction_size

CASE_CACHE_SIZE = 32


def extract_patch(array: np.ndarray, center: Sequence[int], size: Sequence[int], fill: np.ndarray | float
                  ) -> np.ndarray:
    """``size`` region of the last three axes around ``center``; outside the array is ``fill`` (per channel)."""
    spatial = array.shape[-3:]
    lo = [int(c) - s // 2 for c, s in zip(center, size)]
    out = np.empty(array.shape[:-3] + tuple(size), dtype=array.dtype)
    out[...] = np.asarray(fill, dtype=array.dtype).reshape((-1,) + (1,) * 3) if np.ndim(fill) else fill
    src = tuple(slice(max(0, l), min(n, l + s)) for l, s, n in zip(lo, size, spatial))
    dst = tuple(slice(a.start - l, a.stop - l) for a, l in zip(src, lo))
    if all(a.stop > a.start for a in src):
        target: tuple[Any, ...] = (..., *dst)
        source: tuple[Any, ...] = (..., *src)
        out[target] = array[source]
    return out


def pad_phases(volumes: Sequence[np.ndarray], times: Sequence[np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cases of different protocols in one batch: each ``[P_i, ...]`` padded to the longest, ``[B, P, ...]``.

    A padded phase repeats the case's last phase and its time continues the last gap, so the unrolled steps
    past a case's end see finite, plausible values; ``valid`` [B, P] (1 for a real phase, 0 for padding) lets
    the loss leave them out, so nothing is learned from an invented phase.
    """
    longest = max(len(t) for t in times)
    data, padded_times, valid = [], [], []
    for volume, own in zip(volumes, times):
        extra = longest - len(own)
        gap = float(own[-1] - own[-2])
        data.append(np.concatenate([volume, np.repeat(volume[-1:], extra, axis=0)]) if extra else volume)
        padded_times.append(np.concatenate([own, own[-1] + gap * np.arange(1, extra + 1)]))
        valid.append(np.arange(longest) < len(own))
    return np.stack(data), np.stack(padded_times).astype(np.float32), np.stack(valid).astype(np.float32)


def random_center(rng: np.random.Generator, shape: Sequence[int], size: Sequence[int]) -> list[int]:
    """Uniform centre keeping the patch inside the volume where the volume is large enough."""
    centers = []
    for n, s in zip(shape, size):
        low, high = (s // 2, n - s + s // 2) if n >= s else (n // 2, n // 2)
        centers.append(int(rng.integers(low, high + 1)))
    return centers


class PatchSampler:
    """Builds batch ``index`` of a fold's training cases: pairs of lesion-centred + random patches, padded to the
    batch's longest case (``pad_phases``) when the cases' protocols differ."""

    def __init__(self, folder: Path, case_ids: Sequence[str], patch_size: Sequence[int], batch_size: int,
                 augmentation: AugmentationPlan | None, seed: int, rank: int = 0) -> None:
        if not case_ids:
            raise ValueError("no training cases")
        self.folder, self.case_ids = Path(folder), list(case_ids)
        self.patch_size, self.batch_size = [int(p) for p in patch_size], int(batch_size)
        self.extract_size = extraction_size(self.patch_size, augmentation)
        self.transforms = build_transforms(self.patch_size, augmentation)
        self.seed, self.rank = int(seed), int(rank)
        self._cache: OrderedDict[str, CaseArrays] = OrderedDict()

    def case(self, case_id: str) -> CaseArrays:
        """Cached load (least recently used cases are dropped)."""
        if case_id in self._cache:
            self._cache.move_to_end(case_id)
            return self._cache[case_id]
        arrays = load_preprocessed(self.folder, case_id)
        self._cache[case_id] = arrays
        if len(self._cache) > CASE_CACHE_SIZE:
            self._cache.popitem(last=False)
        return arrays

    def _sample(self, rng: np.random.Generator, case: CaseArrays, lesion_centred: bool) -> dict[str, np.ndarray]:
        shape = case.data.shape[1:]
        if lesion_centred and len(case.lesion_voxels):
            center = case.lesion_voxels[rng.integers(len(case.lesion_voxels))].tolist()
        else:
            center = random_center(rng, shape, self.extract_size)
        return {"data": extract_patch(case.data, center, self.extract_size, case.fill),
                "seg": extract_patch(case.seg, center, self.extract_size, 0.0)}

    def batch(self, index: int) -> dict[str, np.ndarray]:
        """Batch ``index``: a deterministic function of (seed, rank, index)."""
        sequence = np.random.SeedSequence([self.seed, self.rank, int(index)])
        rng = np.random.default_rng(sequence)
        samples, times, lesion_flags = [], [], []
        for slot in range(self.batch_size):
            if slot % 2 == 0:
                case_id = self.case_ids[int(rng.integers(len(self.case_ids)))]
                case = self.case(case_id)
            lesion_centred = slot % 2 == 0 and len(case.lesion_voxels) > 0
            samples.append(self._sample(rng, case, lesion_centred))
            times.append(case.times_s)
            lesion_flags.append(lesion_centred)
        data, padded_times, valid = pad_phases([s["data"] for s in samples], times)
        batch = {"data": data, "seg": np.stack([s["seg"] for s in samples])}
        if self.transforms is not None:
            # batchgenerators draws from numpy's global RNG and (Gaussian noise variance) from Python's
            # ``random``: seed both from the batch's own sequence so no outside state leaks in
            numpy_seed, python_seed = (int(v) for v in sequence.generate_state(2))
            np.random.seed(numpy_seed)
            random.seed(python_seed)
            batch = self.transforms(**batch)
        elif self.extract_size != self.patch_size:
            batch = {k: center_crop(v, self.patch_size) for k, v in batch.items()}
        return {
            "data": np.ascontiguousarray(batch["data"], dtype=np.float32),
            "lesion": np.ascontiguousarray(batch["seg"][:, :1] > 0.5, dtype=np.float32),
            "mask": np.ascontiguousarray(batch["seg"][:, 1:2] > 0.5, dtype=np.float32),
            "times": padded_times,
            "valid": valid,
            "lesion_centred": np.asarray(lesion_flags),
        }


class BatchDataset(Dataset):
    """Map-style view of a PatchSampler: item ``i`` is global batch ``i``."""

    def __init__(self, sampler: PatchSampler, indices: Sequence[int]) -> None:
        self.sampler, self.indices = sampler, list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in self.sampler.batch(self.indices[item]).items()}


def make_loader(sampler: PatchSampler, start: int, stop: int, num_workers: int, pin_memory: bool) -> DataLoader:
    """Batches ``start`` .. ``stop - 1`` in order, built by ``num_workers`` background processes (0: inline)."""
    return DataLoader(BatchDataset(sampler, range(start, stop)), batch_size=None, shuffle=False,
                      num_workers=num_workers, pin_memory=pin_memory,
                      prefetch_factor=4 if num_workers > 0 else None, persistent_workers=False)


def start_workers(loader: DataLoader) -> Iterator[dict[str, torch.Tensor]]:
    """``iter(loader)``, which starts its worker processes, with Ctrl-C blocked meanwhile (``interrupts_blocked``)."""
    with interrupts_blocked():
        return iter(loader)


def validation_batches(folder: Path, case_ids: Sequence[str], patch_size: Sequence[int], batch_size: int
                       ) -> list[dict[str, torch.Tensor]]:
    """Fixed validation patches: per case one at the lesion's centre of mass (if any) and one at the centre."""
    samples = []
    for case_id in case_ids:
        case = load_preprocessed(Path(folder), case_id)
        shape = case.data.shape[1:]
        centers = [[n // 2 for n in shape]]
        if len(case.lesion_voxels):
            centers.insert(0, np.round(case.lesion_voxels.mean(axis=0)).astype(int).tolist())
        for center in centers:
            seg = extract_patch(case.seg, center, patch_size, 0.0)
            samples.append({
                "data": extract_patch(case.data, center, patch_size, case.fill),
                "lesion": seg[:1],
                "mask": seg[1:],
                "times": case.times_s,
            })
    batches = []
    for start in range(0, len(samples), batch_size):
        chunk = samples[start:start + batch_size]
        data, times, valid = pad_phases([s["data"] for s in chunk], [s["times"] for s in chunk])
        arrays = {"data": data, "times": times, "valid": valid,
                  **{k: np.stack([s[k] for s in chunk]) for k in ("lesion", "mask")}}
        batches.append({k: torch.from_numpy(v.astype(np.float32)) for k, v in arrays.items()})
    return batches
