"""IterativePredictor: trained folds + plan -> synthesized delayed phases of new cases, in their own geometry.

Each case is preprocessed exactly as in training (canonical orientation, crop, TI-norm from its own
reference phase, resampling), synthesized tile-major over the volume, and exported back.
"""
from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from iterdce.core.atomic import remove_stale_temporaries
from iterdce.core.checkpoint import CheckpointError
from iterdce.core.device import choose_device
from iterdce.core.errors import IterdceError, OutputLocationError, UsageError, listing
from iterdce.core.file_names import (
    SIDECAR_OOD_KEY,
    bound_file_name,
    checkpoint_name,
    kinetic_confidence_name,
    kinetic_map_name,
    phase_file_name,
    sidecar_name,
)
from iterdce.core.json_io import read_json
from iterdce.core.owned_outputs import refuse_overlap
from iterdce.dataset.case import DCECase
from iterdce.dataset.layout import CaseFiles
from iterdce.inference.case_pipeline import Guard, PreparedCase, effective_part, input_facts, run_cases, select_part
from iterdce.inference.composition import (
    DEFAULT_COMPOSE,
    OOD_FULL,
    OOD_START,
    model_priors,
    native_phases_and_prior,
    resolve_composition,
)
from iterdce.inference.conformal import load_calibration
from iterdce.inference.inputs import (
    PredictionInputError,
    attach_breast_masks,
    case_times,
    check_breast_mask_option,
    discover_inputs,
)
from iterdce.inference.model_loading import describe_model_folder, load_fold_models
from iterdce.inference.ood import CaseFacts, OODReport, assess, warning_text
from iterdce.inference.ood import extrapolation_range as trained_range_widened
from iterdce.inference.ood_reference import training_reference
from iterdce.inference.provenance import DESCRIPTION_PREFIX, OutputState, description, model_id, output_state
from iterdce.inference.tile_choice import AUTO, PATCH, NetworkShape, choose_tile, forward_bytes, memory_budget
from iterdce.inference.tiled import predict_volume
from iterdce.inference.uncertainty import Uncertainty
from iterdce.network.precision import resolve_precision
from iterdce.preprocessing.plan_schema import Plans
from iterdce.preprocessing.plans_io import load_plans
from iterdce.sharing.model_card import card_of_folder


@dataclass
class PredictionSettings:
    """How to predict: which folds and checkpoint, on which device, with how many tiles per forward."""

    folds: Sequence[int | str] = (0, 1, 2, 3, 4)
    checkpoint: str = "final"
    device: str = "auto"
    tile_batch: int = 4
    step_fraction: float = 0.5
    tta: bool = False
    progress: bool = True
    # "patch": the plan's training patch; "auto": the largest tile up to the whole volume that fits
    # tile_memory_gb (tile_choice.py; not the default: on a cross-site test it moved the output beyond the
    # documented tolerance, documentation/performance.md); or 3 sizes in plan voxels
    tile_size: Sequence[int] | str = PATCH
    target_times: Sequence[float] | None = None  # None: each case's own times, else the plan's default protocol
    tile_memory_gb: float | None = None  # auto tiles' budget per forward (None: tile_choice's default)
    precision: str = "auto"  # the network's arithmetic (network/precision.py)
    compose: str = DEFAULT_COMPOSE  # how phases reach the case's grid (inference/composition.py)
    # move cases outside the trained range towards the last input (composition.py); off by default: it hurt on
    # site D and on the demo's own cases (reports/native_resolution.md); a warning names such cases either way
    ood_guard: bool = False
    # --uncertainty: the interval coverage (None: no intervals); needs the model folder's conformal calibration
    coverage: float | None = None
    lesion_masks: Path | None = None  # --lesion-masks: <case>.nii.gz lesion labels for <case>_kinetics.json
    # --breast-masks: <case>.nii.gz breast masks, the TI-norm region of a plan normalized inside them
    breast_masks: Path | None = None

    def provenance(self) -> dict[str, Any]:
        """The settings that change the output voxels (hashed into the provenance mark with the checkpoints).

        The composition is added by the predictor once resolved (``plan``, the export before native
        composition, adds nothing). The training patch adds nothing (the mark of outputs predicted before tiles
        could be chosen); with
        ``auto`` the tile each case got is written into its ``<case>.json``.
        """
        tile = self.tile_size if isinstance(self.tile_size, str) else [int(v) for v in self.tile_size]
        targets = None if self.target_times is None else [float(t) for t in self.target_times]
        return {"tta": self.tta, "step": self.step_fraction, **({"tile": tile} if tile != PATCH else {}),
                **({"target_times": targets} if targets else {}),
                **({"coverage": float(self.coverage)} if self.coverage is not None else {}),
                **({"breast_masks": True} if self.breast_masks is not None else {})}


