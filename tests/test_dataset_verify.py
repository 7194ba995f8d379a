"""The raw-dataset verifier: each kind of broken dataset is reported with its case, file and problem,
every problem is reported at once, and verification writes nothing into the dataset."""
from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from iterdce.commands.verify_dataset import main as verify_main
from iterdce.dataset.case import load_case
from iterdce.dataset.layout import discover_cases
from iterdce.dataset.nifti_io import read_image, write_image
from iterdce.dataset.schema import load_dataset_json
from iterdce.dataset.verify import InvalidDatasetError, Problem, require_valid_dataset, verify_dataset
from tests.helpers import make_raw_dataset


@dataclass(frozen=True)
class Expected:
    """One problem the verifier must report: its case, its file (relative to the dataset) and phrases."""

    case: str
    file: str
    phrases: tuple[str, ...]


@dataclass(frozen=True)
class Breaker:
    """A way to break a valid dataset, and what the verifier must then report (nothing else)."""

    name: str
    apply: Callable[[Path], None]
    expected: tuple[Expected, ...]
    layout: str = "flat"


def snapshot(folder: Path) -> dict[str, tuple[bool, int, int]]:
    """Every path under ``folder`` (hidden ones too) with its kind, mtime (ns) and size; folders included
    so that a temporary file created and removed again still shows as a changed folder mtime."""
    entries = {".": (True, folder.stat().st_mtime_ns, 0)}
    for path in folder.rglob("*"):
        stat = path.stat()
        entries[str(path.relative_to(folder))] = (path.is_dir(), stat.st_mtime_ns, stat.st_size)
    return entries


def rewrite(path: Path, transform: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]) -> None:
    """Replace the NIfTI at ``path`` by ``transform(data, affine)``."""
    data, geometry = read_image(path)
    new_data, new_affine = transform(data, geometry.affine.copy())
    write_image(path, new_data, new_affine)


def edit_json(path: Path, edit: Callable[[dict], None]) -> None:
    payload = json.loads(path.read_text())
    edit(payload)
    path.write_text(json.dumps(payload))


def write_sidecar(dataset: Path, case: str, times: list[float]) -> None:
    (dataset / "timesTr").mkdir(exist_ok=True)
    (dataset / "timesTr" / f"{case}.json").write_text(json.dumps({"phase_times_s": times}))


def _set(data: np.ndarray, index: tuple, value: float) -> np.ndarray:
    data = data.copy()
    data[index] = value
    return data


def _shifted(affine: np.ndarray) -> np.ndarray:
    affine[:3, 3] += [5.0, 0.0, 0.0]
    return affine


def _rescaled(affine: np.ndarray) -> np.ndarray:
    affine[2, 2] *= 1.5
    return affine


def rewrite_to(source: Path, target: Path) -> None:
    data, geometry = read_image(source)
    write_image(target, data, geometry)


def write_sidecar_text(dataset: Path, case: str, text: str) -> None:
    (dataset / "timesTr").mkdir(exist_ok=True)
    (dataset / "timesTr" / f"{case}.json").write_text(text)


