"""Site profiles of the phantom: per-case draws in range and deterministic, geometry, lesions, CLI."""
from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from iterdce.commands.simulate import main as simulate_main
from iterdce.core.kinetics_rule import classify_curve
from iterdce.dataset.nifti_io import read_image
from iterdce.dataset.verify import verify_dataset
from iterdce.preprocessing.orientation import to_canonical
from iterdce.simulation import simulate_dataset
from iterdce.simulation.anatomy import Tissue, build_anatomy
from iterdce.simulation.breast_structures import add_cysts, add_vessels
from iterdce.simulation.case import simulate_case
from iterdce.simulation.config import SimulationConfig
from iterdce.simulation.kinetics import Physics
from iterdce.simulation.lesion_design import LesionSpec, draw_site_lesion_specs
from iterdce.simulation.lesion_kinetics import lesion_kinetics
from iterdce.simulation.lesions import PlacedLesion, place_lesions
from iterdce.simulation.protocol import CaseProtocol, draw_protocol
from iterdce.simulation.scanner_geometry import centred_affine, stored_affine, to_stored
from iterdce.simulation.sites import SITES, load_site_profile, profile_from_json
from iterdce.simulation.tissues import tissue_maps

SHAPE = (72, 60, 44)  # stored (in-plane, in-plane, slices): room for two breasts with lesions at every site


def _in(value: float, bounds: tuple[float, float], tol: float = 1e-6) -> bool:
    return bounds[0] - tol <= value <= bounds[1] + tol


def _table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def site_d(tmp_path_factory) -> Path:
    """Three cases of the held-out site D (sagittal, oblique, LPS or RAS), made once for the module."""
    out = tmp_path_factory.mktemp("sites") / "Dataset104_SiteD"
    simulate_dataset(out, 3, shape=SHAPE, seed=5, site="D", jobs=1)
    return out


def test_builtin_profiles_valid_distinct_and_json_round_trip(tmp_path):
    for site in SITES.values():
        site.validate()
        assert profile_from_json(json.loads(json.dumps(site.to_json()))) == site
    assert SITES["D"].orientation == {"sagittal": 1.0}
    assert all(s.orientation == {"axial": 1.0} for k, s in SITES.items() if k != "D")
    assert SITES["D"].slice_mm[0] >= max(SITES[k].slice_mm[1] for k in "ABC")  # D: the coarsest slices
    assert SITES["D"].gap_s[0] > max(SITES[k].gap_s[0] for k in "ABC")
    # E: finer than every other site and than the cpu plan's 1.5 x 1.5 x 2 mm grid, strong fat saturation always
    assert SITES["E"].inplane_mm[1] <= min(SITES[k].inplane_mm[1] for k in "ABCD")
    assert SITES["E"].slice_mm[1] < 2.0 and SITES["E"].fat_suppression_prob == 1.0
    assert SITES["E"].fat_suppression_efficiency[1] < min(SITES[k].fat_suppression_efficiency[0] for k in "ABCD")
    assert SITES["F"].heart_prob == 0.0 and all(SITES[k].heart_prob == 1.0 for k in "ABCDE")
    assert replace(SITES["F"], name="E", description=SITES["E"].description, heart_prob=1.0) == SITES["E"]
    custom = tmp_path / "site.json"
    custom.write_text(json.dumps({"base": "D", "name": "E2", "snr": [50, 60]}))
    profile = load_site_profile(custom)
    assert profile.name == "E2" and profile.snr == (50.0, 60.0) and profile.slice_mm == SITES["D"].slice_mm


def test_without_the_heart_the_thorax_is_lung_and_every_other_tissue_is_the_same():
    shape, spacing = (48, 40, 12), (1.5, 1.5, 3.0)
    with_heart = build_anatomy(np.random.default_rng(3), shape, spacing)
    without = build_anatomy(np.random.default_rng(3), shape, spacing, heart=False)
    blood = with_heart.tissue == Tissue.BLOOD
    assert blood.any() and not (without.tissue == Tissue.BLOOD).any()
    assert (without.tissue[blood] == Tissue.LUNG).all()
    np.testing.assert_array_equal(without.tissue[~blood], with_heart.tissue[~blood])


