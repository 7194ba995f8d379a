"""benchmarks/variants/: every cross-site variant applies to a plan through the plan schema, and a misspelt key
fails loudly."""
from __future__ import annotations

import json

import pytest

from benchmarks import cross_site_variants
from benchmarks.cross_site_variants import VariantError, apply_variant, variant_names
from benchmarks.gpu_check_fixtures import make_plan
from iterdce.losses.synthesis import DEFAULT_LOSS_WEIGHTS
from iterdce.preprocessing.plan_schema import PlansError


@pytest.mark.parametrize("name", variant_names())
def test_every_variant_applies_to_the_cpu_presets_plan(name: str) -> None:
    plans = make_plan("cpu", dry_run=True)
    changed = apply_variant(plans, name)
    assert changed["patch_size"] == plans["patch_size"]  # only what the variant names changes
    if name == "preset":
        assert changed == plans


def test_the_paper_variant_takes_the_packages_default_loss_weights() -> None:
    changed = apply_variant(make_plan("cpu", dry_run=True), "paper")
    assert changed["loss_weights"] == DEFAULT_LOSS_WEIGHTS
    assert changed["training"]["loss_mask"] == "none"


def test_a_misspelt_key_fails(tmp_path, monkeypatch) -> None:
    for name in variant_names():
        (tmp_path / f"{name}.json").write_text((cross_site_variants.VARIANTS_DIR / f"{name}.json").read_text())
    (tmp_path / "order.json").write_text(json.dumps(variant_names()))
    monkeypatch.setattr(cross_site_variants, "VARIANTS_DIR", tmp_path)
    monkeypatch.setattr(cross_site_variants, "ORDER_FILE", tmp_path / "order.json")
    (tmp_path / "preset.json").write_text(json.dumps({"plan": {"training": {"loss_msk": "none"}}}))
    with pytest.raises(PlansError, match="training.loss_msk"):
        apply_variant(make_plan("cpu", dry_run=True), "preset")
    (tmp_path / "preset.json").write_text(json.dumps({"plan": {}, "abuot": "typo"}))
    with pytest.raises(VariantError, match="abuot"):
        apply_variant(make_plan("cpu", dry_run=True), "preset")
    (tmp_path / "extra.json").write_text(json.dumps({"plan": {}}))
    with pytest.raises(VariantError, match="order.json"):
        variant_names()
