"""``plan_and_preprocess``: verify -> fingerprint -> plan -> preprocess every case -> splits.

Every file is written atomically; finished cases are skipped on a rerun, so an interrupted run resumes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iterdce.core.atomic import copy_atomic, remove_stale_temporaries, write_atomic, write_json_atomic
from iterdce.core.errors import JSONFileError
from iterdce.core.file_names import archive_name, sidecar_name
from iterdce.core.folder_names import plans_data_folder_name
from iterdce.core.json_io import read_json
from iterdce.core.parallel import map_with_progress
from iterdce.dataset.layout import CaseFiles, discover_cases
from iterdce.dataset.schema import load_dataset_json
from iterdce.dataset.verify import require_valid_dataset
from iterdce.preprocessing.case_files import case_problem, read_sidecar, save_npz
from iterdce.preprocessing.case_io import load_canonical
from iterdce.preprocessing.case_properties import CaseSidecar
from iterdce.preprocessing.fingerprint import FINGERPRINT_FILE, compute_fingerprint, write_fingerprint
from iterdce.preprocessing.fingerprint_schema import DatasetFingerprint
from iterdce.preprocessing.normalization import NormalizationError
from iterdce.preprocessing.plan_schema import Plans
from iterdce.preprocessing.planner import plan_experiment, plan_summary
from iterdce.preprocessing.plans_io import load_plans, save_plans
from iterdce.preprocessing.preprocessor import preprocess_canonical
from iterdce.preprocessing.splits import SPLITS_FILE, case_strata, load_or_create_splits


def plan_key(plans: Plans) -> str:
    """Hash of the plan entries that change preprocessed arrays; a case done under another key is redone."""
    relevant = {"spacing": list(plans.spacing), "reference_phase": plans.reference_phase,
                "input_phases": list(plans.input_phases), "orientation": plans.orientation,
                "mask": plans.normalization.mask}
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def data_folder(preprocessed_dataset: Path, plans_name: str) -> Path:
    """Where the preprocessed cases of a plan live."""
    return preprocessed_dataset / plans_data_folder_name(plans_name)


def source_signature(cases: dict[str, CaseFiles], dataset_dir: Path) -> str:
    """Names, sizes and modification times of every raw file: changes when the raw data changes."""
    entries = [str((dataset_dir / "dataset.json").stat().st_mtime_ns)]
    for files in cases.values():
        for path in [*files.image_files, files.label, files.mask, files.times]:
            if path is not None:
                stat = path.stat()
                entries.append(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(entries).encode()).hexdigest()[:16]


def case_is_done(out_dir: Path, case_id: str, key: str) -> bool:
    """Both files present, the sidecar from this plan, and the archive complete with arrays of the right shape.

    Only the sizes and array headers are read, so checking a large preprocessed dataset on a rerun stays fast.
    """
    if case_problem(out_dir, case_id) is not None:
        return False
    sidecar = read_sidecar(out_dir, case_id)
    return sidecar.plan_key == key and sidecar.npz_sha256 is not None


@dataclass(frozen=True)
class PreprocessJob:
    files: CaseFiles
    phase_times_s: tuple[float, ...]
    spacing: tuple[float, ...]
    reference_phase: int
    mask_kind: str
    input_phases: tuple[int, ...]
    out_dir: Path
    key: str


def run_preprocess_job(job: PreprocessJob) -> str:
    """Preprocess one case and write ``<case>.npz`` then ``<case>.json`` (the sidecar marks completion)."""
    case_id = job.files.case_id
    canonical = load_canonical(job.files, job.phase_times_s, job.mask_kind, job.input_phases)
    try:
        result = preprocess_canonical(canonical, job.spacing, job.reference_phase, job.mask_kind)
    except NormalizationError as exc:
        files = ", ".join(str(p) for p in job.files.image_files)
        raise NormalizationError(f"case {case_id} ({files}): {exc}") from exc
    del canonical

    digest: dict[str, Any] = {}

    def save(tmp: Path) -> None:
        digest.update(save_npz(tmp, {"data": result.data, "lesion": result.lesion,
                                     "mask": result.mask.astype(np.uint8)}))

    write_atomic(job.out_dir / archive_name(case_id), save)
    sidecar = CaseSidecar(result.properties, job.key, digest["npz_size"], digest["npz_sha256"])
    write_json_atomic(job.out_dir / sidecar_name(case_id), sidecar.to_dict())
    return case_id


def copy_if_changed(source_dir: Path, out_dir: Path, names: tuple[str, ...]) -> None:
    """Copy the files ``names`` that exist in ``source_dir`` unless an identical copy is there (atomically)."""
    for name in names:
        source, target = source_dir / name, out_dir / name
        if source.is_file() and not (target.is_file() and target.read_bytes() == source.read_bytes()):
            copy_atomic(source, target)


def fingerprint_for(dataset_dir: Path, out_dir: Path, cases: dict[str, CaseFiles], num_processes: int,
                    progress: bool) -> DatasetFingerprint:
    """Reuse the written fingerprint when the raw files are unchanged, else compute and write it."""
    signature = source_signature(cases, dataset_dir)
    path = out_dir / FINGERPRINT_FILE
    if path.is_file():
        try:
            existing = DatasetFingerprint.from_dict(read_json(path, expect=dict))
            if existing.source_signature == signature:
                return existing
        except (JSONFileError, ValueError):
            pass  # written anew below
    fingerprint = dataclasses.replace(compute_fingerprint(dataset_dir, num_processes, progress),
                                      source_signature=signature)
    write_fingerprint(fingerprint, out_dir)
    return fingerprint


def plan_and_preprocess(dataset_dir: Path, preprocessed_root: Path, num_processes: int = 1,
                        preset: str = "default", gpu_memory_gb: float = 8.0, plans_name: str = "plans",
                        replan: bool = False, progress: bool = True, log: Callable[..., Any] = print) -> Plans:
    """The whole self-configuration of a dataset (verify, fingerprint, plan, preprocess, split); resumable.

    Args:
        dataset_dir: raw dataset folder (``DatasetNNN_Name`` with dataset.json).
        preprocessed_root: root under which ``<DatasetNNN_Name>/`` is written.
        num_processes: worker processes for fingerprinting and preprocessing.
        preset: planner preset (presets.PRESETS), e.g. ``default`` or ``tiny``.
        gpu_memory_gb: training memory budget the patch and batch are fitted to.
        plans_name: plan file name without ``.json``; its cases go to ``<plans_name>_data/``.
        replan: plan anew even when the plan file exists (else the existing plan is reused).
        progress: show progress bars.
        log: where the summary lines go.

    Returns:
        The plan used.
    """
    require_valid_dataset(dataset_dir, progress=progress)
    info = load_dataset_json(dataset_dir)
    cases = discover_cases(dataset_dir).cases
    out_dir = preprocessed_root / dataset_dir.name
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out_dir, data_folder(out_dir, plans_name))
    fingerprint = fingerprint_for(dataset_dir, out_dir, cases, num_processes, progress)
    plans_path = out_dir / f"{plans_name}.json"
    if plans_path.is_file() and not replan:
        plans = load_plans(plans_path)
        log(f"using the existing plan {plans_path} (pass --replan to plan anew)")
    else:
        plans = plan_experiment(fingerprint, preset, gpu_memory_gb, plans_name,
                                med3d_weights=None)
        save_plans(plans, plans_path)
    copy_if_changed(dataset_dir, out_dir, ("dataset.json", "cases.csv"))
    key = plan_key(plans)
    data_dir = data_folder(out_dir, plans_name)
    data_dir.mkdir(exist_ok=True)
    todo = [files for case_id, files in cases.items() if not case_is_done(data_dir, case_id, key)]
    if len(todo) < len(cases):
        log(f"{len(cases) - len(todo)} case(s) already preprocessed, {len(todo)} to do")
    jobs = [PreprocessJob(files, info.phase_times_s, plans.spacing, plans.reference_phase,
                          plans.normalization.mask, plans.input_phases, data_dir, key)
            for files in todo]
    map_with_progress(run_preprocess_job, jobs, num_processes, desc="preprocess", progress=progress)
    presence = {c.case: c.lesion_count > 0 for c in fingerprint.cases}
    strata = case_strata(sorted(cases), dataset_dir / "cases.csv", presence)
    splits = load_or_create_splits(out_dir, strata)
    split_cases = {c for fold in splits for c in fold["val"]}
    if split_cases != set(cases):
        log(f"warning: {out_dir / SPLITS_FILE} was written for other cases ({len(split_cases)} in the folds, "
            f"{len(cases)} in the dataset); delete it to split anew")
    log(plan_summary(plans))
    log("  protocols         " + "; ".join(f"{p.num_phases} phases: {p.cases} case(s), last at "
                                           f"{p.times_min_s[-1]:.0f}-{p.times_max_s[-1]:.0f} s"
                                           for p in fingerprint.protocols))
    log(f"  folds             {len(splits)} (validation sizes {[len(s['val']) for s in splits]})")
    log(f"  written to        {out_dir}")
    return plans
