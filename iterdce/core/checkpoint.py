"""Checkpoints: tensors and plain metadata only, written atomically, read with ``weights_only=True``."""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from iterdce.core.atomic import write_atomic
from iterdce.core.errors import IterdceError, torch_load_reason
from iterdce.core.kinetic_terms import SmoothingGridError


class CheckpointError(IterdceError, ValueError):
    """A checkpoint is missing, unreadable, unsafe or does not fit; the message names the file."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """``torch.save`` to a temporary name, then rename: an interrupted save never leaves a broken file."""
    write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load safely (no pickled code); clear errors for missing, corrupt or unsafe files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found", path)
    return _load(path, path, map_location)


def load_checkpoint_bytes(data: bytes, name: str | Path, map_location: str | torch.device = "cpu"
                          ) -> dict[str, Any]:
    """``load_checkpoint`` of a checkpoint held in memory (a member of a shared model's zip, checked before
    anything is extracted); ``name`` is what the errors call it."""
    return _load(io.BytesIO(data), Path(name), map_location)


def _load(source: Path | io.BytesIO, path: Path, map_location: str | torch.device) -> dict[str, Any]:
    try:
        payload = torch.load(source, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():
            raise CheckpointError(f"{path}: refused: it holds Python objects other than tensors and plain values, "
                                  "which iterdce_train never writes; load only checkpoints written by iterdce_train",
                                  path) from exc
        raise CheckpointError(f"{path}: cannot be read as an iterdce checkpoint (not a checkpoint file, or "
                              "corrupted)", path) from exc
    except Exception as exc:  # torch raises many types for truncated or foreign files
        raise CheckpointError(f"{path}: cannot be read as an iterdce checkpoint ({torch_load_reason(exc)})",
                              path) from exc
    if not isinstance(payload, dict) or "network_state" not in payload or "model_config" not in payload:
        raise CheckpointError(f"{path}: not an iterdce checkpoint (network_state / model_config missing)", path)
    return payload


def load_weights(model: torch.nn.Module, payload: dict[str, Any], path: Path) -> None:
    """Copy a checkpoint's weights into ``model``; weights that do not fit its config name the file."""
    try:
        model.load_state_dict(payload["network_state"])
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        state = payload["network_state"] if isinstance(payload["network_state"], dict) else {}
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        wrong = [k for k in own if k in state and getattr(state[k], "shape", None) != own[k].shape]
        detail = "; ".join(f"{n} {label}" for n, label in ((len(missing), "missing"), (len(unexpected), "unexpected"),
                                                            (len(wrong), "of the wrong shape")) if n)
        raise CheckpointError(f"{path}: its weights do not fit its model_config ({detail or type(exc).__name__} "
                              "tensors); the file was altered or mixes two networks", path) from exc
    except SmoothingGridError as exc:  # the prior's smoothing buffers hold values no grid can have
        raise CheckpointError(f"{path}: {exc}; the file was altered", path) from exc


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the model itself)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, torch.nn.Module) else model


def load_compatible_weights(model: torch.nn.Module, path: Path, map_location: str | torch.device = "cpu") -> int:
    """Initialise ``model`` from any iterdce checkpoint whose network has the same layers and shapes
    (``--pretrained-weights``); the plan, data and trainer may differ. Returns the number of tensors loaded.

    Raises CheckpointError naming the file and every missing, unexpected or differently shaped layer."""
    payload = load_checkpoint(path, map_location)
    source: dict[str, torch.Tensor] = payload["network_state"]
    target = model.state_dict()
    missing = sorted(set(target) - set(source))
    unexpected = sorted(set(source) - set(target))
    shapes = sorted(f"{k} {tuple(source[k].shape)} vs {tuple(target[k].shape)}" for k in set(source) & set(target)
                    if source[k].shape != target[k].shape)
    if missing or unexpected or shapes:
        parts = [f"{label}: {', '.join(items[:6])}{' ...' if len(items) > 6 else ''}"
                 for label, items in (("missing in the checkpoint", missing), ("not in this network", unexpected),
                                      ("shape (checkpoint vs this network)", shapes)) if items]
        raise CheckpointError(f"{path}: its network does not fit this plan's ({'; '.join(parts)}); "
                              "plan with the same preset as the pretrained model")
    model.load_state_dict(source)
    return len(source)
