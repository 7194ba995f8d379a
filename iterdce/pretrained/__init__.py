"""The models shipped with iterdce: trained on the phantom's site profiles, usable with no training at all
(``iterdce_predict --pretrained [NAME]``) or as the starting point of fine-tuning (``iterdce_train
--pretrained-weights``).

What each is: documentation/training.md ("The shipped pretrained models"); how each was trained and what it
scores: reports/pretrained_models.md.
"""
from __future__ import annotations

from pathlib import Path

# name -> what it was trained on; each is a folder here (plans.json + fold_all/checkpoint_final.pth)
PRETRAINED_MODELS: dict[str, str] = {
    "phantom_all_sites": "all four site profiles A-D (the default)",
    "phantom_sites_abc": "site profiles A-C only, so that site D is a held-out site (the cross-site benchmark)",
}
DEFAULT_PRETRAINED = "phantom_all_sites"
# iterdce.pretrained sits beside iterdce.core (imports nothing), so it spells the fold (FOLD_ALL) and checkpoint
# (CHECKPOINT_FINAL) names of iterdce.core.folder_names / file_names itself; tests/test_shipped_model.py loads them
PRETRAINED_FOLD = "all"


def pretrained_model_folder(name: str = DEFAULT_PRETRAINED) -> Path:
    """A shipped model's folder (plans.json + fold_all/checkpoint_final.pth)."""
    if name not in PRETRAINED_MODELS:
        raise ValueError(f"no shipped model named {name!r}; the shipped models are {', '.join(PRETRAINED_MODELS)}")
    return Path(__file__).resolve().parent / name


def pretrained_checkpoint(name: str = DEFAULT_PRETRAINED) -> Path:
    """Its checkpoint, for ``iterdce_train --pretrained-weights``."""
    return pretrained_model_folder(name) / f"fold_{PRETRAINED_FOLD}" / "checkpoint_final.pth"
