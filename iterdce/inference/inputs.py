"""Prediction inputs: ``<case>_<pppp>.nii.gz`` for each input phase plus an optional ``<case>.json`` timing,
all checked before anything is written."""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from iterdce.core.errors import IterdceError, UsageError
from iterdce.core.file_names import SIDECAR_SUFFIX, case_file_name, phase_file_name, split_phase_name
from iterdce.core.output_checks import case_id_problem
from iterdce.dataset.case import DCECase
from iterdce.dataset.layout import CaseFiles, not_a_file
from iterdce.dataset.nifti_io import ImageReadError, read_header, read_image
from iterdce.dataset.schema import DatasetSchemaError, read_json, timing_problems
from iterdce.dataset.verify import intensity_range_problem
from iterdce.preprocessing.plan_schema import BREAST_MASK


class PredictionInputError(IterdceError, ValueError):
    """The input folder cannot be predicted; the message lists every problem with its file."""


def discover_inputs(folder: Path, input_phases: Sequence[int]) -> tuple[dict[str, CaseFiles], list[str]]:
    """Cases of an input folder and every problem found (missing phases, unreadable files, geometry)."""
    if not folder.is_dir():
        return {}, [f"{folder}: input folder does not exist"]
    cases: dict[str, CaseFiles] = {}
    problems: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if not path.is_file():
            if split_phase_name(path.name) is not None or path.name.endswith(SIDECAR_SUFFIX):
                problems.append(f"{path}: named like an input but {not_a_file(path)}")
            continue
        if path.name.endswith(SIDECAR_SUFFIX):
            case_id = path.name[:-len(SIDECAR_SUFFIX)]
            cases.setdefault(case_id, CaseFiles(case_id)).times = path
            continue
        parsed = split_phase_name(path.name)
        if parsed is None:
            problems.append(f"{path}: not named <case>_<pppp>.nii.gz")
            continue
        case_id, phase, _ = parsed
        if phase in input_phases:
            files = cases.setdefault(case_id, CaseFiles(case_id))
            if phase in files.phase_files:
                problems.append(f"{path}: duplicate of {files.phase_files[phase].name} (phase {phase} of case "
                                f"{case_id} twice); keep one of them")
                continue
            files.phase_files[phase] = path
    for case_id, files in list(cases.items()):
        too_long = case_id_problem(case_id, folder)
        if too_long is not None:
            problems.append(f"{folder / (case_id[:40] + '...')}: {too_long}")
            del cases[case_id]
            continue
        if not files.phase_files:
            problems.append(f"{files.times}: timing file of a case with no images")
            del cases[case_id]
            continue
        problems += case_problems(files, input_phases)
    if not cases and not problems:
        problems.append(f"{folder}: no <case>_0000.nii.gz files found")
    return cases, problems


def case_problems(files: CaseFiles, input_phases: Sequence[int]) -> list[str]:
    """Missing input phases, unreadable, non-finite or constant files, non-3D images and geometry mismatches.

    The voxel data are read here (one file at a time), so a corrupt file is found before anything is written.
    """
    problems = [f"case {files.case_id}: missing input phase file {phase_file_name(files.case_id, p)}"
                for p in input_phases if p not in files.phase_files]
    reference = None
    for phase in sorted(files.phase_files):
        path = files.phase_files[phase]
        try:
            data, geometry = read_image(path)
        except ImageReadError as exc:
            problems.append(str(exc))
            continue
        if len(geometry.shape) != 3:
            problems.append(f"{path}: image is {len(geometry.shape)}D with shape {geometry.shape}, expected 3D")
            continue
        out_of_range = intensity_range_problem(data)
        if not np.all(np.isfinite(data)):
            problems.append(f"{path}: {int(np.size(data) - np.isfinite(data).sum())} NaN/inf voxel(s)")
        elif out_of_range:
            problems.append(f"{path}: {out_of_range}")
        elif data.size and data.min() == data.max():
            problems.append(f"{path}: constant image (every voxel {float(data.flat[0]):g}); cannot be normalized")
        if reference is None:
            reference = (path, geometry)
        elif not geometry.matches(reference[1]):
            problems.append(f"{path}: geometry (shape {geometry.shape}, affine) differs from {reference[0].name}")
    return problems


