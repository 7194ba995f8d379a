"""The training state a checkpoint carries beside the network (``network/config.py`` types its model config):
what ``iterdce_train --continue`` restores. One typed record, so the trainer neither writes nor reads loose keys.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from iterdce.core.checkpoint import CheckpointError


@dataclass(frozen=True)
class TrainingState:
    """Optimizer, epoch, best validation score, RNG and log of a run at the end of an epoch."""

    optimizer_state: dict[str, Any]
    epoch: int
    best_val: float
    torch_rng: torch.Tensor
    log: dict[str, Any]  # TrainingLog.state(): {"history": ..., "notes": ...}

    def to_payload(self) -> dict[str, Any]:
        """The checkpoint keys of this state."""
        return {"optimizer_state": self.optimizer_state, "epoch": self.epoch, "best_val": self.best_val,
                "torch_rng": self.torch_rng, "log": self.log}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], path: Path) -> TrainingState:
        """The state of a loaded checkpoint; CheckpointError names ``path`` when a key is missing or malformed
        (e.g. a checkpoint exported for prediction only)."""
        try:
            log = payload["log"]
            if not isinstance(log, dict) or not {"history", "notes"} <= set(log):
                raise ValueError("log must hold history and notes")
            return cls(dict(payload["optimizer_state"]), int(payload["epoch"]), float(payload["best_val"]),
                       payload["torch_rng"].cpu(), log)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise CheckpointError(f"{path}: cannot resume from it ({type(exc).__name__}: {exc}); it holds no "
                                  "complete training state", path) from exc
