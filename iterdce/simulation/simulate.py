"""Top level of the phantom: simulate and write a whole dataset, optionally with a process pool."""
from __future__ import annotations

import multiprocessing
import numbers
import os
import re
import shutil
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from iterdce.core.errors import UsageError
from iterdce.core.owned_outputs import check_replaceable, move_into_place, staging_folder, write_manifest
from iterdce.core.parallel import ignore_interrupts
from iterdce.simulation.case import case_id_for, simulate_case
from iterdce.simulation.config import DEFAULT_TIMES_S, SimulationConfig
from iterdce.simulation.sites import SiteProfile, site_nominal_times, site_profile
from iterdce.simulation.writer import (
    ACQUISITION_COLUMNS,
    write_case,
    write_cases_csv,
    write_dataset_json,
    write_table,
)

COMMAND = "iterdce_simulate"


@dataclass(frozen=True)
class DatasetSummary:
    """What was written: the folder, case ids, lesion rows (as in cases.csv) and the count per curve type."""

    dataset_dir: Path
    case_ids: list[str]
    lesion_rows: list[dict[str, Any]]
    curve_type_counts: dict[str, int]


def _simulate_and_write(
    task: tuple[str, int, int, SimulationConfig, str]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Worker: simulate one case, write its files, return its lesion rows and acquisition row (small)."""
    dataset_dir, seed, index, config, prefix = task
    case = simulate_case(seed, index, config, case_prefix=prefix)
    write_case(Path(dataset_dir), case, config.timing_jitter_s > 0 or config.site is not None or bool(config.protocols))
    return case.lesion_rows, case.acquisition


def simulate_dataset(
    dataset_dir: str | os.PathLike[str],
    num_cases: int = 40,
    *,
    shape: Sequence[int] = (128, 128, 48),
    spacing: Sequence[float] = (1.6, 1.6, 2.0),
    seed: int = 0,
    snr: float = 40.0,
    timing_jitter_s: float = 0.0,
    fat_suppression: bool = True,
    motion_mm: float = 0.0,
    phase_times_s: Sequence[float] = DEFAULT_TIMES_S,
    jobs: int = 1,
    overwrite: bool = False,
    progress: bool = False,
    site: SiteProfile | str | None = None,
    case_prefix: str = "phantom",
    protocols: Sequence[Sequence[float]] = (),
    early_frames: int = 0,
) -> DatasetSummary:
    """Write a synthetic raw dataset (documentation/simulation.md) into ``dataset_dir``.

    With ``site`` (a profile or a built-in name A-F) every case draws spacing, orientation, SNR, protocol
    and the rest from the site's ranges, and the fixed settings (spacing, snr, ...) are not used.
    Each case depends only on (seed, case index) and the settings, so any ``jobs`` gives identical files.
    ``case_prefix`` names the cases ``<prefix>_000``, ... (distinct prefixes let site datasets be merged).
    ``protocols`` (e.g. config.MIXED_PROTOCOLS): case i is acquired with protocols[i % len] and gets a timing
    sidecar; dataset.json's ``phase_times_s`` (the default protocol) is then the first of them.
    ``early_frames`` k >= 1: every protocol becomes pre-contrast, k ultrafast frames at 20-90 s and its delayed
    phases after them (early_frames.py); dataset.json's ``input_phases`` is then [0, ..., k].
    The dataset is assembled in a hidden folder beside ``dataset_dir`` and moved into place when complete;
    ``overwrite`` replaces only a dataset iterdce_simulate wrote there (owned_outputs.py).
    """
    for name, value, low in (("number of cases", num_cases, 1), ("seed", seed, 0), ("jobs", jobs, 1)):
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
            raise UsageError(f"{name} must be an integer of at least {low}, got {value!r}")
    num_cases, seed, jobs = int(num_cases), int(seed), int(jobs)
    if not isinstance(case_prefix, str) or not re.fullmatch(r"[A-Za-z0-9]+", case_prefix):
        raise UsageError(f"case prefix must be letters and digits only, got {case_prefix!r}")
    profile = site_profile(site) if isinstance(site, str) else site
    if profile is not None:
        phase_times_s = site_nominal_times(profile)
    if protocols:
        phase_times_s = protocols[0]
    config = SimulationConfig(
        shape=tuple(int(s) for s in shape), spacing=tuple(float(s) for s in spacing),
        phase_times_s=tuple(float(t) for t in phase_times_s), snr=float(snr),
        timing_jitter_s=float(timing_jitter_s), fat_suppression=bool(fat_suppression),
        motion_mm=float(motion_mm), site=profile, protocols=tuple(tuple(float(t) for t in p) for p in protocols),
        early_frames=early_frames,
    )
    config.validate()
    dataset_dir = Path(dataset_dir)
    check_replaceable(dataset_dir, COMMAND, overwrite)
    staging = staging_folder(dataset_dir)
    try:
        rows, acquisitions = _simulate_cases(staging, num_cases, seed, config, case_prefix, jobs, progress)
        write_cases_csv(staging / "cases.csv", rows)
        write_table(staging / "acquisition.csv", acquisitions, ACQUISITION_COLUMNS)
        write_dataset_json(staging, num_cases, seed, config, name_from=dataset_dir)
        write_manifest(staging, COMMAND)
        move_into_place(staging, dataset_dir, COMMAND)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    counts = Counter(row["curve_type"] for row in rows)
    return DatasetSummary(
        dataset_dir=dataset_dir,
        case_ids=[case_id_for(i, case_prefix) for i in range(num_cases)],
        lesion_rows=rows,
        curve_type_counts={t: counts.get(t, 0) for t in ("persistent", "plateau", "washout")},
    )


def _simulate_cases(staging: Path, num_cases: int, seed: int, config: SimulationConfig, case_prefix: str,
                    jobs: int, progress: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Simulate and write every case into ``staging``; their lesion rows and acquisition rows."""
    tasks = [(str(staging), seed, index, config, case_prefix) for index in range(num_cases)]
    if jobs == 1 or num_cases == 1:
        bar = tqdm(tasks, desc="simulate", unit="case", disable=not progress)
        results = [_simulate_and_write(task) for task in bar]
    else:
        # spawn, not fork: safe when the caller has threads (torch) running
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(jobs, num_cases), mp_context=context,
                                   initializer=ignore_interrupts)
        try:
            results = list(tqdm(pool.map(_simulate_and_write, tasks), total=len(tasks), desc="simulate",
                                unit="case", disable=not progress))
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    return [row for case_rows, _ in results for row in case_rows], [acquisition for _, acquisition in results]
