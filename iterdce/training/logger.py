"""Training log: per-epoch values in ``training_log.json`` and a ``progress.png`` plot of them."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from iterdce.core.atomic import write_atomic, write_json_atomic  # noqa: E402
from iterdce.core.file_names import TRAINING_LOG  # noqa: E402


class TrainingLog:
    """Lists of per-epoch values keyed by name, plus free-text notes; survives checkpoint round trips."""

    def __init__(self, history: dict[str, list] | None = None, notes: list[str] | None = None) -> None:
        self.history: dict[str, list] = {k: list(v) for k, v in (history or {}).items()}
        self.notes: list[str] = list(notes or [])

    def log(self, epoch: int, **values: float) -> None:
        """Record ``values`` for ``epoch`` (missing keys stay absent for that epoch)."""
        self.history.setdefault("epoch", []).append(epoch)
        n = len(self.history["epoch"])
        for key, value in values.items():
            column = self.history.setdefault(key, [])
            column.extend([None] * (n - 1 - len(column)))
            column.append(float(value))

    def state(self) -> dict:
        return {"history": self.history, "notes": self.notes}

    def write(self, folder: Path, extra: dict | None = None) -> None:
        """``training_log.json`` and ``progress.png`` into ``folder``, atomically."""
        write_json_atomic(folder / TRAINING_LOG, {**(extra or {}), **self.state()})
        write_atomic(folder / "progress.png", self._plot, suffix=".png")

    def _plot(self, path: Path) -> None:
        epochs = self.history.get("epoch", [])
        fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(11, 4))
        for key, axis in (("train_loss", ax_loss), ("val_loss", ax_loss), ("val_enhancement_error", ax_err),
                          ("lr", None)):
            values = self.history.get(key)
            if axis is None or not values:
                continue
            points = [(e, v) for e, v in zip(epochs, values) if v is not None]
            if points:
                axis.plot(*zip(*points), marker="o" if len(points) < 30 else None, label=key)
        ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
        ax_err.set(xlabel="epoch", ylabel="squared error (TI-norm units)", title="validation enhancement error")
        for axis in (ax_loss, ax_err):
            axis.grid(alpha=0.3)
            if axis.lines:
                axis.legend()
        fig.tight_layout()
        fig.savefig(path, format="png", dpi=90)
        plt.close(fig)
