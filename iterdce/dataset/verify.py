"""Integrity check of a raw dataset: every problem, each naming the case, the file and what is wrong."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from iterdce.core.errors import IterdceError, JSONFileError, listing
from iterdce.core.file_names import phase_file_name
from iterdce.core.output_checks import case_id_problem
from iterdce.dataset.case import label_values_problem
from iterdce.dataset.layout import CaseFiles, discover_cases
from iterdce.dataset.nifti_io import Geometry, ImageReadError, read_header, read_image
from iterdce.dataset.schema import DatasetInfo, DatasetSchemaError, check_dataset_json, load_case_times


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the dataset."""

    case: str
    file: str
    message: str

    def __str__(self) -> str:
        return f"[{self.case}] {self.file}: {self.message}"


MAX_ABS_INTENSITY = 1e35  # float32 reaches 3.4e38; the margin keeps sums and products over a volume finite


class InvalidDatasetError(IterdceError, ValueError):
    """Raised by ``require_valid_dataset``; ``problems`` holds every Problem found."""

    def __init__(self, dataset_dir: Path, problems: list[Problem]):
        self.problems = problems
        super().__init__(listing(f"dataset {dataset_dir}", [str(p) for p in problems]), dataset_dir)


def intensity_range_problem(data: np.ndarray) -> str | None:
    """Finite intensities beyond +-MAX_ABS_INTENSITY (float32 sums over a volume could overflow)."""
    finite = data[np.isfinite(data)]
    largest = float(np.abs(finite).max()) if finite.size else 0.0
    if largest > MAX_ABS_INTENSITY:
        return f"intensities up to {largest:.3g} exceed the supported range +-{MAX_ABS_INTENSITY:g}; rescale the images"
    return None


def _check_values(case: str, path: Path, data: np.ndarray, phase_axis: int | None) -> list[Problem]:
    """Non-finite voxels, intensities out of range and constant phases."""
    problems = []
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        problems.append(Problem(case, str(path), f"{bad} NaN/inf voxel(s)"))
    out_of_range = intensity_range_problem(data)
    if out_of_range:
        problems.append(Problem(case, str(path), out_of_range))
    volumes = [data] if phase_axis is None else [np.take(data, i, axis=phase_axis)
                                                 for i in range(data.shape[phase_axis])]
    for index, volume in enumerate(volumes):
        finite = volume[np.isfinite(volume)]
        if finite.size == 0 or finite.min() == finite.max():
            where = "" if phase_axis is None else f" (frame {index})"
            problems.append(Problem(case, str(path), f"phase is constant{where}"))
    return problems


def _check_mask(case: str, path: Path, geometry: Geometry, kind: str) -> list[Problem]:
    """Geometry equal to the images and integer (binary for breast masks) values."""
    try:
        img, mask_geometry = read_header(path)
    except ImageReadError as exc:
        return [Problem(case, str(path), str(exc).split(": ", 1)[-1])]
    problems = []
    if tuple(mask_geometry.shape) != tuple(geometry.shape[:3]):
        problems.append(Problem(case, str(path), f"{kind} shape {mask_geometry.shape} differs from the "
                                                 f"image shape {tuple(geometry.shape[:3])}"))
        return problems
    if not np.allclose(mask_geometry.affine, geometry.affine, atol=1e-3):
        problems.append(Problem(case, str(path), f"{kind} affine differs from the image affine"))
    try:
        data = np.asarray(img.dataobj)
    except Exception as exc:
        return problems + [Problem(case, str(path), f"voxel data cannot be read ({exc})")]
    problem = label_values_problem(data)
    if problem is not None:
        problems.append(Problem(case, str(path), f"{kind} {problem}"))
        return problems
    if kind == "breast mask" and not set(np.unique(data).tolist()) <= {0, 1}:
        values = sorted(set(np.unique(data).tolist()) - {0, 1})[:5]
        problems.append(Problem(case, str(path), f"breast mask is not binary (values other than 0 and 1: {values})"))
    elif kind == "breast mask" and not data.any():
        problems.append(Problem(case, str(path), "breast mask is empty (no voxel is 1)"))
    return problems