def case_times(files: CaseFiles, plan_times: Sequence[float], n_inputs: int,
               target_times: Sequence[float] | None = None) -> np.ndarray:
    """Every time a case is synthesized along: its input times, then its target times.

    Input times come from the case's ``<case>.json`` (the input phases only, or its whole protocol), else the
    plan's default protocol. Targets are ``target_times`` when given (``--target-times``), else the later times
    of a sidecar listing the whole protocol (the case is synthesized at its own times, any number of them),
    else the plan's default targets.
    """
    own: list[float] | None = None
    if files.times is not None:
        payload = read_json(files.times)
        times = payload.get("phase_times_s") if isinstance(payload, dict) else None
        if not isinstance(times, list) or len(times) < n_inputs:
            raise DatasetSchemaError(f"{files.times}: phase_times_s must list the {n_inputs} input phase times or "
                                     f"the case's whole protocol (at least {n_inputs + 1} times), in seconds")
        own = list(times)
    inputs = own[:n_inputs] if own is not None else list(plan_times[:n_inputs])
    if target_times is not None:
        targets, source = list(target_times), "--target-times"
    elif own is not None and len(own) > n_inputs:
        targets, source = own[n_inputs:], str(files.times)
    else:
        targets, source = list(plan_times[n_inputs:]), "the plan's default protocol"
    full = inputs + targets
    problems = timing_problems(full)
    if problems:
        where = files.times if files.times is not None else f"case {files.case_id}"
        raise DatasetSchemaError(f"{where}: " + "; ".join(problems)
                                 + f" (input times {inputs}, target times {targets} from {source})")
    return np.asarray(full, dtype=np.float64)


def check_breast_mask_option(mask_kind: str, breast_masks: Path | None) -> None:
    """``--breast-masks`` only for a plan that normalizes inside breast masks (refused otherwise, one line);
    such a plan without them is normalized in the body foreground instead: one warning."""
    if breast_masks is not None and mask_kind != BREAST_MASK:
        raise UsageError(f"--breast-masks: this model's plan normalizes inside the {mask_kind!r} mask, not in breast "
                         "masks; leave the option out")
    if breast_masks is None and mask_kind == BREAST_MASK:
        warnings.warn("this model was trained with TI-norm inside breast masks; without --breast-masks DIR each case "
                      "is normalized inside its body foreground instead, which differs from training "
                      "(documentation/preprocessing.md)", stacklevel=3)


def attach_breast_masks(cases: dict[str, CaseFiles], mask_dir: Path) -> list[str]:
    """``--breast-masks``: each case's ``<mask_dir>/<case>.nii.gz`` into ``files.mask`` (read by
    ``load_input_case``); the problems: a missing or unreadable mask, or one on another grid than the case's
    first input phase."""
    problems = []
    for case_id, files in cases.items():
        path = Path(mask_dir) / case_file_name(case_id)
        if not path.is_file():
            problems.append(f"{path}: no breast mask for case {case_id} (--breast-masks needs one per case)")
            continue
        try:
            geometry = read_header(path)[1]
            reference = read_header(files.phase_files[min(files.phase_files)])[1]
        except ImageReadError as exc:
            problems.append(str(exc))
            continue
        if not geometry.matches(reference):
            problems.append(f"{path}: its grid (shape {tuple(geometry.shape)}) differs from the case's input "
                            f"phases (shape {tuple(reference.shape)}) or their affine")
            continue
        files.mask = path
    return problems


def load_input_case(files: CaseFiles, input_phases: Sequence[int], times_s: np.ndarray) -> DCECase:
    """The input phases of a case as a DCECase, with its breast mask when ``files.mask`` names one
    (``attach_breast_masks``)."""
    volumes, geometry = [], None
    for phase in input_phases:
        data, geometry_here = read_image(files.phase_files[phase])
        if not np.all(np.isfinite(data)):
            raise PredictionInputError(f"{files.phase_files[phase]}: NaN/inf voxels")
        geometry = geometry or geometry_here
        volumes.append(data)
    if geometry is None:
        raise PredictionInputError(f"case {files.case_id}: no input phases to read")
    breast = None if files.mask is None else read_image(files.mask)[0] > 0
    return DCECase(files.case_id, np.stack(volumes), times_s, geometry, breast_mask=breast)
