"""The cross-site benchmark's variants: plan overrides kept as JSON files in benchmarks/variants/, checked against
the plan schema when applied.

A variant file holds ``about`` (what it changes and why), ``plan`` (sections and keys to change, as
``Plans.replace`` takes them) and optionally ``default_loss_weights: true`` (the loss weights start from
``iterdce.losses.synthesis.DEFAULT_LOSS_WEIGHTS``, the paper's, instead of the preset's). variants/order.json lists
the names in the order the benchmark runs and reports them (each ablation step one change more than the one
before). A misspelt section or key fails loudly: the plan schema rejects it (``PlansError``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

VARIANTS_DIR = Path(__file__).resolve().parent / "variants"
ORDER_FILE = VARIANTS_DIR / "order.json"
FILE_KEYS = {"about", "default_loss_weights", "plan"}


class VariantError(ValueError):
    """A variant file that does not exist, is not listed in order.json, or has keys other than ``FILE_KEYS``."""


def variant_names() -> list[str]:
    """The variants in their benchmark order; each listed name must have its file and each file its listing."""
    names = json.loads(ORDER_FILE.read_text())
    files = {p.stem for p in VARIANTS_DIR.glob("*.json")} - {ORDER_FILE.stem}
    if set(names) != files or len(names) != len(files):
        raise VariantError(f"{ORDER_FILE} lists {sorted(names)} but {VARIANTS_DIR} holds {sorted(files)}")
    return names


def load_variant(name: str) -> dict[str, Any]:
    """The variant file ``variants/<name>.json`` as a dict, its keys checked."""
    path = VARIANTS_DIR / f"{name}.json"
    if name not in variant_names():
        raise VariantError(f"unknown variant {name!r}; the variants are {variant_names()}")
    variant = json.loads(path.read_text())
    unknown = sorted(set(variant) - FILE_KEYS)
    if unknown or "plan" not in variant:
        raise VariantError(f"{path}: keys must be {sorted(FILE_KEYS)} ('plan' required), got unknown {unknown}")
    return variant


def apply_overrides(plans: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``plans`` (JSON form) with some keys of its sections (or top-level fields) changed, through the schema's own
    ``Plans.replace``: the result is a checked plan, an unknown key raises ``PlansError``."""
    from iterdce.preprocessing.plan_schema import Plans

    return Plans.from_dict(plans).replace(**overrides).to_dict()


def apply_variant(plans: dict[str, Any], name: str) -> dict[str, Any]:
    """``plans`` (JSON form) changed as the variant ``name`` says; checked against the plan schema."""
    from iterdce.losses.synthesis import DEFAULT_LOSS_WEIGHTS

    variant = load_variant(name)
    if variant.get("default_loss_weights", False):
        plans = apply_overrides(plans, {"loss_weights": DEFAULT_LOSS_WEIGHTS})
    return apply_overrides(plans, variant["plan"])