def test_a_site_that_always_shows_the_heart_draws_its_protocols_as_before():
    """heart_prob 1 draws nothing more, so sites A-D keep their cases; heart_prob 0 never shows it."""
    config = SimulationConfig(shape=SHAPE, site=SITES["A"])
    no_heart = SimulationConfig(shape=SHAPE, site=replace(SITES["A"], heart_prob=0.0))
    for index in range(3):
        ours, other = draw_protocol(5, index, config), draw_protocol(5, index, no_heart)
        assert ours.heart and not other.heart
        assert replace(ours, site=None, heart=False) == replace(other, site=None)


@pytest.mark.parametrize("payload, message", [
    ({"base": "A", "snr": [60, 20]}, "snr"),
    ({"base": "A", "colour": 1}, "unknown field"),
    ({"base": "Z"}, "base"),
    ({"base": "A", "agent": {"water": 1}}, "agent"),
    ({"base": "A", "jitter_s": [0, 40]}, "jitter"),
    ({"name": "X"}, "missing"),
])
def test_bad_profiles_are_named(tmp_path, payload, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=message) as info:
        load_site_profile(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("name", sorted(SITES))
def test_protocol_draws_within_site_ranges_and_deterministic(name):
    site = SITES[name]
    config = SimulationConfig(shape=(160, 128, 48), site=site)
    protocols = [draw_protocol(3, index, config) for index in range(40)]
    assert protocols == [draw_protocol(3, index, config) for index in range(40)]
    assert protocols != [draw_protocol(4, index, config) for index in range(40)]
    for p in protocols:
        assert p.spacing[0] == p.spacing[1] and _in(p.spacing[0], site.inplane_mm)
        assert _in(p.spacing[2], site.slice_mm)
        assert site.orientation.get(p.orientation, 0) > 0 and site.axcodes.get(p.axcodes, 0) > 0
        assert _in(float(np.linalg.norm(p.oblique_deg)), site.oblique_deg)
        for value, key in ((p.snr, "snr"), (p.flip_angle_deg, "flip_deg"), (p.tr_s * 1000, "tr_ms"),
                           (p.body_fill, "body_fill"), (p.motion_mm, "motion_mm"), (p.jitter_s, "jitter_s"),
                           (p.aif_scale, "aif_scale"), (p.aif_stretch, "aif_stretch"), (p.vessels, "vessels"),
                           (p.cysts, "cysts")):
            assert _in(value, getattr(site, key)), key
        assert p.bpe_range == site.bpe_ktrans and p.bias_range == site.bias
        assert site.field_strength_t.get(f"{p.field_strength_t:.1f}", 0) > 0 and site.agent.get(p.agent, 0) > 0
        times = np.array(p.nominal_times_s)
        assert times[0] == 0 and _in(times[1], site.first_post_s) and len(times) == site.n_phases
        assert np.allclose(np.diff(times[1:]), np.diff(times[1:])[0], atol=0.11)
        assert _in(float(np.diff(times[1:])[0]), site.gap_s, tol=0.11)
    if site.fat_suppression_prob not in (0.0, 1.0):
        assert len({p.fat_suppression for p in protocols}) == 2


def test_stored_arrays_reorient_back_to_the_canonical_anatomy():
    rng = np.random.default_rng(0)
    for orientation in ("axial", "sagittal"):
        for codes in ("RAS", "LPS"):
            protocol = CaseProtocol(shape=(12, 10, 6), spacing=(0.7, 0.7, 2.5), orientation=orientation,
                                    axcodes=codes, oblique_deg=(2.0, -4.0, 3.0))
            canonical = rng.standard_normal((2,) + protocol.canonical_shape)
            stored = to_stored(canonical, protocol)
            affine = stored_affine(protocol)
            assert stored.shape[1:] == (12, 10, 6)
            np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), (0.7, 0.7, 2.5))
            assert nib.aff2axcodes(affine) == protocol.stored_codes
            back, back_affine, _ = to_canonical(stored, affine)
            assert np.array_equal(back, canonical)
            expected = np.eye(4)
            expected[:3, :3] = protocol.rotation()
            np.testing.assert_allclose(back_affine, expected @ centred_affine(protocol.canonical_shape,
                                                                              protocol.canonical_spacing), atol=1e-9)


