"""Finding and loading the trained folds of a model folder (``<results>/<Dataset>/<Trainer>__<plans>``)."""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from iterdce.network.synthesizer import build_synthesizer
from iterdce.training.checkpoint import CheckpointError, load_checkpoint

CHECKPOINTS = ("final", "best", "latest")


def available_folds(model_folder: Path, checkpoint: str) -> list[str]:
    """Fold folders of ``model_folder`` holding ``checkpoint_<checkpoint>.pth``."""
    if not model_folder.is_dir():
        return []
    return sorted(p.name for p in model_folder.glob("fold_*") if (p / f"checkpoint_{checkpoint}.pth").is_file())


def load_fold_models(model_folder: Path, folds: Sequence[int | str], checkpoint: str = "final",
                     device: torch.device | str = "cpu") -> tuple[list[nn.Module], list[str], dict]:
    """The requested folds present on disk (a warning names the missing ones; none is an error listing what
    exists), as eval-mode models on ``device``; also returns the folds used and the shared model config."""
    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint must be one of {CHECKPOINTS}, got {checkpoint!r}")
    wanted = [f"fold_{f}" for f in folds]
    present = available_folds(model_folder, checkpoint)
    used = [f for f in wanted if f in present]
    missing = [f for f in wanted if f not in present]
    if not used:
        raise CheckpointError(f"{model_folder}: none of {', '.join(wanted)} has checkpoint_{checkpoint}.pth "
                              f"(folds with it: {', '.join(present) or 'none'})")
    if missing:
        warnings.warn(f"{model_folder}: {', '.join(missing)} missing checkpoint_{checkpoint}.pth; "
                      f"predicting with {', '.join(used)}", stacklevel=2)
    models, config = [], None
    for fold in used:
        payload = load_checkpoint(model_folder / fold / f"checkpoint_{checkpoint}.pth", "cpu")
        if config is not None and payload["model_config"] != config:
            raise CheckpointError(f"{model_folder / fold}: its network differs from {used[0]}'s")
        config = payload["model_config"]
        model = build_synthesizer(config)
        model.load_state_dict(payload["network_state"])
        models.append(model.to(device).eval())
    return models, used, config
