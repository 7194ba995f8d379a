"""The names of the files iterdce reads and writes, each rule spelled once.

- a phase image: ``<case>_<pppp>.nii.gz`` (or ``.nii``), the case id, an underscore and a 4-digit phase index,
  as in nnU-Net's ``<case>_<channel>`` rule; raw datasets, prediction inputs and outputs all use it;
- a per-case file: ``<case>.nii.gz`` (lesion or breast mask), ``<case>.json`` (timing sidecar, preprocessed
  properties), ``<case>.npz`` (preprocessed arrays), ``<case>_kinetics.nii.gz`` (the kinetic map);
- a checkpoint: ``checkpoint_<kind>.pth`` with kind ``latest``, ``best`` or ``final``.

Folder names (folds, model folders, dataset subfolders) are in :mod:`iterdce.core.folder_names`.
"""
from __future__ import annotations

import re

NIFTI_ENDING = ".nii.gz"  # what iterdce writes
NIFTI_ENDINGS = (".nii.gz", ".nii")  # what it reads
PHASE_FILE = re.compile(r"^(?P<case>.+)_(?P<phase>\d{4})(?P<ending>\.nii\.gz|\.nii)$")
NIFTI_FILE = re.compile(r"^(?P<case>.+?)(?P<ending>\.nii\.gz|\.nii)$")

KINETIC_MAP_SUFFIX = "_kinetics.nii.gz"
SIDECAR_SUFFIX = ".json"
ARCHIVE_SUFFIX = ".npz"



def phase_file_name(case_id: str, phase: int, ending: str = NIFTI_ENDING) -> str:
    """``<case>_<pppp><ending>``: ``case_001``, 3 -> ``case_001_0003.nii.gz`` (``ending=""``: the bare stem;
    ``case_id="*"``: a glob for that phase of every case)."""
    return f"{case_id}_{phase:04d}{ending}"


def split_phase_name(name: str) -> tuple[str, int, str] | None:
    """``case_0003.nii.gz`` -> (``case``, 3, ``.nii.gz``); None if the name does not fit."""
    match = PHASE_FILE.match(name)
    if not match:
        return None
    return match["case"], int(match["phase"]), match["ending"]


def case_file_name(case_id: str, ending: str = NIFTI_ENDING) -> str:
    """``<case><ending>``: one file per case (a lesion or breast mask, a 4D image)."""
    return f"{case_id}{ending}"


def sidecar_name(case_id: str) -> str:
    """``<case>.json``: a case's timing sidecar (raw data, predictions) or its preprocessed properties."""
    return f"{case_id}{SIDECAR_SUFFIX}"


# the entry of a prediction's <case>.json holding its out-of-distribution check (inference/ood.py), which
# iterdce_evaluate copies into per_case.csv as the columns ood_score and ood_flag
SIDECAR_OOD_KEY = "ood"


# prediction uncertainty (iterdce_predict --uncertainty): the interval of each synthesized phase, the lesion
# curves with their bands and curve-type probabilities, the kinetic map's confidence layer; and the model
# folder's split-conformal calibration (iterdce_calibrate)
LOWER_SUFFIX = "_lower"
UPPER_SUFFIX = "_upper"
KINETICS_JSON_SUFFIX = "_kinetics.json"
# per lesion of <case>_kinetics.json: the curve-type probabilities of the references it is compared with
KINETICS_REFERENCES_KEY = "reference_probabilities"
REFERENCE_TYPE_FREQUENCIES = "type_frequencies"  # the calibration lesions' true type shares (a constant answer)
REFERENCE_KINETIC_PRIOR = "kinetic_prior"  # the model's kinetic prior alone, read with its own calibrated scores
KINETICS_REFERENCES = (REFERENCE_TYPE_FREQUENCIES, REFERENCE_KINETIC_PRIOR)
KINETIC_CONFIDENCE_SUFFIX = "_kinetics_confidence.nii.gz"
CONFORMAL_CALIBRATION = "conformal_calibration.json"


def bound_file_name(case_id: str, phase: int, upper: bool) -> str:
    """``<case>_<pppp>_lower.nii.gz`` / ``_upper.nii.gz``: the interval of a synthesized phase."""
    return f"{phase_file_name(case_id, phase, '')}{UPPER_SUFFIX if upper else LOWER_SUFFIX}{NIFTI_ENDING}"


def kinetics_json_name(case_id: str) -> str:
    """``<case>_kinetics.json``: each lesion's predicted curve, its band and its curve-type probabilities."""
    return f"{case_id}{KINETICS_JSON_SUFFIX}"


def kinetic_confidence_name(case_id: str) -> str:
    """``<case>_kinetics_confidence.nii.gz``: the probability of the kinetic map's curve type per voxel."""
    return f"{case_id}{KINETIC_CONFIDENCE_SUFFIX}"


def archive_name(case_id: str) -> str:
    """``<case>.npz``: a preprocessed case's arrays."""
    return f"{case_id}{ARCHIVE_SUFFIX}"


def kinetic_map_name(case_id: str) -> str:
    """``<case>_kinetics.nii.gz``: the voxel-wise curve-type map of a prediction."""
    return f"{case_id}{KINETIC_MAP_SUFFIX}"


def checkpoint_name(kind: str) -> str:
    """``checkpoint_<kind>.pth`` for ``latest``, ``best``, ``final`` (what ``--checkpoint`` names)."""
    return f"checkpoint_{kind}.pth"


CHECKPOINT_LATEST = checkpoint_name("latest")  # every epoch, for --continue
CHECKPOINT_BEST = checkpoint_name("best")  # the best validation loss so far
CHECKPOINT_FINAL = checkpoint_name("final")  # the end of training; what prediction loads by default
CHECKPOINT_GLOB = checkpoint_name("*")
CHECKPOINT_KINDS = ("final", "best", "latest")  # what prediction may load

# a shared model (iterdce_export_model / iterdce_install_model): a zip of a model folder whose top level holds the
# card and the manifest (the SHA-256 of every other member)
MODEL_CARD_JSON = "model_card.json"
MODEL_CARD_MD = "model_card.md"
MODEL_MANIFEST = "manifest.json"
MODEL_ZIP_SUFFIX = ".zip"
CV_SUMMARY = "cv_summary.json"  # a model folder's cross-validation summary (iterdce_evaluate --cv)
TRAINING_LOG = "training_log.json"  # a fold's training log