def test_site_dataset_geometry_labels_and_curves(site_d):
    acquisition = {row["case"]: row for row in _table(site_d / "acquisition.csv")}
    lesions = _table(site_d / "cases.csv")
    assert verify_dataset(site_d, progress=False) == []
    info = json.loads((site_d / "dataset.json").read_text())
    assert info["simulation"]["site"]["name"] == "D" and "Site profile D" in info["description"]
    assert lesions and all(row["malignant"] in {"0", "1"} for row in lesions)
    for case, row in acquisition.items():
        spacing = [float(s) for s in row["spacing_mm"].split()]
        times = json.loads((site_d / "timesTr" / f"{case}.json").read_text())["phase_times_s"]
        assert times == [float(t) for t in row["phase_times_s"].split()]
        labels, geometry = read_image(site_d / "labelsTr" / f"{case}.nii.gz", dtype=np.uint8)
        mask, _ = read_image(site_d / "masksTr" / f"{case}.nii.gz", dtype=np.uint8)
        assert geometry.shape == SHAPE and np.allclose(geometry.spacing, spacing, atol=1e-3)
        assert "".join(nib.aff2axcodes(geometry.affine)) == row["axcodes"] and row["orientation"] == "sagittal"
        assert float(row["max_shift_mm"]) <= float(row["motion_mm"]) + 1e-3
        site = SITES["D"]
        assert _in(float(row["bias_amplitude"]), site.bias, tol=1e-3) and _in(float(row["snr"]), site.snr, tol=0.01)
        fat = float(row["fat_factor"])
        assert fat == 1.0 if row["fat_suppression"] == "0" else _in(fat, site.fat_suppression_efficiency, tol=1e-3)
        assert _in(int(row["vessels"]), site.vessels) and _in(int(row["cysts"]), site.cysts)
        # anatomy: in world (RAS) coordinates the breasts lie anterior of the rest of the body, on both sides
        canonical_mask, canonical_affine, _ = to_canonical(mask, geometry.affine)
        pre, _, _ = to_canonical(read_image(site_d / "imagesTr" / f"{case}_0000.nii.gz")[0], geometry.affine)
        world = nib.affines.apply_affine(canonical_affine, np.argwhere(canonical_mask))
        body = nib.affines.apply_affine(canonical_affine, np.argwhere(~canonical_mask.astype(bool) & (pre > 50)))
        assert world[:, 1].mean() > body[:, 1].mean() + 10 and (world[:, 0] > 10).any() and (world[:, 0] < -10).any()
        case_rows = [r for r in lesions if r["case"] == case]
        assert sorted(np.unique(labels[labels > 0]).tolist()) == [int(r["lesion"]) for r in case_rows]
        assert np.all(mask[labels > 0] == 1)
        images = np.stack([read_image(site_d / "imagesTr" / f"{case}_{p:04d}.nii.gz")[0] for p in range(6)])
        for lesion in case_rows:
            prior = site.ktrans_malignant if lesion["malignant"] == "1" else site.ktrans_benign
            assert _in(float(lesion["ktrans_per_min"]), prior, tol=1e-4)
            assert _in(float(lesion["ve"]), site.ve, tol=1e-3) and _in(float(lesion["vp"]), site.vp, tol=1e-3)
            voxels = labels == int(lesion["lesion"])
            assert float(lesion["volume_ml"]) == pytest.approx(voxels.sum() * np.prod(spacing) / 1000, rel=1e-3)
            assert classify_curve(images[:, voxels].mean(axis=1), times) == lesion["curve_type"]


