"""The synthesis loss: the weighted sum of the registered loss terms (registry.py, terms.py) between predicted and
true phases.

All terms are computed in float32 with autocast off. SSIM takes the data range of the (normalised) intensities
explicitly; nothing assumes 8-bit images. No term calls .item(), so the loss never forces a host sync; the
components are returned detached for logging.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from iterdce.losses.registry import LossInputs, default_loss_weights, loss_terms, resolve_loss_weights
from iterdce.losses.terms import gradient_difference_loss, perceptual_distance, ssim3d
from iterdce.network.med3d import Med3DFeatures

__all__ = ["DEFAULT_LOSS_WEIGHTS", "MED3D_ENV", "SynthesisLoss", "gradient_difference_loss", "perceptual_distance",
           "resolve_med3d_path", "ssim3d"]

# the built-in terms' default weights (the paper's loss; default_loss_weights() adds the user's terms)
DEFAULT_LOSS_WEIGHTS = default_loss_weights(with_extensions=False)
MED3D_ENV = "ITERDCE_MED3D_WEIGHTS"


def resolve_med3d_path(med3d_weights: str | Path | None) -> Path | None:
    """The Med3D weights path: the explicit argument, else env ITERDCE_MED3D_WEIGHTS, else None."""
    if med3d_weights is not None and str(med3d_weights) != "":
        return Path(med3d_weights)
    env = os.environ.get(MED3D_ENV, "")
    return Path(env) if env else None


class SynthesisLoss(nn.Module):
    """The sum over the registered terms of weight * term (by default 0.1*L1 + 1*(1 - SSIM) + 0.1*GDL +
    1*perceptual, the paper's), evaluated and summed in registration order.

    ``weights`` may leave out terms (they get their default weight); an unknown name is a ValueError. The terms
    that need the Med3D features use a frozen Med3D ResNet-10 loaded from `med3d_weights` (else env
    ITERDCE_MED3D_WEIGHTS); without a weights file, or with weight 0, they are disabled. Inputs are expected
    TI-normalised (already on MedicalNet's z-score scale), so they are not re-normalised per volume: that would
    hide global enhancement errors from the perceptual term.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        data_range: float,
        med3d_weights: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.weights = resolve_loss_weights(weights)
        self.loss_terms = loss_terms()
        if isinstance(data_range, bool) or not isinstance(data_range, (int, float)) or not (
            math.isfinite(data_range) and data_range > 0
        ):
            raise ValueError(f"SynthesisLoss data_range must be a positive number, got {data_range!r}")
        self.data_range = float(data_range)
        path = resolve_med3d_path(med3d_weights)
        self.med3d_path = path
        self.med3d: Med3DFeatures | None = None
        if path is not None and any(self.weights[t.name] > 0 for t in self.loss_terms if "med3d" in t.needs):
            self.med3d = Med3DFeatures(path)

    @property
    def perceptual_enabled(self) -> bool:
        """True when the Med3D perceptual term(s) are part of the loss."""
        return self.med3d is not None

    def describe(self) -> str:
        """One line for the training log: the weighted terms and whether the perceptual term is on."""
        w = self.weights
        terms = " + ".join(f"{w[t.name]}*{t.name}" for t in self.loss_terms
                           if "med3d" not in t.needs and (w[t.name] > 0 or t.evaluated_at_weight_0))
        med3d_terms = [t.name for t in self.loss_terms if "med3d" in t.needs]
        if self.perceptual_enabled:
            weighted = " + ".join(f"{w[k]}*{k}" for k in med3d_terms if w[k] > 0)
            return f"loss = {terms} + {weighted} (Med3D weights {self.med3d_path})"
        if all(w[k] == 0 for k in med3d_terms):
            why = "its weight is 0"
        else:
            why = f"no Med3D weights file (pass med3d_weights or set {MED3D_ENV})"
        return f"loss = {terms}; {' and '.join(med3d_terms)} term DISABLED: {why}; SSIM data_range={self.data_range}"

    def terms(self, pred: Tensor, target: Tensor, mask: Tensor | None, lesion: Tensor | None = None,
              sample_weights: Tensor | None = None) -> dict[str, Tensor]:
        """Each evaluated term, unweighted (float32 inputs, mask expanded to pred's shape, already multiplied by
        ``sample_weights`` when given, see ``forward``), in registration order. A term is evaluated when its
        weight is > 0 (or it is ``evaluated_at_weight_0``) and the inputs it needs are given."""
        inputs = LossInputs(pred, target, mask, lesion, sample_weights, self.data_range, self.med3d)
        present = {"lesion": lesion is not None, "med3d": self.med3d is not None}
        return {t.name: t.compute(inputs) for t in self.loss_terms
                if (self.weights[t.name] > 0 or t.evaluated_at_weight_0) and all(present[n] for n in t.needs)}

    def forward(
        self, pred: Tensor, target: Tensor, mask: Tensor | None = None, lesion: Tensor | None = None,
        sample_weights: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Total loss and the unweighted, detached terms ("l1", "ssim" = 1 - SSIM, "gradient_difference",
        "perceptual" when enabled, "lesion_l1" when weighted and ``lesion`` is given). `mask` (broadcastable to
        pred, 1 = counts) restricts the voxels; `lesion` (same form) marks the lesion voxels.

        ``sample_weights`` [B] (0 or 1: whether a sample counts) multiply the mask and the lesion voxels, so a
        sample of weight 0 adds neither loss nor gradient, and the others are pooled exactly as without it (the
        trainer leaves out the padded phases of shorter cases this way; no host synchronisation)."""
        if pred.shape != target.shape or pred.ndim != 5:
            raise ValueError(f"SynthesisLoss needs equal [B, C, X, Y, Z] shapes, got {pred.shape}, {target.shape}")
        with torch.autocast(device_type=pred.device.type, enabled=False):
            pred, target = pred.float(), target.float()
            if sample_weights is not None:
                sample_weights = sample_weights.float().reshape(-1)
                counts = sample_weights.reshape(-1, 1, 1, 1, 1)
                mask = counts if mask is None else mask.to(pred.dtype) * counts
                lesion = None if lesion is None else lesion.to(pred.dtype) * counts
            if mask is not None:
                mask = mask.to(pred.dtype).expand_as(pred)
            terms = self.terms(pred, target, mask, lesion, sample_weights)
            total = torch.stack([self.weights[k] * v for k, v in terms.items()]).sum()
        return total, {k: v.detach() for k, v in terms.items()}
