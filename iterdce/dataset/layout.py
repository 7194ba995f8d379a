"""Finding the files of every case in the three supported raw layouts.

- flat (nnU-Net): ``imagesTr/<case>_<pppp>.nii.gz``, ``labelsTr/``, ``masksTr/``, ``timesTr/``
- per-case folders (MAMA-MIA): ``images/<case>/<case>_<pppp>.nii.gz``, ``segmentations/<case>.nii.gz``
- one 4D NIfTI per case: ``imagesTr/<case>.nii.gz`` with time as the fourth axis
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from iterdce.core.file_names import NIFTI_ENDINGS, NIFTI_FILE, SIDECAR_SUFFIX, split_phase_name
from iterdce.core.folder_names import (
    PER_CASE_IMAGES,
    PER_CASE_LABELS,
    PER_CASE_MASKS,
    TRAINING_SPLIT,
    images_folder_name,
    labels_folder_name,
    masks_folder_name,
    times_folder_name,
)

ATTACHED_KINDS = {"label": "lesion mask", "mask": "breast mask", "times": "timing sidecar"}


@dataclass
class CaseFiles:
    """Paths of one case; ``phase_files`` for 3D-per-phase layouts, ``volume_4d`` for the 4D layout."""

    case_id: str
    phase_files: dict[int, Path] = field(default_factory=dict)
    volume_4d: Path | None = None
    label: Path | None = None
    mask: Path | None = None
    times: Path | None = None

    @property
    def image_files(self) -> list[Path]:
        return [self.volume_4d] if self.volume_4d else [self.phase_files[k] for k in sorted(self.phase_files)]


@dataclass
class Discovery:
    """Cases found in a folder, and files that fit no case (reported by the verifier)."""

    layout: str
    cases: dict[str, CaseFiles]
    stray: list[tuple[Path, str]] = field(default_factory=list)


def not_a_file(path: Path) -> str:
    """What ``path`` is instead of a regular file (a folder, a FIFO, a link to nothing or a loop, ...)."""
    if path.is_symlink() and not path.exists():
        return "is a symbolic link to nothing (or a loop)"
    if path.is_dir():
        return "is a folder"
    if path.is_fifo():
        return "is a named pipe (FIFO)"
    return "is not a regular file"


def group_phase_files(folder: Path, stray: list[tuple[Path, str]]) -> dict[str, CaseFiles]:
    """Group ``<case>_<pppp>.nii[.gz]`` files of one folder by case; anything else is stray."""
    cases: dict[str, CaseFiles] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        parsed = split_phase_name(path.name)
        if parsed is None:
            stray.append((path, "not named <case>_<pppp>.nii.gz"))
            continue
        if not path.is_file():
            stray.append((path, f"named like an image but {not_a_file(path)}"))
            continue
        case_id, phase, _ = parsed
        files = cases.setdefault(case_id, CaseFiles(case_id))
        if phase in files.phase_files:
            stray.append((path, f"duplicate of {files.phase_files[phase].name} (phase {phase})"))
            continue
        files.phase_files[phase] = path
    return cases


def _attach_single_files(
    cases: dict[str, CaseFiles], folder: Path, attribute: str, suffixes: tuple[str, ...],
    stray: list[tuple[Path, str]],
) -> None:
    """Attach ``<case><suffix>`` files of ``folder`` to their case; files of no known case are stray."""
    if not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        suffix = next((s for s in suffixes if path.name.endswith(s)), None) if path.is_file() else None
        case_id = path.name[: -len(suffix)] if suffix else None
        kind = ATTACHED_KINDS.get(attribute, attribute)
        if not case_id:
            stray.append((path, f"not named <case>{suffixes[0]} (expected in {folder.name}/: one {kind} per case)"))
            continue
        if case_id not in cases:
            stray.append((path, f"{kind} for case {case_id!r}, which has no images (belongs to no case)"))
            continue
        if getattr(cases[case_id], attribute) is not None:
            stray.append((path, f"duplicate {kind} for case {case_id} "
                                f"(also {getattr(cases[case_id], attribute).name})"))
            continue
        setattr(cases[case_id], attribute, path)


def detect_layout(dataset_dir: Path, split: str = TRAINING_SPLIT) -> str:
    """``flat``, ``per_case`` or ``4d`` from what is on disk."""
    images = dataset_dir / images_folder_name(split)
    if (dataset_dir / PER_CASE_IMAGES).is_dir() and not images.is_dir():
        return "per_case"
    if not images.is_dir():
        raise FileNotFoundError(f"{dataset_dir}: no {images.name}/ (flat or 4D layout) nor {PER_CASE_IMAGES}/ "
                                "(per-case layout)")
    names = [p.name for p in images.iterdir() if p.is_file() and not p.name.startswith(".")]
    phase_named = sum(split_phase_name(n) is not None for n in names)
    return "flat" if phase_named >= len(names) - phase_named else "4d"


def discover_cases(dataset_dir: Path, split: str = TRAINING_SPLIT) -> Discovery:
    """Find every case of ``dataset_dir`` in whichever layout it uses."""
    layout = detect_layout(dataset_dir, split)
    stray: list[tuple[Path, str]] = []
    if layout == "per_case":
        cases: dict[str, CaseFiles] = {}
        for folder in sorted((dataset_dir / PER_CASE_IMAGES).iterdir()):
            if not folder.is_dir():
                if not folder.name.startswith("."):
                    stray.append((folder, "per-case layout expects one folder per case under images/"))
                continue
            found = group_phase_files(folder, stray)
            if not any(not p.name.startswith(".") for p in folder.iterdir()):
                stray.append((folder, "empty case folder (no <case>_<pppp>.nii.gz images)"))
            for case_id, files in found.items():
                if case_id != folder.name:
                    stray.extend((p, f"case name differs from its folder {folder.name}/")
                                 for p in files.image_files)
                    continue
                cases[case_id] = files
        _attach_single_files(cases, dataset_dir / PER_CASE_LABELS, "label", NIFTI_ENDINGS, stray)
        _attach_single_files(cases, dataset_dir / PER_CASE_MASKS, "mask", NIFTI_ENDINGS, stray)
    elif layout == "flat":
        cases = group_phase_files(dataset_dir / images_folder_name(split), stray)
    else:
        cases = {}
        for path in sorted((dataset_dir / images_folder_name(split)).iterdir()):
            match = NIFTI_FILE.match(path.name)
            if path.name.startswith("."):
                continue
            if not path.is_file() or not match or split_phase_name(path.name):
                stray.append((path, "4D layout expects one <case>.nii.gz per case"))
                continue
            if match["case"] in cases:
                first = getattr(cases[match["case"]].volume_4d, "name", None)
                stray.append((path, f"duplicate of {first} (case {match['case']})"))
                continue
            cases[match["case"]] = CaseFiles(match["case"], volume_4d=path)
    if layout != "per_case":
        _attach_single_files(cases, dataset_dir / labels_folder_name(split), "label", NIFTI_ENDINGS, stray)
        _attach_single_files(cases, dataset_dir / masks_folder_name(split), "mask", NIFTI_ENDINGS, stray)
    _attach_single_files(cases, dataset_dir / times_folder_name(split), "times", (SIDECAR_SUFFIX,), stray)
    return Discovery(layout=layout, cases=dict(sorted(cases.items())), stray=stray)