def test_site_cases_deterministic_and_sites_do_not_share_lesions(site_d):
    again = simulate_case(5, 1, SimulationConfig(shape=SHAPE, site=SITES["D"]))
    assert np.array_equal(again.images[3], read_image(site_d / "imagesTr" / "phantom_001_0003.nii.gz")[0])
    # the same seed at another site draws other lesions (no shared designs across a held-out split)
    other = simulate_case(5, 1, SimulationConfig(shape=SHAPE, site=replace(SITES["D"], name="D2")))
    assert [r["ktrans_per_min"] for r in other.lesion_rows] != [r["ktrans_per_min"] for r in again.lesion_rows]


def test_kinetics_relate_to_morphology_partially():
    """Washout is likelier for irregular/spiculated/rim lesions, yet every morphology shows every type."""
    rng = np.random.default_rng(1)
    specs = [s for _ in range(3000) for s in draw_site_lesion_specs(rng, 0.6)]
    suspicious = [s for s in specs if s.morphology in ("irregular", "spiculated") or s.pattern == "rim"]
    smooth = [s for s in specs if s.morphology in ("round", "lobulated") and s.pattern != "rim"]

    def washout(group: list[LesionSpec]) -> float:
        return sum(s.curve_type == "washout" for s in group) / len(group)

    assert washout(suspicious) > washout(smooth) + 0.2
    assert 0.1 < washout(smooth) and washout(suspicious) < 0.8
    for morphology in ("round", "spiculated"):
        assert set(Counter(s.curve_type for s in specs if s.morphology == morphology)) == {
            "persistent", "plateau", "washout"}


def test_lesion_ktrans_overlaps_between_types_but_is_higher_for_washout():
    """Early enhancement (Ktrans) is related to the curve type, not determined by it."""
    site = SITES["A"]
    physics = Physics((0.0, 70.0, 135.0, 200.0, 265.0, 330.0), bolus_arrival_s=15.0, field_strength_t=3.0,
                      agent="gadobutrol")
    lesion = PlacedLesion(LesionSpec(1, "persistent", "round", "homogeneous", 10.0, "fgt", True),
                          (np.arange(20), np.zeros(20, int), np.zeros(20, int)), np.ones(20), np.zeros(20, bool))
    rng = np.random.default_rng(2)
    prior = {"ktrans": site.ktrans_malignant, "ve": site.ve, "vp": site.vp}
    ktrans = {}
    for curve_type in ("persistent", "washout"):
        typed = PlacedLesion(replace(lesion.spec, curve_type=curve_type), lesion.voxels, lesion.modulation,
                             lesion.core)
        ktrans[curve_type] = [lesion_kinetics(rng, typed, np.ones(20), physics, prior).base.ktrans_per_min
                              for _ in range(40)]
    assert np.median(ktrans["washout"]) > np.median(ktrans["persistent"])
    assert max(ktrans["persistent"]) > min(ktrans["washout"])
    assert all(_in(k, site.ktrans_malignant) for values in ktrans.values() for k in values)