def _check_images(files: CaseFiles, info: DatasetInfo, n_phases: int, source: str
                  ) -> tuple[list[Problem], Geometry | None]:
    """Presence, readability, geometry agreement and values of a case's ``n_phases`` phase images (the count
    comes from ``source``: its timing sidecar or dataset.json)."""
    case, problems = files.case_id, []
    if files.volume_4d is not None:
        try:
            data, geometry = read_image(files.volume_4d)
        except ImageReadError as exc:
            return [Problem(case, str(files.volume_4d), str(exc).split(": ", 1)[-1])], None
        if data.ndim != 4 or data.shape[3] != n_phases:
            frames = data.shape[3] if data.ndim == 4 else 1
            return [Problem(case, str(files.volume_4d), f"4D file has {frames} frame(s), {source} "
                                                         f"declares {n_phases} phases")], None
        problems += _check_values(case, files.volume_4d, data, phase_axis=3)
        return problems, Geometry(data.shape[:3], geometry.affine, geometry.qform_code, geometry.sform_code)
    folder = next(iter(files.phase_files.values())).parent if files.phase_files else Path()
    for phase in range(n_phases):
        if phase not in files.phase_files:
            expected = folder / phase_file_name(case, phase, info.file_ending)
            problems.append(Problem(case, str(expected), f"missing phase file (phase {phase} of "
                                                         f"{n_phases} in {source})"))
    for phase, path in files.phase_files.items():
        if phase >= n_phases:
            problems.append(Problem(case, str(path), f"phase {phase} beyond the {n_phases} phases in "
                                                     f"{source} (stray file)"))
    reference: tuple[Path, Geometry] | None = None
    for phase in sorted(p for p in files.phase_files if p < n_phases):
        path = files.phase_files[phase]
        try:
            data, geometry = read_image(path)
        except ImageReadError as exc:
            problems.append(Problem(case, str(path), str(exc).split(": ", 1)[-1]))
            continue
        if data.ndim != 3:
            problems.append(Problem(case, str(path), f"image is {data.ndim}D with shape {data.shape}, expected 3D"))
            continue
        if reference is None:
            reference = (path, geometry)
        elif tuple(geometry.shape) != tuple(reference[1].shape):
            problems.append(Problem(case, str(path), f"shape {geometry.shape} differs from "
                                                     f"{reference[0].name} {reference[1].shape}"))
        elif not np.allclose(geometry.affine, reference[1].affine, atol=1e-3):
            problems.append(Problem(case, str(path), f"affine differs from {reference[0].name}"))
        problems += _check_values(case, path, data, phase_axis=None)
    return problems, None if reference is None else reference[1]


def verify_case(files: CaseFiles, info: DatasetInfo) -> list[Problem]:
    """Every problem of one case."""
    first = files.image_files[0] if files.image_files else Path(files.case_id)
    too_long = case_id_problem(files.case_id, first.parent)
    if too_long is not None:  # its preprocessed and predicted files could not be written
        return [Problem(files.case_id[:40] + "...", str(first), too_long)]
    n_phases, source = info.num_phases, "dataset.json"
    problems = []
    if files.times is not None:  # the case's own protocol: its sidecar sets the number of phases
        try:
            n_phases, source = len(load_case_times(files.times)), f"{files.times.parent.name}/{files.times.name}"
        except (DatasetSchemaError, JSONFileError) as exc:
            problems.append(Problem(files.case_id, str(files.times), str(exc).split(": ", 1)[-1]))
        else:
            found = 1 + max(files.phase_files, default=-1) if files.volume_4d is None else n_phases
            if found != n_phases:  # one line on the sidecar instead of a line per missing or extra file
                problems.append(Problem(files.case_id, str(files.times), f"phase_times_s has {n_phases} entries, "
                                        f"expected one per phase ({found} phase files)"))
                n_phases = found
    image_problems, geometry = _check_images(files, info, n_phases, source)
    problems += image_problems
    if geometry is not None:
        if files.label is not None:
            problems += _check_mask(files.case_id, files.label, geometry, "lesion mask")
        if files.mask is not None:
            problems += _check_mask(files.case_id, files.mask, geometry, "breast mask")
    return problems


def verify_dataset(dataset_dir: Path, split: str = "Tr", progress: bool = True) -> list[Problem]:
    """All problems of the dataset at ``dataset_dir`` (empty list: valid)."""
    dataset_dir = Path(dataset_dir)
    json_path = str(dataset_dir / "dataset.json")
    info, schema_problems = check_dataset_json(dataset_dir)
    problems = [Problem("dataset", json_path, message) for message in schema_problems]
    try:
        discovery = discover_cases(dataset_dir, split)
    except FileNotFoundError as exc:
        return problems + [Problem("dataset", str(dataset_dir), str(exc).split(": ", 1)[-1])]
    problems += [Problem("dataset", str(path), reason) for path, reason in discovery.stray]
    if info is None:
        problems.append(Problem("dataset", str(dataset_dir), f"{len(discovery.cases)} case(s) not checked: the "
                                                             "number of phases is unknown until dataset.json is fixed"))
        return problems
    if not discovery.cases:
        problems.append(Problem("dataset", str(dataset_dir), f"no cases found ({discovery.layout} layout)"))
    if info.num_training is not None and split == "Tr" and info.num_training != len(discovery.cases):
        problems.append(Problem("dataset", str(dataset_dir / "dataset.json"),
                                f"numTraining is {info.num_training} but {len(discovery.cases)} cases were found"))
    for files in tqdm(discovery.cases.values(), desc="verifying", unit="case", disable=not progress):
        problems += verify_case(files, info)
    return problems


def require_valid_dataset(dataset_dir: Path, split: str = "Tr", progress: bool = True) -> None:
    """Raise InvalidDatasetError listing every problem, or return quietly."""
    problems = verify_dataset(dataset_dir, split, progress)
    if problems:
        raise InvalidDatasetError(dataset_dir, problems)
