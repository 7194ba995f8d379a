"""Case-parallel prediction: which cases this process predicts, and the CPU work around the network.

- ``select_part``: a folder split into ``num_parts`` parts (``--num-parts K --part-id i``), and one part per
  process under ``torchrun`` (each rank takes its own share and its own GPU).
- ``prepare_case`` / ``finish_case``: reading + preprocessing a case, and undoing the preprocessing + writing
  it. Both are plain functions of picklable arguments, so ``-np N`` worker processes run them for the next and
  the previous cases while the main process runs the network on the current one. The single-process path calls
  the same functions, so the outputs are identical.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from iterdce.core.errors import UsageError
from iterdce.core.fault_injection import fault_point
from iterdce.core.parallel import ignore_interrupts, submit_quietly
from iterdce.dataset.case import DCECase
from iterdce.dataset.layout import CaseFiles
from iterdce.dataset.nifti_io import Geometry
from iterdce.dataset.schema import UNKNOWN_ACQUISITION, AcquisitionFacts, load_acquisition_facts
from iterdce.inference.composition import Composition, native_phases_and_prior
from iterdce.inference.export import write_kinetic_map, write_phases, write_times
from iterdce.inference.inputs import load_input_case
from iterdce.inference.ood import CaseFacts
from iterdce.inference.ood_reference import case_facts
from iterdce.inference.uncertainty import Uncertainty, write_uncertainty
from iterdce.preprocessing.case_io import CanonicalCase, to_canonical_case
from iterdce.preprocessing.case_properties import CaseProperties
from iterdce.preprocessing.plan_schema import Plans
from iterdce.preprocessing.preprocessor import PreprocessedCase, preprocess_canonical


def launcher_rank() -> tuple[int, int, int]:
    """(world size, rank, local rank) set by ``torchrun``; (1, 0, 0) for a plain process."""
    return (int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0")),
            int(os.environ.get("LOCAL_RANK", "0")))


def rank_device(preference: str) -> str:
    """Under torchrun each rank predicts on its own GPU (``cuda:LOCAL_RANK``) when ``auto``/``cuda`` is asked."""
    world, _, local_rank = launcher_rank()
    if world > 1 and preference in ("auto", "cuda"):
        import torch

        if torch.cuda.is_available():
            return f"cuda:{local_rank % torch.cuda.device_count()}"
    return preference


def effective_part(num_parts: int, part_id: int) -> tuple[int, int]:
    """(parts, this process's part): ``--num-parts``/``--part-id`` split further across the torchrun ranks."""
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise UsageError(f"--part-id {part_id} must be in 0..{num_parts - 1} (--num-parts {num_parts})")
    world, rank, _ = launcher_rank()
    return num_parts * world, part_id * world + rank


def select_part(case_ids: Sequence[str], num_parts: int, part_id: int) -> list[str]:
    """Part ``part_id`` of ``num_parts``: every ``num_parts``-th case of the sorted ids (parts differ by <= 1 case)."""
    return sorted(case_ids)[part_id::num_parts]


@dataclass
class PreparedCase:
    """A case read and preprocessed for the network: its inputs in plan space and what undoing needs."""

    case_id: str
    data: np.ndarray  # TI-normalized input phases [n_in, x, y, z] in plan space
    times_s: np.ndarray
    properties: CaseProperties
    geometry: Geometry
    image: np.ndarray  # the input phases as read, for the kinetic map
    mask: np.ndarray  # the TI-norm mask (body foreground of the inputs) on the plan grid
    facts: CaseFacts  # what the out-of-distribution check compares with the training data (ood.py)


def canonical_input(case: DCECase, plans: Plans) -> tuple[CanonicalCase, int]:
    """The input phases of ``case`` in canonical order with their TI-norm mask, and the reference input's index."""
    input_phases = list(plans.input_phases)
    canonical = to_canonical_case(case, plans.normalization.mask, input_phases=range(len(input_phases)))
    return canonical, input_phases.index(plans.reference_phase)


def preprocess_input(case: DCECase, plans: Plans) -> PreprocessedCase:
    """The input phases of ``case`` preprocessed exactly as in training (orientation, crop, TI-norm, spacing)."""
    canonical, reference = canonical_input(case, plans)
    return preprocess_canonical(canonical, plans.spacing, reference, plans.normalization.mask)


def input_facts(case: DCECase, plans: Plans, acquisition: AcquisitionFacts = UNKNOWN_ACQUISITION
                ) -> tuple[PreprocessedCase, CaseFacts]:
    """``preprocess_input`` and the case's facts for the out-of-distribution check (with what its sidecar says
    of the acquisition), from one reorientation."""
    canonical, reference = canonical_input(case, plans)
    n_in = len(plans.input_phases)
    facts = case_facts(canonical, case.times_s[:n_in], case.times_s[n_in:], reference, acquisition)
    return preprocess_canonical(canonical, plans.spacing, reference, plans.normalization.mask), facts


def prepare_case(files: CaseFiles, times_s: np.ndarray, plans: Plans) -> PreparedCase:
    """Read the input phases of a case, preprocess them and gather its facts (``input_facts``)."""
    case = load_input_case(files, list(plans.input_phases), times_s)
    pre, facts = input_facts(case, plans, load_acquisition_facts(files.times))
    return PreparedCase(case.case_id, pre.data, case.times_s, pre.properties, case.geometry, case.image, pre.mask,
                        facts)


Guard = tuple[float | None, float]  # (fraction of the body outside the trained range or None, share of change kept)


def finish_case(prepared: PreparedCase, synthesized: np.ndarray, guard: Guard, out_dir: Path, save_kinetic_map: bool,
                composition: Composition, mark: str | None = None, record: dict[str, Any] | None = None,
                uncertainty: Uncertainty | None = None) -> None:
    """Put the synthesized phases on the case's own grid (``composition``: the native base + the predicted
    change) and write them (and the kinetic map) atomically, with ``mark`` (the predictor's provenance
    description) in each header; then ``<case>.json`` with every time (inputs and synthesized phases), which
    pairs the outputs with real phases by time (iterdce_evaluate), and ``record`` (how the case was predicted,
    e.g. its tile); ``guard``: ``composition.kept`` of the case; ``uncertainty``: also the intervals (and lesion
    kinetics, the kinetic map's confidence layer) of ``--uncertainty`` (uncertainty.py), before ``<case>.json``,
    which marks the case done."""
    fraction, kept = guard
    restored, prior = native_phases_and_prior(synthesized, prepared.data, prepared.image, prepared.times_s,
                                              prepared.properties, composition, kept,
                                              with_prior=uncertainty is not None and uncertainty.wants_prior)
    if fraction is not None:
        record = {**(record or {}), "outside_trained_range": round(fraction, 6), "change_kept": round(kept, 6)}
    first = len(prepared.times_s) - len(restored)
    write_phases(restored, prepared.geometry, out_dir, prepared.case_id, range(first, len(prepared.times_s)), mark)
    if uncertainty is not None:
        write_uncertainty(uncertainty, restored, prepared.image, prepared.times_s, prepared.properties.ti_norm.std,
                          prepared.geometry, out_dir, prepared.case_id, mark, save_kinetic_map, prior)
    write_times(out_dir, prepared.case_id, prepared.times_s, first, mark, record)
    if save_kinetic_map:
        write_kinetic_map(np.concatenate([prepared.image, restored]), prepared.times_s, prepared.geometry, out_dir,
                          prepared.case_id, mark)


def run_cases(jobs: Sequence[tuple[CaseFiles, np.ndarray]], plans: Plans,
              synthesize: Callable[[PreparedCase], np.ndarray], out_dir: Path, save_kinetic_map: bool,
              num_processes: int, composition: Composition, mark: str | None = None,
              on_done: Callable[[], None] = lambda: None,
              record: Callable[[PreparedCase, Guard], dict[str, Any]] = lambda prepared, guard: {},
              uncertainty: Uncertainty | None = None) -> dict[str, Guard]:
    """Prepare, synthesize and finish every (files, times) job in order; ``record(prepared, guard)`` goes into
    the case's ``<case>.json``; ``uncertainty``: also write the intervals (finish_case). Returns each case's
    out-of-distribution measure (``Composition.kept``), computed once.

    ``num_processes`` 0: all in this process. N >= 1: N worker processes prepare up to N cases ahead and
    finish (restore + write) the previous ones while ``synthesize`` runs here. Worker errors are raised here.
    """
    finish_args = (out_dir, save_kinetic_map, composition, mark)
    guards: dict[str, Guard] = {}

    def guard(prepared: PreparedCase) -> Guard:
        guards[prepared.case_id] = composition.kept(prepared.data, prepared.mask)
        return guards[prepared.case_id]

    if num_processes <= 0:
        for files, times in jobs:
            prepared = prepare_case(files, times, plans)
            measured = guard(prepared)
            finish_case(prepared, synthesize(prepared), measured, *finish_args, record(prepared, measured),
                        uncertainty)
            on_done()
        return guards
    # spawned workers: the main process holds torch's threads, which forking does not survive reliably
    with ProcessPoolExecutor(num_processes, mp_context=get_context("spawn"), initializer=ignore_interrupts,
                             initargs=(os.getpid(),)) as pool:
        pending: list[Future[None]] = []
        for prepared in _prefetched(pool, jobs, plans, num_processes):
            measured = guard(prepared)
            pending.append(submit_quietly(pool, finish_case, prepared, synthesize(prepared), measured,
                                          *finish_args, record(prepared, measured), uncertainty))
            while len(pending) > num_processes:  # bounded: finished cases do not pile up in memory
                pending.pop(0).result()
                fault_point("collected")
                on_done()
        for future in pending:
            future.result()
            on_done()
    return guards


def _prefetched(pool: ProcessPoolExecutor, jobs: Sequence[tuple[CaseFiles, np.ndarray]], plans: Plans,
                ahead: int) -> Iterator[PreparedCase]:
    """The prepared cases in order, each submitted ``ahead`` cases before it is needed."""
    futures: list[Future[PreparedCase]] = []
    queue = iter(jobs)
    for files, times in queue:
        futures.append(submit_quietly(pool, prepare_case, files, times, plans))
        fault_point("submitted")
        if len(futures) > ahead:
            yield futures.pop(0).result()
    for future in futures:
        yield future.result()
