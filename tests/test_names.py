"""The file- and folder-name rules (iterdce.core.file_names, iterdce.core.folder_names): each name spelled as
it is on disk, and the phase-file rule parses what it writes."""
from __future__ import annotations

from pathlib import Path

import pytest

from iterdce.core import file_names as fn
from iterdce.core import folder_names as dn


@pytest.mark.parametrize(("case_id", "phase", "ending"), [("case_001", 3, ".nii.gz"), ("a_b", 12, ".nii"),
                                                          ("x_0001", 0, ".nii.gz")])
def test_phase_file_name_round_trips(case_id: str, phase: int, ending: str):
    name = fn.phase_file_name(case_id, phase, ending)
    assert fn.split_phase_name(name) == (case_id, phase, ending)


def test_file_names_as_on_disk():
    assert fn.phase_file_name("case_001", 3) == "case_001_0003.nii.gz"
    assert fn.phase_file_name("case_001", 3, ending="") == "case_001_0003"
    assert fn.phase_file_name("*", 0) == "*_0000.nii.gz"
    assert fn.split_phase_name("case_003.nii.gz") is None and fn.split_phase_name("case_0003.nii.gz.bak") is None
    assert (fn.case_file_name("c"), fn.sidecar_name("c"), fn.archive_name("c"), fn.kinetic_map_name("c")) == (
        "c.nii.gz", "c.json", "c.npz", "c_kinetics.nii.gz")
    assert (fn.CHECKPOINT_LATEST, fn.CHECKPOINT_BEST, fn.CHECKPOINT_FINAL, fn.CHECKPOINT_GLOB) == (
        "checkpoint_latest.pth", "checkpoint_best.pth", "checkpoint_final.pth", "checkpoint_*.pth")
    assert [fn.checkpoint_name(k) for k in fn.CHECKPOINT_KINDS] == [
        "checkpoint_final.pth", "checkpoint_best.pth", "checkpoint_latest.pth"]


def test_folder_names_as_on_disk():
    assert dn.dataset_folder_name(1, "Phantom") == "Dataset001_Phantom"
    assert dn.DATASET_PATTERN.match("Dataset001_Phantom").groups() == ("001", "Phantom")
    assert dn.DATASET_PATTERN.match("Dataset01_Phantom") is None
    assert (dn.IMAGES_TR, dn.LABELS_TR, dn.MASKS_TR, dn.TIMES_TR) == ("imagesTr", "labelsTr", "masksTr", "timesTr")
    assert dn.images_folder_name("Ts") == "imagesTs"
    assert dn.plans_data_folder_name("plans") == "plans_data"
    assert dn.model_folder_name("RecursiveTrainer", "plans") == "RecursiveTrainer__plans"
    assert dn.fold_folder_name(0) == "fold_0" and dn.fold_folder_name(dn.FOLD_ALL) == "fold_all"
    assert dn.validation_folder(Path("m"), 2) == Path("m/fold_2/validation")
