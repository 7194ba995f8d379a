"""One DCE case in memory: phases stacked with their acquisition times, masks, and the geometry."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iterdce.core.errors import IterdceError
from iterdce.core.file_names import phase_file_name
from iterdce.dataset.layout import CaseFiles
from iterdce.dataset.nifti_io import Geometry, read_image
from iterdce.dataset.schema import load_case_times


class CaseLoadError(IterdceError, ValueError):
    """A case cannot be assembled; the message names the case and the file."""


@dataclass
class DCECase:
    """Phases ``image`` [P, X, Y, Z] float32 with ``times_s`` [P], optional lesion labels and breast mask."""

    case_id: str
    image: np.ndarray
    times_s: np.ndarray
    geometry: Geometry
    lesion: np.ndarray | None = None
    breast_mask: np.ndarray | None = None

    @property
    def num_phases(self) -> int:
        return int(self.image.shape[0])

    @property
    def spatial_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.image.shape[1:])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        return self.geometry.spacing[:3]  # type: ignore[return-value]


MAX_LABEL = int(np.iinfo(np.int16).max)  # label volumes are kept as int16 (each label one lesion)


def label_values_problem(data: np.ndarray) -> str | None:
    """Why ``data`` cannot be a label volume (non-integer, negative or above ``MAX_LABEL``), else None."""
    if not np.all(np.isfinite(data)) or not np.array_equal(data, np.round(data)):
        return "holds non-integer values (a float mask?)"
    if data.size and data.min() < 0:
        return "holds negative values"
    if data.size and data.max() > MAX_LABEL:
        return (f"holds label {int(data.max())}, above {MAX_LABEL} (labels are kept as 16-bit integers): number "
                "the lesions 1, 2, ...")
    return None


def _read_mask(path: Path, geometry: Geometry, case_id: str) -> np.ndarray:
    """Integer label volume of ``path``, checked against the image grid."""
    data, mask_geometry = read_image(path, dtype=np.float32)
    if tuple(data.shape) != tuple(geometry.shape[:3]):
        raise CaseLoadError(f"case {case_id}: {path} has shape {tuple(data.shape)}, the images "
                            f"{tuple(geometry.shape[:3])}")
    if not mask_geometry.matches(geometry):
        raise CaseLoadError(f"case {case_id}: {path} affine differs from the image affine")
    problem = label_values_problem(data)
    if problem is not None:
        raise CaseLoadError(f"case {case_id}: {path} {problem}")
    return data.astype(np.int16)


def case_times(files: CaseFiles, default_times_s: tuple[float, ...]) -> tuple[tuple[float, ...], str]:
    """The phase times of a case and where they come from: its timing sidecar (its own protocol, any number of
    phases >= 3) or, without one, dataset.json's default protocol."""
    if files.times is not None:
        return load_case_times(files.times), f"{files.times.parent.name}/{files.times.name}"
    return tuple(default_times_s), "dataset.json"


def load_case(files: CaseFiles, phase_times_s: tuple[float, ...], num_phases: int | None = None) -> DCECase:
    """Read every phase of a case (3D-per-phase or 4D), its masks and its timing into a DCECase.

    ``phase_times_s`` is the dataset's default protocol; a per-case timing sidecar overrides it and sets the
    case's number of phases (``num_phases``, when given, must agree).
    """
    times, source = case_times(files, phase_times_s)
    n_phases = num_phases if num_phases is not None else len(times)
    if files.volume_4d is not None:
        data, geometry = read_image(files.volume_4d)
        if data.ndim != 4 or data.shape[3] != n_phases:
            raise CaseLoadError(f"case {files.case_id}: {files.volume_4d} has shape {data.shape}, "
                                f"expected 4D with {n_phases} frames (one per time in {source})")
        image = np.ascontiguousarray(np.moveaxis(data, 3, 0))
        geometry = Geometry(image.shape[1:], geometry.affine, geometry.qform_code, geometry.sform_code)
    else:
        missing = [p for p in range(n_phases) if p not in files.phase_files]
        if missing:
            raise CaseLoadError(f"case {files.case_id}: missing phase file(s) "
                                + ", ".join(phase_file_name(files.case_id, p, ending="") for p in missing)
                                + f" ({n_phases} phases in {source})")
        beyond = sorted(p for p in files.phase_files if p >= n_phases)
        if beyond:
            raise CaseLoadError(f"case {files.case_id}: {files.phase_files[beyond[0]].name} is phase {beyond[0]}, "
                                f"but {source} lists {n_phases} phase times")
        volumes = []
        geometry = None
        for phase in range(n_phases):
            path = files.phase_files[phase]
            data, phase_geometry = read_image(path)
            if data.ndim != 3:
                raise CaseLoadError(f"case {files.case_id}: {path} is {data.ndim}D, expected 3D")
            if geometry is None:
                geometry = phase_geometry
            elif not phase_geometry.matches(geometry):
                raise CaseLoadError(f"case {files.case_id}: {path} geometry differs from phase 0 "
                                    f"(shape {phase_geometry.shape} vs {geometry.shape})")
            volumes.append(data)
        image = np.stack(volumes)
    if geometry is None:
        raise CaseLoadError(f"case {files.case_id}: no phases to read")
    if len(times) != n_phases:
        raise CaseLoadError(f"case {files.case_id}: {len(times)} phase times in {source} for {n_phases} phases")
    lesion = _read_mask(files.label, geometry, files.case_id) if files.label else None
    breast = _read_mask(files.mask, geometry, files.case_id) if files.mask else None
    return DCECase(
        case_id=files.case_id,
        image=image.astype(np.float32, copy=False),
        times_s=np.asarray(times, dtype=np.float64),
        geometry=geometry,
        lesion=lesion,
        breast_mask=None if breast is None else breast > 0,
    )
