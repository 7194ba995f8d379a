"""The names of the folders iterdce reads and writes, each rule spelled once.

- a raw or preprocessed dataset: ``DatasetNNN_Name`` (as in nnU-Net), holding, in the flat layout,
  ``imagesTr/`` (phase images), ``labelsTr/`` (lesion masks), ``masksTr/`` (breast masks), ``timesTr/`` (timing
  sidecars), or in the per-case layout ``images/<case>/``, ``segmentations/`` and ``masks/``;
- a preprocessed plan's cases: ``<Dataset>/<plans>_data/``;
- a trained model: ``<results>/<Dataset>/<Trainer>__<plans>/``, one ``fold_<k>/`` (or ``fold_all/``) per fold,
  each with its checkpoints and ``validation/``.

File names (phase images, sidecars, checkpoints) are in :mod:`iterdce.core.file_names`.
"""
from __future__ import annotations

import re
from pathlib import Path

DATASET_PATTERN = re.compile(r"^Dataset(\d{3})_(.+)$")
TRAINING_SPLIT = "Tr"
FOLD_ALL = "all"  # the fold that trains and validates on every case
FOLD_GLOB = "fold_*"
VALIDATION_FOLDER = "validation"
PLANS_DATA_SUFFIX = "_data"
# the per-case (MAMA-MIA) layout
PER_CASE_IMAGES = "images"
PER_CASE_LABELS = "segmentations"
PER_CASE_MASKS = "masks"
# installed shared models: <results>/models/<name>/ (iterdce_install_model; ITERDCE_MODELS or --models-root elsewhere)
MODELS_FOLDER = "models"
MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}$")  # an installed model's name: one folder, no dots first


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``DatasetNNN_Name``: 1, ``Phantom`` -> ``Dataset001_Phantom``."""
    return f"Dataset{dataset_id:03d}_{name}"


def images_folder_name(split: str = TRAINING_SPLIT) -> str:
    """``imagesTr``: the phase images of a flat or 4D dataset."""
    return f"images{split}"


def labels_folder_name(split: str = TRAINING_SPLIT) -> str:
    """``labelsTr``: one lesion mask ``<case>.nii.gz`` per case."""
    return f"labels{split}"


def masks_folder_name(split: str = TRAINING_SPLIT) -> str:
    """``masksTr``: one breast mask ``<case>.nii.gz`` per case."""
    return f"masks{split}"


def times_folder_name(split: str = TRAINING_SPLIT) -> str:
    """``timesTr``: one timing sidecar ``<case>.json`` per case."""
    return f"times{split}"


IMAGES_TR = images_folder_name()
LABELS_TR = labels_folder_name()
MASKS_TR = masks_folder_name()
TIMES_TR = times_folder_name()


def plans_data_folder_name(plans_name: str) -> str:
    """``<plans>_data``: the preprocessed cases of a plan, beside ``<plans>.json``."""
    return f"{plans_name}{PLANS_DATA_SUFFIX}"


def model_folder_name(trainer: str, plans_name: str) -> str:
    """``<Trainer>__<plans>``: the folder of a trained model under ``<results>/<Dataset>/``."""
    return f"{trainer}__{plans_name}"


def fold_folder_name(fold: int | str) -> str:
    """``fold_<k>``, or ``fold_all`` for the fold trained on every case."""
    return f"fold_{fold}"


def is_model_name(name: str) -> bool:
    """Whether ``name`` can name an installed model (``MODEL_NAME``: letters, digits, ``_ . -``, no folders)."""
    return bool(MODEL_NAME.fullmatch(name))


def fold_folder(model_folder: Path, fold: int | str) -> Path:
    """``<model folder>/fold_<k>``."""
    return model_folder / fold_folder_name(fold)


def validation_folder(model_folder: Path, fold: int | str) -> Path:
    """``<model folder>/fold_<k>/validation``: a fold's exported and scored validation cases."""
    return fold_folder(model_folder, fold) / VALIDATION_FOLDER
