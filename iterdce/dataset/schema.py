"""dataset.json and per-case timing sidecars: reading and schema checks."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iterdce.core.errors import IterdceError, JSONFileError
from iterdce.core.json_io import read_json as read_json_file

REQUIRED_KEYS = ("name", "file_ending", "phase_times_s")
FILE_ENDINGS = (".nii.gz", ".nii")


class DatasetSchemaError(IterdceError, ValueError):
    """dataset.json or a timing sidecar breaks the schema; the message names the file."""


@dataclass(frozen=True)
class DatasetInfo:
    """The parsed dataset.json."""

    name: str
    file_ending: str
    phase_times_s: tuple[float, ...]
    input_phases: tuple[int, ...] = (0, 1)
    reference_phase: int | None = None
    num_training: int | None = None
    description: str = ""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def num_phases(self) -> int:
        return len(self.phase_times_s)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number_list(values: Any) -> bool:
    return isinstance(values, list) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    )


def timing_problems(times: Any, expected_length: int | None = None) -> list[str]:
    """What is wrong with a list of phase times (empty list: nothing)."""
    if not _is_number_list(times):
        return [f"phase_times_s must be a list of finite numbers (seconds), got {times!r}"]
    problems = []
    if expected_length is not None and len(times) != expected_length:
        problems.append(f"phase_times_s has {len(times)} entries, expected one per phase ({expected_length})")
    if len(times) < 3:
        problems.append(f"phase_times_s has {len(times)} entries; DCE needs pre-contrast plus at least 2 phases")
    if any(b <= a for a, b in zip(times, times[1:])):
        problems.append(f"phase_times_s is not strictly increasing: {times}")
    return problems


def read_json(path: Path) -> Any:
    """Parse a JSON file; errors (JSONFileError) name the file and the position."""
    return read_json_file(path)


def _without_path(exc: Exception, path: Path) -> str:
    """The message of ``exc`` without its leading ``path: `` (callers add the path themselves)."""
    message = str(exc)
    prefix = f"{path}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def _input_phase_problems(input_phases: Any, n_phases: int) -> list[str]:
    if not (isinstance(input_phases, list) and len(input_phases) >= 2
            and all(_is_int(i) and 0 <= i < n_phases for i in input_phases)
            and input_phases == sorted(set(input_phases)) and input_phases[0] == 0):
        return [f"input_phases must be increasing phase indices starting at 0, got {input_phases}"]
    if len(input_phases) >= n_phases:
        return ["input_phases must leave at least one phase to synthesize"]
    return []


def check_dataset_json(dataset_dir: Path) -> tuple[DatasetInfo | None, list[str]]:
    """``dataset_dir/dataset.json`` parsed as far as it can be, and every problem with it.

    The info is None only when the number of phases cannot be known (unreadable file or unusable
    ``phase_times_s``); otherwise invalid optional keys fall back to their defaults so that a verifier
    can still check the cases and report everything at once.
    """
    path = Path(dataset_dir) / "dataset.json"
    try:
        payload = read_json(path)
    except JSONFileError as exc:
        return None, [_without_path(exc, path)]
    if not isinstance(payload, dict):
        return None, ["top level must be a JSON object"]
    problems = [f"missing key {key!r}" for key in REQUIRED_KEYS if key not in payload]
    times: Any = payload.get("phase_times_s")
    if times is not None:
        problems += timing_problems(times)
    times_usable = _is_number_list(times) and len(times) >= 3
    n_phases = len(times) if times_usable else 0
    input_phases = payload.get("input_phases", [0, 1])
    input_problems = _input_phase_problems(input_phases, n_phases) if times_usable else []
    problems += input_problems
    reference = payload.get("reference_phase")
    reference_ok = reference is None or (_is_int(reference) and 0 <= reference < max(n_phases, 1))
    if not reference_ok and times_usable:
        problems.append(f"reference_phase {reference!r} is not a phase index")
    ending = payload.get("file_ending")
    if ending is not None and ending not in FILE_ENDINGS:
        problems.append(f"file_ending must be '.nii.gz' or '.nii', got {ending!r}")
    num_training: Any = payload.get("numTraining")
    if num_training is not None and not (_is_int(num_training) and num_training >= 0):
        problems.append(f"numTraining must be a non-negative integer, got {num_training!r}")
    if not times_usable:
        return None, problems
    info = DatasetInfo(
        name=str(payload.get("name", Path(dataset_dir).name)),
        file_ending=ending if ending in FILE_ENDINGS else ".nii.gz",
        phase_times_s=tuple(float(t) for t in times),
        input_phases=(0, 1) if input_problems else tuple(input_phases),
        reference_phase=reference if reference_ok else None,
        num_training=num_training if _is_int(num_training) and num_training >= 0 else None,
        description=str(payload.get("description", "")),
        raw=payload,
    )
    return info, problems


def load_dataset_json(dataset_dir: Path) -> DatasetInfo:
    """Read and check ``dataset_dir/dataset.json``; every problem goes into one DatasetSchemaError."""
    info, problems = check_dataset_json(dataset_dir)
    if problems or info is None:
        raise DatasetSchemaError(f"{Path(dataset_dir) / 'dataset.json'}: " + "; ".join(problems))
    return info


def load_case_times(path: Path, expected_length: int | None = None) -> tuple[float, ...]:
    """Read a per-case timing sidecar ``{"phase_times_s": [...]}`` and check it.

    A sidecar gives the case its own protocol: any number of phases >= 3 (``expected_length`` None), or, when
    the phase count is known from elsewhere (a 4D file's frames), exactly that many.
    """
    payload = read_json(path)
    times = payload.get("phase_times_s") if isinstance(payload, dict) else None
    if times is None:
        raise DatasetSchemaError(f"{path}: missing key 'phase_times_s'")
    problems = timing_problems(times, expected_length)
    if problems:
        raise DatasetSchemaError(f"{path}: " + "; ".join(problems))
    return tuple(float(t) for t in times)


# optional acquisition facts a timing sidecar may hold beside phase_times_s (a converter or the user writes them);
# the out-of-distribution check compares them with the training cases' (inference/ood.py)
SIDECAR_FIELD_STRENGTH = "field_strength_t"  # tesla, e.g. 1.5 or 3.0 (DICOM MagneticFieldStrength)
SIDECAR_FAT_SUPPRESSION = "fat_suppression"  # true / false


@dataclass(frozen=True)
class AcquisitionFacts:
    """The field strength and fat suppression of a case's acquisition, None where its sidecar does not say."""

    field_strength_t: float | None = None
    fat_suppression: bool | None = None


UNKNOWN_ACQUISITION = AcquisitionFacts()


def load_acquisition_facts(path: Path | None) -> AcquisitionFacts:
    """The optional acquisition facts of a timing sidecar; a missing file, key or a value of another type counts
    as unknown (these facts only inform a warning, so they never stop a run)."""
    if path is None or not Path(path).is_file():
        return AcquisitionFacts()
    try:
        payload = read_json_file(path)
    except JSONFileError:
        return AcquisitionFacts()
    if not isinstance(payload, dict):
        return AcquisitionFacts()
    strength = payload.get(SIDECAR_FIELD_STRENGTH)
    fat = payload.get(SIDECAR_FAT_SUPPRESSION)
    known = isinstance(strength, (int, float)) and not isinstance(strength, bool) and math.isfinite(strength)
    return AcquisitionFacts(float(strength) if known and strength is not None else None,
                            fat if isinstance(fat, bool) else None)
