"""Dataset fingerprint: geometry, timing and intensity statistics of every case, for the planner."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from scipy import ndimage

from iterdce.core.atomic import write_json_atomic
from iterdce.core.parallel import map_with_progress
from iterdce.dataset.layout import CaseFiles, discover_cases
from iterdce.dataset.schema import load_acquisition_facts, load_dataset_json
from iterdce.preprocessing.case_io import load_canonical
from iterdce.preprocessing.cropping import nonzero_box
from iterdce.preprocessing.fingerprint_schema import (
    CaseFingerprint,
    DatasetFingerprint,
    PhaseStatistics,
    ProtocolSummary,
)
from iterdce.preprocessing.orientation import obliquity_deg

FINGERPRINT_FILE = "dataset_fingerprint.json"


@dataclass(frozen=True)
class CaseJob:
    files: CaseFiles
    phase_times_s: tuple[float, ...]
    mask_kind: str
    input_phases: tuple[int, ...]


def phase_statistics(phase: np.ndarray, mask: np.ndarray) -> PhaseStatistics:
    values = phase[mask].astype(np.float64)  # float64: squares of large intensities overflow float32
    if values.size == 0:
        values = phase.ravel().astype(np.float64)
    p005, median, p995 = np.percentile(values, [0.5, 50.0, 99.5])
    return PhaseStatistics(float(values.mean()), float(values.std()), float(median), float(p005), float(p995))


def _relative_enhancement(image: np.ndarray, region: np.ndarray) -> tuple[float, ...] | None:
    """(mean_k - mean_0) / mean_0 over ``region`` for every phase k; None for an empty region."""
    if not region.any():
        return None
    means = np.array([float(phase[region].mean(dtype=np.float64)) for phase in image])
    return tuple(float(v) for v in (means - means[0]) / max(abs(means[0]), 1e-8))


def fingerprint_case(job: CaseJob) -> CaseFingerprint:
    """Everything the planner needs to know about one case."""
    canonical = load_canonical(job.files, job.phase_times_s, job.mask_kind, job.input_phases)
    image, mask = canonical.image, canonical.norm_mask.astype(bool)
    box = nonzero_box(image)
    spacing = canonical.spacing
    lesion = canonical.lesion if canonical.lesion is not None else np.zeros(image.shape[1:], np.int16)
    labels = [int(v) for v in np.unique(lesion) if v > 0]
    count = len(labels) if len(labels) > 1 else int(ndimage.label(lesion > 0)[1])
    voxel_ml = float(np.prod(spacing)) / 1000.0
    acquisition = load_acquisition_facts(job.files.times)
    return CaseFingerprint(
        case=job.files.case_id,
        spacing=tuple(float(s) for s in spacing),
        shape=tuple(int(s) for s in image.shape[1:]),
        shape_after_crop=tuple(int(b - a) for a, b in box),
        phase_times_s=tuple(float(t) for t in canonical.case.times_s),
        phases=tuple(phase_statistics(phase, mask) for phase in image),
        mask_voxels=int(mask.sum()),
        has_lesion_labels=canonical.lesion is not None,
        lesion_count=count,
        lesion_volume_ml=float((lesion > 0).sum() * voxel_ml),
        lesion_relative_enhancement=_relative_enhancement(image, lesion > 0),
        breast_relative_enhancement=_relative_enhancement(image, mask),
        oblique_deg=obliquity_deg(canonical.affine),
        field_strength_t=acquisition.field_strength_t,
        fat_suppression=acquisition.fat_suppression,
    )


def protocols_found(cases: Sequence[CaseFingerprint]) -> tuple[ProtocolSummary, ...]:
    """The protocols of the cases, one entry per phase count: how many cases, and the earliest and latest time
    of each phase among them (equal for a fixed protocol; a spread for per-case timing)."""
    by_count: dict[int, list[tuple[float, ...]]] = {}
    for case in cases:
        by_count.setdefault(len(case.phase_times_s), []).append(case.phase_times_s)
    return tuple(ProtocolSummary(n, len(times), tuple(float(t) for t in np.min(times, axis=0)),
                                 tuple(float(t) for t in np.max(times, axis=0)))
                 for n, times in sorted(by_count.items()))


def compute_fingerprint(dataset_dir: Path, num_processes: int = 1, progress: bool = True,
                        mask_kind: str = "foreground") -> DatasetFingerprint:
    """Fingerprint of the raw dataset at ``dataset_dir`` (not written); intensities inside the TI-norm mask."""
    info = load_dataset_json(dataset_dir)
    discovery = discover_cases(dataset_dir)
    jobs = [CaseJob(files, info.phase_times_s, mask_kind, info.input_phases) for files in discovery.cases.values()]
    cases = map_with_progress(partial(fingerprint_case), jobs, num_processes, desc="fingerprint", progress=progress)
    return DatasetFingerprint(
        dataset=dataset_dir.name,
        layout=discovery.layout,
        num_phases=info.num_phases,
        phase_times_s=tuple(float(t) for t in info.phase_times_s),
        protocols=protocols_found(cases),
        input_phases=tuple(info.input_phases),
        reference_phase=info.reference_phase,
        mask_kind=mask_kind,
        has_breast_masks=all(files.mask is not None for files in discovery.cases.values()),
        orientation="RAS (cases reoriented to the closest canonical voxel order)",
        cases=tuple(cases),
    )


def write_fingerprint(fingerprint: DatasetFingerprint, out_dir: Path) -> Path:
    """Write ``dataset_fingerprint.json`` atomically into ``out_dir``."""
    path = out_dir / FINGERPRINT_FILE
    write_json_atomic(path, fingerprint.to_dict())
    return path
