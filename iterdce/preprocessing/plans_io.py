"""Reading, checking and writing plans.json: a versioned schema with errors that name the file and key."""
from __future__ import annotations

from pathlib import Path

from iterdce.atomic import write_json_atomic
from iterdce.errors import IterdceError, JSONFileError
from iterdce.json_io import read_json
from iterdce.preprocessing.planner import PLANS_VERSION

PLANS_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "version": int,
    "plans_name": str,
    "dataset": str,
    "spacing": list,
    "phase_times_s": list,
    "input_phases": list,
    "target_phases": list,
    "reference_phase": int,
    "normalization": dict,
    "intensity_range": list,
    "patch_size": list,
    "batch_size": int,
    "network": dict,
    "loss_weights": dict,
    "ssim": dict,
    "perceptual": dict,
    "optimizer": dict,
    "training": dict,
    "augmentation": dict,
}
NETWORK_KEYS = ("in_channels", "features_per_stage", "pool_per_stage", "time_embedding_dim", "time_scale_s",
                "use_time_embedding", "use_convlstm")
LOSS_KEYS = ("l1", "ssim", "perceptual", "gradient_difference")
# where the loss is averaged: the whole patch (the paper) or the body foreground of the patch only
LOSS_MASKS = ("none", "foreground")


class PlansError(IterdceError, ValueError):
    """plans.json is missing, malformed or from another version."""


def plans_problems(plans: dict) -> list[str]:
    """Every schema violation of a plan (empty: valid)."""
    problems = []
    for key, kind in PLANS_SCHEMA.items():
        if key not in plans:
            problems.append(f"missing key {key!r}")
        elif not isinstance(plans[key], kind) or isinstance(plans[key], bool) and kind is int:
            problems.append(f"{key!r} must be {getattr(kind, '__name__', kind)}, got {type(plans[key]).__name__}")
    if problems:
        return problems
    if plans["version"] != PLANS_VERSION:
        problems.append(f"version {plans['version']} is not supported (this iterdce reads version {PLANS_VERSION})")
    for key in ("spacing", "patch_size"):
        if len(plans[key]) != 3 or not all(isinstance(v, (int, float)) and v > 0 for v in plans[key]):
            problems.append(f"{key!r} must hold 3 positive numbers, got {plans[key]}")
    n_phases = len(plans["phase_times_s"])
    phases = plans["input_phases"] + plans["target_phases"]
    if sorted(phases) != list(range(n_phases)):
        problems.append(f"input_phases + target_phases must be 0..{n_phases - 1} once each, got {phases}")
    if plans["reference_phase"] not in plans["input_phases"]:
        problems.append("reference_phase must be one of input_phases")
    if plans["normalization"].get("scheme") != "ti_norm":
        problems.append("normalization.scheme must be 'ti_norm'")
    if plans["normalization"].get("mask") not in ("breast", "foreground", "nonzero"):
        problems.append("normalization.mask must be 'breast', 'foreground' or 'nonzero'")
    problems += [f"network.{k} missing" for k in NETWORK_KEYS if k not in plans["network"]]
    problems += [f"loss_weights.{k} missing" for k in LOSS_KEYS if k not in plans["loss_weights"]]
    if plans["training"].get("loss_mask", "none") not in LOSS_MASKS:
        problems.append(f"training.loss_mask must be one of {list(LOSS_MASKS)}")
    if plans["batch_size"] < 1:
        problems.append("batch_size must be >= 1")
    bounds = plans["intensity_range"]
    if len(bounds) != 2 or not all(isinstance(v, (int, float)) for v in bounds) or not bounds[1] > bounds[0]:
        problems.append(f"intensity_range must be [low, high] with high > low, got {bounds}")
    return problems


def load_plans(path: Path) -> dict:
    """Read and schema-check a plan; PlansError names the file and every problem."""
    path = Path(path)
    if not path.exists():
        raise PlansError(f"{path}: no plan found; run iterdce_plan_and_preprocess first", path)
    try:
        plans = read_json(path)
    except JSONFileError as exc:
        raise PlansError(str(exc), path) from exc
    problems = plans_problems(plans) if isinstance(plans, dict) else ["top level must be an object"]
    if problems:
        raise PlansError(f"{path}: " + "; ".join(problems), path)
    return plans


def save_plans(plans: dict, path: Path) -> None:
    """Check and write a plan atomically."""
    problems = plans_problems(plans)
    if problems:
        raise PlansError(f"{path}: refusing to write an invalid plan: " + "; ".join(problems))
    write_json_atomic(path, plans)
