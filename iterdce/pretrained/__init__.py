"""The model shipped with iterdce: trained on the phantom's site profiles, usable with no training at all
(``iterdce_predict --pretrained``) or as the starting point of fine-tuning (``iterdce_train --pretrained-weights``).

How it was trained, and what it scores, is in documentation/training.md ("The shipped pretrained model").
"""
from __future__ import annotations

from pathlib import Path

PRETRAINED_NAME = "phantom_sites"
PRETRAINED_FOLD = "all"


def pretrained_model_folder() -> Path:
    """The shipped model folder (plans.json + fold_all/checkpoint_final.pth)."""
    return Path(__file__).resolve().parent / PRETRAINED_NAME


def pretrained_checkpoint() -> Path:
    """Its checkpoint, for ``iterdce_train --pretrained-weights``."""
    return pretrained_model_folder() / f"fold_{PRETRAINED_FOLD}" / "checkpoint_final.pth"