def test_cli_site_options(tmp_path, capsys):
    assert simulate_main(["-o", str(tmp_path / "a"), "--site", "D", "--snr", "20"]) == 1
    assert "--snr" in capsys.readouterr().err
    profile = tmp_path / "e.json"
    profile.write_text(json.dumps({"base": "D", "name": "E", "slice_mm": [2.0, 2.2]}))
    out = tmp_path / "Dataset105_SiteE"
    assert simulate_main(["-o", str(out), "-n", "1", "--shape", *map(str, SHAPE), "--site-profile",
                          str(profile), "--seed", "2", "--case-prefix", "siteE"]) == 0
    assert (out / "labelsTr" / "siteE_000.nii.gz").exists() and (out / "timesTr" / "siteE_000.json").exists()
    row = _table(out / "acquisition.csv")[0]
    assert row["case"] == "siteE_000"
    assert 2.0 <= float(row["spacing_mm"].split()[2]) <= 2.2
    assert json.loads((out / "dataset.json").read_text())["simulation"]["site"]["name"] == "E"
    assert simulate_main(["-o", str(tmp_path / "c"), "--case-prefix", "a/b"]) == 1
    assert "case prefix" in capsys.readouterr().err
    profile.write_text("{not json")
    assert simulate_main(["-o", str(tmp_path / "b"), "--site-profile", str(profile)]) == 1
    assert str(profile) in capsys.readouterr().err


def test_vessels_and_cysts_stay_in_the_breast_off_lesions_and_have_their_kinetics():
    rng = np.random.default_rng(3)
    spacing = (1.0, 1.0, 2.0)
    anatomy = build_anatomy(rng, (96, 80, 32), spacing)
    free = np.ones(anatomy.tissue.shape, dtype=bool)
    free[40:60, 50:70, 10:20] = False  # stands for a lesion
    before = anatomy.tissue.copy()
    assert add_cysts(rng, anatomy, spacing, 3, free) > 0 and add_vessels(rng, anatomy, spacing, 4, free) > 0
    changed = anatomy.tissue != before
    assert np.all(anatomy.interior[changed]) and not np.any(changed[40:60, 50:70, 10:20])
    assert set(np.unique(anatomy.tissue[changed])) == {int(Tissue.BLOOD), int(Tissue.CYST)}
    maps = tissue_maps(rng, anatomy, spacing, bpe_range=(0.02, 0.02))
    assert maps.bpe_ktrans_per_min == pytest.approx(0.02)
    physics = Physics((0.0, 80.0, 160.0, 240.0), bolus_arrival_s=12.0)
    cyst = physics.signal(maps.param_sets[int(maps.set_index[anatomy.tissue == Tissue.CYST][0])])
    vessel = physics.signal(maps.param_sets[int(maps.set_index[changed & (anatomy.tissue == Tissue.BLOOD)][0])])
    np.testing.assert_allclose(cyst, cyst[0])  # fluid never enhances
    assert vessel[1] > 2 * vessel[0]  # blood enhances strongly and early


def test_nonmass_and_septated_lesions():
    rng = np.random.default_rng(4)
    spacing = (0.8, 0.8, 1.5)
    anatomy = build_anatomy(rng, (140, 110, 48), spacing)
    specs = [LesionSpec(1, "plateau", "nonmass", "heterogeneous", 12.0, "fgt", True),
             LesionSpec(2, "persistent", "lobulated", "septated", 14.0, "fgt", False)]
    nonmass, fibroadenoma = place_lesions(rng, anatomy, specs, spacing)
    for lesion in (nonmass, fibroadenoma):
        assert lesion.n_voxels > 20 and np.all(anatomy.interior[lesion.voxels])
    # clumps: the region's bounding box is mostly not lesion
    box = np.prod([np.ptp(v) + 1 for v in nonmass.voxels])
    assert nonmass.n_voxels < 0.6 * box
    assert fibroadenoma.spec.pattern == "septated" and 0 < fibroadenoma.core.mean() <= 0.35
    specs = [s for _ in range(2000) for s in draw_site_lesion_specs(rng, 0.5)]
    assert {s.morphology for s in specs} == {"round", "lobulated", "irregular", "spiculated", "nonmass"}
    assert not any(s.pattern == "septated" and s.malignant for s in specs)
    assert not any(s.morphology == "nonmass" and s.pattern in ("rim", "septated") for s in specs)
