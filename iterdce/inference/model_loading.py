"""Finding and loading the trained folds of a model folder (``<results>/<Dataset>/<Trainer>__<plans>``)."""
from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from iterdce.core.checkpoint import CheckpointError, load_checkpoint, load_weights
from iterdce.core.errors import UsageError
from iterdce.core.file_names import CHECKPOINT_GLOB, CHECKPOINT_KINDS, checkpoint_name
from iterdce.core.folder_names import FOLD_GLOB, fold_folder_name
from iterdce.network.config import ModelConfig, checkpoint_model_config
from iterdce.network.synthesizer import build_synthesizer


def available_folds(model_folder: Path, checkpoint: str) -> list[str]:
    """Fold folders of ``model_folder`` holding ``checkpoint_<checkpoint>.pth``."""
    if not model_folder.is_dir():
        return []
    return sorted(p.name for p in model_folder.glob(FOLD_GLOB) if (p / checkpoint_name(checkpoint)).is_file())


def trained_folds(model_folder: Path, checkpoint: str) -> list[int | str]:
    """The folds of ``model_folder`` holding ``checkpoint_<checkpoint>.pth`` (``fold_3`` -> 3, ``fold_all`` ->
    ``all``); fold 0 when there is none, so that loading names what the folder holds."""
    prefix = fold_folder_name("")
    names = [name.removeprefix(prefix) for name in available_folds(model_folder, checkpoint)]
    return [int(n) if n.isdigit() else n for n in names] or [0]


def describe_model_folder(model_folder: Path) -> str:
    """What a model folder holds (each ``fold_*`` with its checkpoint files), or the trainer folders beside it
    when it does not exist: the context an error message needs to say what *is* there."""
    if not model_folder.is_dir():
        parent = model_folder.parent
        siblings = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
        return (f"{model_folder} does not exist; model folders in {parent}: {', '.join(siblings) or 'none'}"
                if parent.is_dir() else f"{model_folder} does not exist (nor does {parent})")
    folds = sorted(p for p in model_folder.glob(FOLD_GLOB) if p.is_dir())
    if not folds:
        return f"{model_folder} holds no {FOLD_GLOB} folder"
    listing = [f"{p.name}: {', '.join(sorted(c.name for c in p.glob(CHECKPOINT_GLOB))) or 'no checkpoint'}"
               for p in folds]
    return f"{model_folder} holds " + "; ".join(listing)


def load_fold_models(model_folder: Path, folds: Sequence[int | str], checkpoint: str = "final",
                     device: torch.device | str = "cpu") -> tuple[list[nn.Module], list[str], ModelConfig]:
    """The requested folds present on disk (a warning names the missing ones; none is an error listing what
    exists), as eval-mode models on ``device``; also returns the folds used and the shared model config."""
    if checkpoint not in CHECKPOINT_KINDS:
        raise UsageError(f"--checkpoint must be one of {CHECKPOINT_KINDS}, got {checkpoint!r}")
    wanted = [fold_folder_name(f) for f in folds]
    present = available_folds(model_folder, checkpoint)
    used = [f for f in wanted if f in present]
    missing = [f for f in wanted if f not in present]
    if not used:
        raise CheckpointError(f"{model_folder}: none of {', '.join(wanted)} has {checkpoint_name(checkpoint)} "
                              f"({describe_model_folder(model_folder)})")
    if missing:
        warnings.warn(f"{model_folder}: {', '.join(missing)} missing {checkpoint_name(checkpoint)}; "
                      f"predicting with {', '.join(used)}", stacklevel=2)
    models: list[nn.Module] = []
    config: ModelConfig | None = None
    for fold in used:
        path = model_folder / fold / checkpoint_name(checkpoint)
        payload = load_checkpoint(path, "cpu")
        found = checkpoint_model_config(payload, path)
        if config is not None and found != config:
            raise CheckpointError(f"{model_folder / fold}: its network differs from {used[0]}'s")
        config = found
        model = build_synthesizer(config)
        load_weights(model, payload, path)
        prior = getattr(model, "kinetic_prior", None)
        if prior is not None and not prior.is_fitted():
            raise CheckpointError(f"{path}: its kinetic prior was never fitted (not a checkpoint iterdce_train "
                                  "wrote after its first step)", path)
        models.append(model.to(device).eval())
    assert config is not None  # used is not empty
    return models, used, config