def truncate(path: Path) -> None:
    payload = path.read_bytes()
    path.write_bytes(payload[: len(payload) // 2])


IMG = "imagesTr"
NOT_CHECKED = Expected("dataset", ".", ("2 case(s) not checked", "dataset.json"))

BREAKERS = [
    Breaker("missing_phase", lambda d: (d / IMG / "case_001_0002.nii.gz").unlink(),
            (Expected("case_001", f"{IMG}/case_001_0002.nii.gz", ("missing phase file", "phase 2")),)),
    Breaker("stray_text_file", lambda d: (d / IMG / "notes.txt").write_text("hello"),
            (Expected("dataset", f"{IMG}/notes.txt", ("not named <case>_<pppp>",)),)),
    Breaker("phase_beyond_dataset_json",
            lambda d: shutil.copy(d / IMG / "case_000_0000.nii.gz", d / IMG / "case_000_0004.nii.gz"),
            (Expected("case_000", f"{IMG}/case_000_0004.nii.gz", ("phase 4 beyond the 4 phases", "stray")),)),
    Breaker("label_of_unknown_case",
            lambda d: shutil.copy(d / "labelsTr" / "case_000.nii.gz", d / "labelsTr" / "case_007.nii.gz"),
            (Expected("dataset", "labelsTr/case_007.nii.gz", ("case 'case_007'", "no images")),)),
    Breaker("duplicate_phase_file",
            lambda d: rewrite_to(d / IMG / "case_000_0001.nii.gz", d / IMG / "case_000_0001.nii"),
            (Expected("dataset", f"{IMG}/case_000_0001.nii.gz", ("duplicate of case_000_0001.nii",)),)),
    Breaker("shape_mismatch_between_phases",
            lambda d: rewrite(d / IMG / "case_001_0003.nii.gz", lambda x, a: (x[:, :, :7], a)),
            (Expected("case_001", f"{IMG}/case_001_0003.nii.gz", ("shape (16, 16, 7)", "case_001_0000")),)),
    Breaker("affine_mismatch_between_phases",
            lambda d: rewrite(d / IMG / "case_000_0002.nii.gz", lambda x, a: (x, _shifted(a))),
            (Expected("case_000", f"{IMG}/case_000_0002.nii.gz", ("affine differs from case_000_0000",)),)),
    Breaker("lesion_mask_shape",
            lambda d: rewrite(d / "labelsTr" / "case_001.nii.gz",
                              lambda x, a: (np.pad(x, ((0, 0), (0, 0), (0, 1))).astype(np.uint8), a)),
            (Expected("case_001", "labelsTr/case_001.nii.gz", ("lesion mask shape (16, 16, 9)", "(16, 16, 8)")),)),
    Breaker("breast_mask_affine",
            lambda d: rewrite(d / "masksTr" / "case_000.nii.gz", lambda x, a: (x.astype(np.uint8), _rescaled(a))),
            (Expected("case_000", "masksTr/case_000.nii.gz", ("breast mask affine differs",)),)),
    Breaker("non_binary_breast_mask",
            lambda d: rewrite(d / "masksTr" / "case_001.nii.gz", lambda x, a: ((x * 2).astype(np.uint8), a)),
            (Expected("case_001", "masksTr/case_001.nii.gz", ("not binary", "[2]")),)),
    Breaker("empty_breast_mask",
            lambda d: rewrite(d / "masksTr" / "case_001.nii.gz", lambda x, a: (np.zeros_like(x, np.uint8), a)),
            (Expected("case_001", "masksTr/case_001.nii.gz", ("breast mask is empty",)),)),
    Breaker("float_lesion_mask",
            lambda d: rewrite(d / "labelsTr" / "case_000.nii.gz", lambda x, a: (x * 0.5, a)),
            (Expected("case_000", "labelsTr/case_000.nii.gz", ("lesion mask holds non-integer values",)),)),
    Breaker("nan_voxel",
            lambda d: rewrite(d / IMG / "case_000_0001.nii.gz", lambda x, a: (_set(x, (3, 4, 5), np.nan), a)),
            (Expected("case_000", f"{IMG}/case_000_0001.nii.gz", ("1 NaN/inf voxel(s)",)),)),
    Breaker("inf_voxels",
            lambda d: rewrite(d / IMG / "case_001_0000.nii.gz",
                              lambda x, a: (_set(_set(x, (0, 0, 0), np.inf), (1, 1, 1), -np.inf), a)),
            (Expected("case_001", f"{IMG}/case_001_0000.nii.gz", ("2 NaN/inf voxel(s)",)),)),
    Breaker("constant_phase",
            lambda d: rewrite(d / IMG / "case_001_0002.nii.gz", lambda x, a: (np.full_like(x, 7.0), a)),
            (Expected("case_001", f"{IMG}/case_001_0002.nii.gz", ("phase is constant",)),)),
    Breaker("dataset_json_times_not_increasing",
            lambda d: edit_json(d / "dataset.json", lambda j: j.update(phase_times_s=[0, 85, 60, 225])),
            (Expected("dataset", "dataset.json", ("not strictly increasing", "[0, 85, 60, 225]")),)),
    Breaker("sidecar_times_not_increasing", lambda d: write_sidecar(d, "case_000", [0, 90, 80, 300]),
            (Expected("case_000", "timesTr/case_000.json", ("not strictly increasing",)),)),
    Breaker("sidecar_times_wrong_length", lambda d: write_sidecar(d, "case_001", [0, 90, 180]),
            (Expected("case_001", "timesTr/case_001.json", ("3 entries", "one per phase (4 phase files)")),)),
    Breaker("sidecar_not_json", lambda d: write_sidecar_text(d, "case_001", "[0, 90,"),
            (Expected("case_001", "timesTr/case_001.json", ("not valid JSON",)),)),
    Breaker("corrupt_nifti_garbage", lambda d: (d / IMG / "case_001_0001.nii.gz").write_bytes(b"\x00garbage" * 64),
            (Expected("case_001", f"{IMG}/case_001_0001.nii.gz", ("cannot be read as NIfTI",)),)),
    Breaker("corrupt_nifti_truncated", lambda d: truncate(d / IMG / "case_000_0003.nii.gz"),
            (Expected("case_000", f"{IMG}/case_000_0003.nii.gz", ("voxel data cannot be read",)),)),
    Breaker("corrupt_mask", lambda d: (d / "masksTr" / "case_000.nii.gz").write_bytes(b"not a nifti"),
            (Expected("case_000", "masksTr/case_000.nii.gz", ("cannot be read as NIfTI",)),)),
    Breaker("4d_wrong_frame_count",
            lambda d: rewrite(d / IMG / "case_001.nii.gz", lambda x, a: (x[..., :3], a)),
            (Expected("case_001", f"{IMG}/case_001.nii.gz", ("3 frame(s)", "declares 4 phases")),), layout="4d"),
    Breaker("4d_constant_frame",
            lambda d: rewrite(d / IMG / "case_000.nii.gz", lambda x, a: (_set(x, (..., 2), 3.0), a)),
            (Expected("case_000", f"{IMG}/case_000.nii.gz", ("phase is constant (frame 2)",)),), layout="4d"),
    Breaker("per_case_empty_folder", lambda d: (d / "images" / "case_009").mkdir(),
            (Expected("dataset", "images/case_009", ("empty case folder",)),), layout="per_case"),
    Breaker("per_case_file_in_wrong_folder",
            lambda d: shutil.copy(d / "images/case_000/case_000_0000.nii.gz", d / "images/case_001"),
            (Expected("dataset", "images/case_001/case_000_0000.nii.gz", ("differs from its folder case_001/",)),),
            layout="per_case"),
    Breaker("dataset_json_missing_keys", lambda d: edit_json(d / "dataset.json", lambda j: (j.pop("name"),
                                                                                              j.pop("file_ending"))),
            (Expected("dataset", "dataset.json", ("missing key 'name'",)),
             Expected("dataset", "dataset.json", ("missing key 'file_ending'",)))),
    Breaker("dataset_json_missing_times", lambda d: edit_json(d / "dataset.json", lambda j: j.pop("phase_times_s")),
            (Expected("dataset", "dataset.json", ("missing key 'phase_times_s'",)), NOT_CHECKED)),
    Breaker("dataset_json_invalid", lambda d: (d / "dataset.json").write_text('{"name": "Phantom",'),
            (Expected("dataset", "dataset.json", ("not valid JSON",)), NOT_CHECKED)),
    Breaker("dataset_json_absent", lambda d: (d / "dataset.json").unlink(),
            (Expected("dataset", "dataset.json", ("file not found",)), NOT_CHECKED)),
    Breaker("num_training_mismatch", lambda d: edit_json(d / "dataset.json", lambda j: j.update(numTraining=5)),
            (Expected("dataset", "dataset.json", ("numTraining is 5", "2 cases were found")),)),
    Breaker("input_phases_invalid", lambda d: edit_json(d / "dataset.json", lambda j: j.update(input_phases=[1, 2])),
            (Expected("dataset", "dataset.json", ("input_phases must be increasing", "[1, 2]")),)),
]


def assert_reported(problems: list[Problem], dataset: Path, expected: tuple[Expected, ...]) -> None:
    """Exactly the expected problems, each with its case, file path and phrases."""
    text = "\n".join(map(str, problems))
    assert len(problems) == len(expected), text
    for item in expected:
        file = dataset if item.file == "." else dataset / item.file
        hits = [p for p in problems if p.case == item.case and Path(p.file) == file
                and all(phrase in p.message for phrase in item.phrases)]
        assert hits, f"expected [{item.case}] {file}: {item.phrases} in\n{text}"


@pytest.mark.parametrize("breaker", BREAKERS, ids=[b.name for b in BREAKERS])
def test_each_broken_dataset_is_reported_without_writing(tmp_path, capsys, breaker):
    dataset = make_raw_dataset(tmp_path, layout=breaker.layout)
    breaker.apply(dataset)
    before = snapshot(dataset)
    problems = verify_dataset(dataset, progress=False)
    assert_reported(problems, dataset, breaker.expected)
    assert verify_main(["-d", str(dataset)]) == 1
    err = capsys.readouterr().err
    assert f"{len(problems)} problem(s)" in err
    for problem in problems:
        assert str(problem) in err
    assert snapshot(dataset) == before


def test_valid_dataset_in_every_layout_has_no_problems(tmp_path, capsys):
    for layout in ("flat", "per_case", "4d"):
        dataset = make_raw_dataset(tmp_path / layout, layout=layout, case_times={"case_001": [0, 60, 130, 200]})
        before = snapshot(dataset)
        assert verify_dataset(dataset, progress=False) == []
        require_valid_dataset(dataset, progress=False)
        assert verify_main(["-d", str(dataset)]) == 0
        assert snapshot(dataset) == before
        assert f"{dataset}: OK" in capsys.readouterr().out


def test_all_problems_in_different_cases_are_reported_at_once(tmp_path, capsys):
    dataset = make_raw_dataset(tmp_path, n_cases=3)
    (dataset / IMG / "case_000_0003.nii.gz").unlink()
    rewrite(dataset / IMG / "case_001_0001.nii.gz", lambda x, a: (_set(x, (2, 2, 2), np.nan), a))
    write_sidecar(dataset, "case_002", [0, 100, 50, 200])
    before = snapshot(dataset)
    expected = (
        Expected("case_000", f"{IMG}/case_000_0003.nii.gz", ("missing phase file",)),
        Expected("case_001", f"{IMG}/case_001_0001.nii.gz", ("NaN/inf",)),
        Expected("case_002", "timesTr/case_002.json", ("not strictly increasing",)),
    )
    assert_reported(verify_dataset(dataset, progress=False), dataset, expected)
    with pytest.raises(InvalidDatasetError) as info:
        require_valid_dataset(dataset, progress=False)
    assert len(info.value.problems) == 3 and "3 problem(s)" in str(info.value)
    assert verify_main(["-d", str(dataset)]) == 1
    err = capsys.readouterr().err
    assert "3 problem(s)" in err
    assert all(case in err for case in ("[case_000]", "[case_001]", "[case_002]"))
    assert snapshot(dataset) == before


def test_schema_and_case_problems_are_reported_together(tmp_path):
    dataset = make_raw_dataset(tmp_path)
    edit_json(dataset / "dataset.json", lambda j: j.pop("name"))
    (dataset / IMG / "case_001_0000.nii.gz").unlink()
    expected = (Expected("dataset", "dataset.json", ("missing key 'name'",)),
                Expected("case_001", f"{IMG}/case_001_0000.nii.gz", ("missing phase file",)))
    assert_reported(verify_dataset(dataset, progress=False), dataset, expected)


def test_cli_finds_dataset_by_id_under_raw_root(tmp_path, capsys, monkeypatch):
    dataset = make_raw_dataset(tmp_path / "raw", dataset_id=3, name="Tiny")
    (dataset / IMG / "case_000_0001.nii.gz").unlink()
    monkeypatch.setenv("ITERDCE_RAW", str(tmp_path / "raw"))
    assert verify_main(["-d", "3"]) == 1
    assert "case_000_0001.nii.gz: missing phase file" in capsys.readouterr().err
    assert verify_main(["-d", "Tiny", "--raw", str(tmp_path / "nowhere")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error:") and "does not exist" in err


def test_folder_without_images_is_reported(tmp_path):
    dataset = make_raw_dataset(tmp_path)
    shutil.rmtree(dataset / IMG)
    problems = verify_dataset(dataset, progress=False)
    assert len(problems) == 1
    assert problems[0].file == str(dataset) and "no imagesTr/" in problems[0].message


@pytest.mark.parametrize("layout", ["flat", "per_case", "4d"])
def test_mixed_protocols_verify_and_load(tmp_path, layout):
    """A case's timing sidecar is its own protocol: 4, 5 and 6 phases in one dataset are valid, and a case
    without a sidecar follows dataset.json's default protocol."""
    own = {"case_001": [0.0, 90.0, 190.0, 290.0], "case_002": [0.0, 75.0, 155.0, 235.0, 315.0]}
    dataset = make_raw_dataset(tmp_path, n_cases=3, n_phases=6, layout=layout, case_times=own)
    assert verify_dataset(dataset, progress=False) == []
    info = load_dataset_json(dataset)
    cases = {cid: load_case(files, info.phase_times_s) for cid, files in discover_cases(dataset).cases.items()}
    assert [cases[c].num_phases for c in sorted(cases)] == [6, 4, 5]
    np.testing.assert_array_equal(cases["case_002"].times_s, own["case_002"])
