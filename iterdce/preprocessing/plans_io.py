"""Reading, migrating and writing plans.json; errors name the file and every bad key.

The file is plain JSON with a ``version``; ``load_plans`` migrates older versions in memory (the file is not
rewritten) and returns the typed ``Plans`` tree of plan_schema.py, which everything downstream reads.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from iterdce.core.atomic import write_json_atomic
from iterdce.core.errors import JSONFileError
from iterdce.core.json_io import read_json
from iterdce.preprocessing.plan_schema import PLANS_VERSION, AugmentationPlan, Plans, PlansError

__all__ = ["PLANS_VERSION", "Plans", "PlansError", "as_plans", "load_plans", "migrate_plans", "save_plans"]

# keys of version-1 plans that nothing read (SSIM's window is fixed in evaluation/metrics.py, the optimizer is
# always AdamW with polynomial decay, the network always reads two channels)
_V1_FIXED = {("ssim",): None, ("optimizer", "name"): "adamw", ("optimizer", "schedule"): "poly",
             ("network", "in_channels"): 2}


def migrate_plans(raw: dict[str, Any]) -> dict[str, Any]:
    """An older plan as the current version (a copy), one version step at a time."""
    out = raw
    if out.get("version") == 1:
        out = _version_1_to_2(out)
    if out.get("version") == 2:
        out = _version_2_to_3(out)
    if out.get("version") == 3:
        out = _version_3_to_4(out)
    return out


def _version_3_to_4(raw: dict[str, Any]) -> dict[str, Any]:
    """Version 3 -> 4: the augmentation gained the contrast-uptake factor (off, as before)."""
    out = copy.deepcopy(raw)
    if isinstance(out.get("augmentation"), dict):
        defaults = AugmentationPlan()
        out["augmentation"].setdefault("enhancement_scale_range", list(defaults.enhancement_scale_range))
        out["augmentation"].setdefault("probability_enhancement_scale", 0.0)
    out["version"] = 4
    return out


def _version_2_to_3(raw: dict[str, Any]) -> dict[str, Any]:
    """Version 2 -> 3: the targets are times, not phase indices (mixed protocols): ``phase_times_s`` and
    ``target_phases`` become ``input_times_s`` and ``target_times_s``, the one protocol of a version-2 plan is
    its longest (``max_phases``) and its target times are the trained range; and the network gained the kinetic
    prior (off, as before)."""
    out = copy.deepcopy(raw)
    times, inputs, targets = out.get("phase_times_s"), out.get("input_phases"), out.get("target_phases")
    if isinstance(times, list) and isinstance(inputs, list) and isinstance(targets, list):
        try:
            out["input_times_s"] = [times[p] for p in inputs]
            out["target_times_s"] = [times[p] for p in targets]
        except (IndexError, TypeError):
            raise PlansError(f"input_phases {inputs} / target_phases {targets} are not indices of phase_times_s "
                             f"{times}") from None
        del out["phase_times_s"], out["target_phases"]
        out["max_phases"] = len(times)
        out["trained_target_times_s"] = [min(out["target_times_s"], default=0.0),
                                         max(out["target_times_s"], default=0.0)]
    if isinstance(out.get("network"), dict):  # the kinetic prior (off: as before)
        out["network"].setdefault("kinetic_prior", False)
    out["version"] = 3
    return out


def _version_1_to_2(raw: dict[str, Any]) -> dict[str, Any]:
    """Version 1 -> 2: the fixed keys go, ``reference_phase`` lives in normalization, and the settings added
    during version 1 (``training.loss_mask``) get their defaults (a loss term left out gets its default weight in
    any version: ``Plans.from_dict``).

    A version-1 value that version 2 cannot express (another optimizer, in_channels != 2) is an error.
    """
    out = copy.deepcopy(raw)
    for path, expected in _V1_FIXED.items():
        holder = out
        for part in path[:-1]:
            holder = holder.get(part, {}) if isinstance(holder, dict) else {}
        if isinstance(holder, dict) and path[-1] in holder:
            value = holder.pop(path[-1])
            if expected is not None and value != expected:
                raise PlansError(f"{'.'.join(path)} = {value!r} is not supported (only {expected!r})")
    top = out.pop("reference_phase", None)
    norm = out.get("normalization")
    if isinstance(norm, dict) and top is not None and norm.setdefault("reference_phase", top) != top:
        raise PlansError(f"reference_phase {top} differs from normalization.reference_phase "
                         f"{norm['reference_phase']}")
    if isinstance(out.get("training"), dict):
        out["training"].setdefault("loss_mask", "none")
    out["version"] = 2
    return out


def as_plans(plans: Plans | dict[str, Any]) -> Plans:
    """A ``Plans`` from either form (a dict is migrated and checked)."""
    return plans if isinstance(plans, Plans) else Plans.from_dict(migrate_plans(plans))


def load_plans(path: Path) -> Plans:
    """Read, migrate and check a plan; PlansError names the file and every problem."""
    path = Path(path)
    if not path.exists():
        raise PlansError(f"{path}: no plan found; run iterdce_plan_and_preprocess first", path)
    try:
        raw = read_json(path)
    except JSONFileError as exc:
        raise PlansError(str(exc), path) from exc
    try:
        return as_plans(raw) if isinstance(raw, dict) else Plans.from_dict(raw)
    except PlansError as exc:
        raise PlansError(f"{path}: {exc}", path) from None


def save_plans(plans: Plans | dict[str, Any], path: Path) -> None:
    """Check and write a plan atomically (always in the current version)."""
    try:
        checked = as_plans(plans)
    except PlansError as exc:
        raise PlansError(f"{path}: refusing to write an invalid plan: {exc}", path) from None
    write_json_atomic(path, checked.to_dict())