class IterativePredictor:
    """Loads a model folder once and predicts any number of cases."""

    def __init__(self, model_folder: Path, settings: PredictionSettings | None = None) -> None:
        self.settings = settings or PredictionSettings()
        self.model_folder = Path(model_folder)
        if not self.model_folder.is_dir():
            raise CheckpointError(describe_model_folder(self.model_folder))
        self.plans = load_plans(self.model_folder / "plans.json")
        card = card_of_folder(self.model_folder)  # a shared model's card: recorded with every case it predicts
        self.card = None if card is None else {"name": card.name, "id": card.id, "version": card.version}
        self.device = choose_device(self.settings.device)
        self.models, self.folds, self.model_config = load_fold_models(
            self.model_folder, self.settings.folds, self.settings.checkpoint, self.device)
        checkpoints = [self.model_folder / fold / checkpoint_name(self.settings.checkpoint) for fold in self.folds]
        self.precision = resolve_precision(self.settings.precision, self.device)
        # the mark of outputs predicted before --precision existed holds: bf16 on CUDA, float32 on the CPU
        usual = "bf16" if self.device.type == "cuda" else "fp32"
        marked = {} if self.precision == usual else {"precision": self.precision}
        priors = model_priors(self.models)
        self.composition = resolve_composition(self.settings.compose, priors, self.settings.ood_guard)
        # what the out-of-distribution check compares every case with (ood_reference.py: degrades to what is known)
        self.ood_reference = training_reference(self.model_folder, self.plans, bool(priors))
        if self.composition.mode != "plan":
            marked["compose"] = self.composition.mode
        if self.composition.priors and self.settings.ood_guard:
            marked["ood_guard"] = f"{OOD_START:g}-{OOD_FULL:g}"
        self.model_id = model_id(checkpoints, {**self.settings.provenance(), **marked})
        check_breast_mask_option(self.plans.normalization.mask, self.settings.breast_masks)
        self.input_phases = list(self.plans.input_phases)
        self.target_phases = list(self.plans.target_phases)  # the default protocol's; a case may have others
        expected = (self.input_phases, self.plans.max_phases)
        found = (list(self.model_config.input_phases), self.model_config.num_phases)
        if found != expected:
            raise CheckpointError(f"{self.model_folder}: the checkpoints' network (input phases {found[0]}, "
                                  f"{found[1]} phases) does not fit plans.json (input phases {expected[0]}, "
                                  f"{expected[1]} phases)")
        self.network_shape = NetworkShape.from_config(self.model_config.network, len(self.target_phases))
        # fixed for the whole run, so that a case's tile does not depend on what else is in memory
        free = torch.cuda.mem_get_info(self.device)[0] if self.device.type == "cuda" else None
        self.memory_budget = memory_budget(self.device.type, self.settings.tile_memory_gb, free)
        self.check_tiling()
        # --uncertainty: refused (one line) before any work when the model folder holds no calibration
        self.uncertainty = None if self.settings.coverage is None else Uncertainty.of(
            load_calibration(self.model_folder), self.settings.coverage, self.settings.lesion_masks)

    def tile_for(self, volume: Sequence[int]) -> list[int]:
        """The inference tile of a plan-space ``volume``: ``settings.tile_size`` when it names sizes, the
        training patch for ``patch``, else (``auto``) ``tile_choice.choose_tile`` within ``memory_budget``."""
        setting = self.settings.tile_size
        if setting == PATCH:
            return [int(v) for v in self.plans.patch_size]
        if setting == AUTO:
            return choose_tile(volume, self.plans.patch_size, self.network_shape, self.memory_budget,
                               self.settings.tile_batch, self.settings.step_fraction)
        return [int(v) for v in setting]

    def check_tiling(self) -> None:
        """One clear error for a tile the network cannot take or a step fraction outside (0, 1]."""
        setting = self.settings.tile_size
        if isinstance(setting, str) and setting not in (AUTO, PATCH):
            raise UsageError(f"--tile-size {setting}: give 3 sizes, '{AUTO}' or '{PATCH}'")
        divisor = self.network_shape.divisor
        tile = self.tile_for(self.plans.patch_size)
        if len(tile) != 3 or any(t < 1 or t % d for t, d in zip(tile, divisor)):
            raise UsageError(f"--tile-size {' '.join(map(str, tile))}: each of the 3 sizes must be a positive "
                             f"multiple of the network's total pooling {' x '.join(map(str, divisor))}")
        if isinstance(setting, (list, tuple)):  # a given size: one forward pass must fit the memory budget
            needed = forward_bytes(tile, 1, self.network_shape)
            if needed > TILE_MEMORY_LIMIT * self.memory_budget:
                raise UsageError(f"--tile-size {' '.join(map(str, tile))}: one forward pass would need about "
                                 f"{needed / 1e9:.3g} GB, more than {TILE_MEMORY_LIMIT:g} x the "
                                 f"{self.memory_budget / 1e9:.3g} GB budget of this device (--tile-memory-gb); "
                                 "choose a smaller tile or 'auto'")
        if not 0.0 < self.settings.step_fraction <= 1.0:
            raise UsageError(f"--step-size {self.settings.step_fraction}: the step is a fraction of the tile, "
                             "in (0, 1]")
        if self.settings.tile_memory_gb is not None and not self.settings.tile_memory_gb > 0:
            raise UsageError(f"--tile-memory-gb {self.settings.tile_memory_gb}: must be positive")

    @property
    def mirror_axes(self) -> list[int]:
        return list(self.plans.augmentation.mirror_axes) if self.settings.tta else []

    def synthesize_normalized(self, inputs: np.ndarray, times_s: np.ndarray) -> np.ndarray:
        """TI-normalized input phases [n_in, x, y, z] in plan space -> targets [n_targets, x, y, z] (plan space),
        one per time of ``times_s`` after the inputs (any number: the recursion runs to the last one).

        On a CUDA out-of-memory error the accumulators move to the CPU and the case is retried, then once more
        with one tile per forward pass, and (for an ``auto`` tile larger than the training patch) once more with
        the training patch; on the CPU the error is raised as it is.
        """
        tensor = torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32)).to(self.device)
        times = torch.as_tensor(times_s, dtype=torch.float32, device=self.device)
        tile, cpu = self.tile_for(inputs.shape[1:]), torch.device("cpu")
        attempts = [(None, self.settings.tile_batch, tile), (cpu, self.settings.tile_batch, tile)]
        if self.settings.tile_batch > 1:
            attempts.append((cpu, 1, tile))
        patch = [int(v) for v in self.plans.patch_size]
        if self.settings.tile_size == AUTO and tile != patch:
            attempts.append((cpu, 1, patch))

        def run(stitch_device: torch.device | None, tile_batch: int, tile: list[int]) -> np.ndarray:
            return predict_volume(self.models, tensor, times, tile, len(times_s) - len(self.input_phases),
                                  tile_batch, self.settings.step_fraction, self.mirror_axes,
                                  stitch_device=stitch_device, progress=self.settings.progress,
                                  precision=self.precision).cpu().numpy()

        for index, attempt in enumerate(attempts[:-1]):
            try:
                return run(*attempt)
            except torch.OutOfMemoryError:
                if self.device.type != "cuda":
                    raise
            torch.cuda.empty_cache()  # outside the except block: the failed attempt's tensors are released
            retry = attempts[index + 1]
            warnings.warn(f"CUDA out of memory; retrying with stitching on {retry[0]}, {retry[1]} tile(s) per "
                          f"forward pass and tile {' x '.join(map(str, retry[2]))}", stacklevel=2)
        return run(*attempts[-1])

    def predict_case(self, case: DCECase) -> np.ndarray:
        """Input phases of ``case`` (original geometry) -> synthesized target phases [n_targets, X, Y, Z]."""
        return self.predict_case_scaled(case)[0]

    def predict_case_scaled(self, case: DCECase, with_prior: bool = False
                            ) -> tuple[np.ndarray, float, np.ndarray | None]:
        """``predict_case``, the case's TI-norm standard deviation (the unit of conformal scores) and, with
        ``with_prior``, the kinetic prior's phases alone (None for a model without one; calibration.py)."""
        pre, facts = input_facts(case, self.plans)
        synthesized = self.synthesize_normalized(pre.data, case.times_s)
        fraction, kept = self.composition.kept(pre.data, pre.mask)
        self.warn_out_of_distribution({case.case_id: (fraction, kept)})
        self.warn_ood({case.case_id: self.ood_of(facts, fraction)})
        restored, prior = native_phases_and_prior(synthesized, pre.data, case.image[:len(self.input_phases)],
                                                  case.times_s, pre.properties, self.composition, kept, with_prior)
        return restored, float(pre.properties.ti_norm.std), prior

    def ood_of(self, facts: CaseFacts, outside_fraction: float | None) -> OODReport:
        """The out-of-distribution check of one case (ood.py) with its measured outside fraction."""
        return assess(dataclasses.replace(facts, outside_fraction=outside_fraction), self.ood_reference)

    def case_record(self, prepared: PreparedCase, guard: Guard, reports: dict[str, OODReport]) -> dict[str, Any]:
        """What ``<case>.json`` records of how the case was predicted: its tile, the model card, its OOD check
        (also kept in ``reports`` for the warning)."""
        reports[prepared.case_id] = self.ood_of(prepared.facts, guard[0])
        return {"tile_size": self.tile_for(prepared.data.shape[1:]),
                **({"model_card": self.card} if self.card else {}),
                SIDECAR_OOD_KEY: reports[prepared.case_id].to_json()}

    @staticmethod
    def warn_ood(reports: dict[str, OODReport]) -> None:
        """One warning, one line per flagged case with its reasons (``ood.warning_text``); none if none."""
        text = warning_text(reports)
        if text:
            warnings.warn(text, stacklevel=3)

    def warn_out_of_distribution(self, cases: dict[str, tuple[float | None, float]]) -> None:
        """With ``--ood-guard``: one warning naming the cases with more than ``OOD_START`` of their body outside
        the intensities the model was trained on and how much of their change the guard kept. Without it the
        out-of-distribution check's warning (``warn_ood``) names them, with their other reasons."""
        outside = {c: v for c, v in cases.items() if v[0] is not None and v[0] > OOD_START}
        if not outside or not self.settings.ood_guard:
            return
        listed = ", ".join(f"{c} ({100 * (f or 0):.1f} % outside, {100 * k:.0f} % of the change kept)"
                           for c, (f, k) in sorted(outside.items()))
        warnings.warn(f"{len(outside)} case(s) lie outside the intensities this model was trained on (more than "
                      f"{100 * OOD_START:g} % of the body): their phases were moved towards the last input phase: "
                      f"{listed}; documentation/prediction.md", stacklevel=2)

    def outputs_of(self, out_dir: Path, case_id: str, times_s: Sequence[float] | np.ndarray, kinetic_map: bool = False
                   ) -> list[Path]:
        """The files a finished case synthesized along ``times_s`` has in ``out_dir`` (with its kinetic map when
        one is asked for): one per time after the inputs, named by phase index."""
        phases = range(len(self.input_phases), len(times_s))
        paths = [out_dir / phase_file_name(case_id, p) for p in phases]
        if self.uncertainty is not None:  # the interval files and the kinetic map's confidence layer
            paths += [out_dir / bound_file_name(case_id, p, upper) for p in phases for upper in (False, True)]
            paths += [out_dir / kinetic_confidence_name(case_id)] if kinetic_map else []
        return paths + [out_dir / kinetic_map_name(case_id)] if kinetic_map else paths

    def case_times(self, files: CaseFiles) -> np.ndarray:
        """Input and target times of a case (``inputs.case_times`` with the requested ``target_times``)."""
        return case_times(files, self.plans.phase_times_s, len(self.input_phases), self.settings.target_times)

    def warn_extrapolation(self, times: dict[str, np.ndarray]) -> None:
        """One warning naming the target times outside the trained range (``extrapolation_range``)."""
        low, high = extrapolation_range(self.plans)
        outside = sorted({float(t) for case in times.values() for t in case[len(self.input_phases):]
                          if not low <= t <= high})
        if outside:
            cases = sum(any(not low <= t <= high for t in case[len(self.input_phases):]) for case in times.values())
            trained = self.plans.trained_target_times_s
            warnings.warn(f"target time(s) {', '.join(f'{t:g}' for t in outside)} s of {cases} case(s) lie outside "
                          f"the times this model was trained on ({trained[0]:g}-{trained[1]:g} s, tolerated "
                          f"{low:g}-{high:g} s): extrapolated; see documentation/prediction.md for how far it held "
                          "on the phantom",
                          stacklevel=2)

    def predict_folder(self, in_dir: Path, out_dir: Path, overwrite: bool = False, save_kinetic_map: bool = False,
                       num_processes: int = 0, num_parts: int = 1, part_id: int = 0) -> list[str]:
        """Check every input and every existing output first, then predict each case of this part not done yet;
        returns the cases predicted. Nothing is written when a check fails.

        ``num_processes``: worker processes that read/preprocess and write cases around the network (0: none).
        ``num_parts`` / ``part_id``: predict only that part of the folder (split further across torchrun ranks).
        """
        parts, part = effective_part(num_parts, part_id)
        in_dir, out_dir = Path(in_dir), Path(out_dir)
        refuse_output_inside_input(in_dir, out_dir)
        cases, problems = discover_inputs(in_dir, self.input_phases)
        if self.settings.breast_masks is not None:
            problems += attach_breast_masks(cases, self.settings.breast_masks)
        times = {}
        for case_id, files in cases.items():
            try:
                times[case_id] = self.case_times(files)
            except IterdceError as exc:
                problems.append(str(exc))
        if problems:
            raise PredictionInputError(listing(str(in_dir), problems), in_dir)
        self.warn_extrapolation(times)
        mine = select_part(list(cases), parts, part)
        todo = self.cases_to_do(mine, out_dir, overwrite, save_kinetic_map, times)
        remove_stale_temporaries(out_dir)
        if len(todo) < len(mine):
            print(f"{len(mine) - len(todo)} case(s) already predicted with this model in {out_dir} "
                  "(use --overwrite to redo)")
        out_dir.mkdir(parents=True, exist_ok=True)
        label = "cases" if parts == 1 else f"cases (part {part + 1}/{parts})"
        bar = tqdm(total=len(todo), desc=label, unit="case", disable=not self.settings.progress)
        reports: dict[str, OODReport] = {}
        guarded = run_cases([(cases[c], times[c]) for c in todo], self.plans,
                            lambda prepared: self.synthesize_normalized(prepared.data, prepared.times_s), out_dir,
                            save_kinetic_map, num_processes, self.composition, description(self.model_id),
                            on_done=lambda: bar.update(1),
                            record=lambda prepared, guard: self.case_record(prepared, guard, reports),
                            uncertainty=self.uncertainty)
        bar.close()
        self.warn_out_of_distribution(guarded)
        self.warn_ood(reports)
        return todo

    def cases_to_do(self, case_ids: list[str], out_dir: Path, overwrite: bool, save_kinetic_map: bool,
                    times: dict[str, np.ndarray]) -> list[str]:
        """Cases whose outputs are missing, truncated or (with ``overwrite``) present; an output name holding a
        file iterdce did not write, or one of another model without ``overwrite``, is refused for all cases."""
        todo, problems = [], []
        for case_id in case_ids:
            sidecar = out_dir / sidecar_name(case_id)
            if sidecar.exists() and not json_written_by_iterdce(sidecar):
                problems.append(f"{sidecar}: exists and was not written by iterdce_predict; it is never "
                                "overwritten: move it away or choose another -o")
            states = {path: output_state(path, self.model_id)
                      for path in self.outputs_of(out_dir, case_id, times[case_id], save_kinetic_map)}
            for path, state in states.items():
                if state is OutputState.FOREIGN:
                    problems.append(f"{path}: exists and was not written by iterdce_predict (no iterdce mark in "
                                    "its header); it is never overwritten: move it away or choose another -o")
                elif state is OutputState.OTHER_MODEL and not overwrite:
                    problems.append(f"{path}: predicted with another model or settings; pass --overwrite to "
                                    "replace it")
            finished = all(s is OutputState.DONE for s in states.values()) and sidecar.exists()
            if overwrite or not finished:
                todo.append(case_id)
        if problems:
            raise OutputLocationError(listing(f"{out_dir}: outputs cannot be written", problems), out_dir)
        return todo


TILE_MEMORY_LIMIT = 4.0  # a given --tile-size may use up to this multiple of the auto tile's memory budget
def extrapolation_range(plans: Plans) -> tuple[float, float]:
    """Target times predicted without a warning: the trained range widened by ``EXTRAPOLATION_MARGIN`` (ood.py,
    where the OOD check uses the same tolerance) of its latest time on each side (documentation/prediction.md
    says why)."""
    return trained_range_widened(plans.trained_target_times_s)


def json_written_by_iterdce(path: Path) -> bool:
    """Whether ``path`` is a ``<case>.json`` the predictor wrote (it carries the provenance mark)."""
    try:
        payload = read_json(path, expect=dict)
    except IterdceError:
        return False
    return str(payload.get("written_by") or "").startswith(DESCRIPTION_PREFIX)


def refuse_output_inside_input(in_dir: Path, out_dir: Path) -> None:
    """``-o`` must not be ``-i``, lie inside it or hold it (symbolic links resolved): inputs are never written
    over."""
    refuse_overlap(out_dir, "-o", [("input folder -i", in_dir)])
