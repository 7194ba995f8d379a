"""dataset.json and per-case timing sidecars: reading and schema checks."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REQUIRED_KEYS = ("name", "file_ending", "phase_times_s")


class DatasetSchemaError(ValueError):
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


def timing_problems(times: Any, expected_length: int | None = None) -> list[str]:
    """What is wrong with a list of phase times (empty list: nothing)."""
    if not isinstance(times, list) or not all(isinstance(t, (int, float)) and not isinstance(t, bool)
                                              for t in times):
        return ["phase_times_s must be a list of numbers (seconds)"]
    problems = []
    if expected_length is not None and len(times) != expected_length:
        problems.append(f"phase_times_s has {len(times)} entries, expected one per phase ({expected_length})")
    if len(times) < 3:
        problems.append(f"phase_times_s has {len(times)} entries; DCE needs pre-contrast plus at least 2 phases")
    if any(b <= a for a, b in zip(times, times[1:])):
        problems.append(f"phase_times_s is not strictly increasing: {times}")
    return problems


def read_json(path: Path) -> Any:
    """Parse a JSON file or raise DatasetSchemaError naming it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DatasetSchemaError(f"{path}: file not found") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetSchemaError(f"{path}: not valid JSON ({exc})") from exc


def load_dataset_json(dataset_dir: Path) -> DatasetInfo:
    """Read and check ``dataset_dir/dataset.json``; every problem goes into one DatasetSchemaError."""
    path = dataset_dir / "dataset.json"
    payload = read_json(path)
    if not isinstance(payload, dict):
        raise DatasetSchemaError(f"{path}: top level must be a JSON object")
    problems = [f"missing key {key!r}" for key in REQUIRED_KEYS if key not in payload]
    times = payload.get("phase_times_s")
    if times is not None:
        problems += timing_problems(times)
    n_phases = len(times) if isinstance(times, list) else 0
    input_phases = payload.get("input_phases", [0, 1])
    if not (isinstance(input_phases, list) and len(input_phases) >= 2
            and all(isinstance(i, int) and 0 <= i < n_phases for i in input_phases)
            and input_phases == sorted(set(input_phases)) and input_phases[0] == 0):
        problems.append(f"input_phases must be increasing phase indices starting at 0, got {input_phases}")
    elif n_phases and len(input_phases) >= n_phases:
        problems.append("input_phases must leave at least one phase to synthesize")
    reference = payload.get("reference_phase")
    if reference is not None and not (isinstance(reference, int) and 0 <= reference < max(n_phases, 1)):
        problems.append(f"reference_phase {reference!r} is not a phase index")
    ending = payload.get("file_ending")
    if ending is not None and ending not in (".nii.gz", ".nii"):
        problems.append(f"file_ending must be '.nii.gz' or '.nii', got {ending!r}")
    num_training = payload.get("numTraining")
    if num_training is not None and not isinstance(num_training, int):
        problems.append(f"numTraining must be an integer, got {num_training!r}")
    if problems:
        raise DatasetSchemaError(f"{path}: " + "; ".join(problems))
    return DatasetInfo(
        name=str(payload["name"]),
        file_ending=str(payload["file_ending"]),
        phase_times_s=tuple(float(t) for t in times),
        input_phases=tuple(input_phases),
        reference_phase=reference,
        num_training=num_training,
        description=str(payload.get("description", "")),
        raw=payload,
    )


def load_case_times(path: Path, expected_length: int) -> tuple[float, ...]:
    """Read a per-case timing sidecar ``{"phase_times_s": [...]}`` and check it."""
    payload = read_json(path)
    times = payload.get("phase_times_s") if isinstance(payload, dict) else None
    if times is None:
        raise DatasetSchemaError(f"{path}: missing key 'phase_times_s'")
    problems = timing_problems(times, expected_length)
    if problems:
        raise DatasetSchemaError(f"{path}: " + "; ".join(problems))
    return tuple(float(t) for t in times)
