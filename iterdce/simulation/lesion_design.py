"""What lesions a case gets: count, curve type, morphology, pattern, size and host tissue.

The curve type is drawn first and morphology/pattern are drawn given the type, which gives the clinical
correlation (irregular, spiculated and rim lesions mostly washout; smooth homogeneous ones mostly
persistent) with exact control of the type proportions. Primary lesion types are dealt in shuffled blocks
of 12 cases, so every dataset of 12 or more cases holds all three types.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CURVE_PROBS = {"persistent": 0.30, "plateau": 0.45, "washout": 0.25}
BLOCK_SIZE = 12
BLOCK_TYPES = ("persistent",) * 3 + ("plateau",) * 6 + ("washout",) * 3
ZERO_LESION_PROBS = (0.3, 0.5, 0.2)  # probability of 0, 1, 2 lesion-free cases per block of 12
SECOND_LESION_PROB = 0.15
FGT_HOST_PROB = 0.8

MORPHOLOGY_GIVEN_TYPE = {
    "persistent": {"round": 0.65, "lobulated": 0.20, "irregular": 0.10, "spiculated": 0.05},
    "plateau": {"round": 0.30, "lobulated": 0.45, "irregular": 0.15, "spiculated": 0.10},
    "washout": {"round": 0.08, "lobulated": 0.17, "irregular": 0.40, "spiculated": 0.35},
}
PATTERN_GIVEN_TYPE = {
    "persistent": {"homogeneous": 0.75, "heterogeneous": 0.22, "rim": 0.03},
    "plateau": {"homogeneous": 0.30, "heterogeneous": 0.50, "rim": 0.20},
    "washout": {"homogeneous": 0.15, "heterogeneous": 0.45, "rim": 0.40},
}
DIAMETER_RANGE_MM = {"persistent": (5.0, 25.0), "plateau": (5.0, 30.0), "washout": (8.0, 30.0)}

# Site profiles: a lesion is malignant or benign first; curve type, morphology, pattern and size each depend
# on that, so they are related to each other only partially (documentation/simulation_sites.md).
SITE_LESION_COUNT_PROBS = (0.08, 0.77, 0.15)  # 0, 1, 2 lesions
CURVE_GIVEN_MALIGNANCY = {  # Kuhl et al., Radiology 1999;211:101-110 (curve types I, II, III)
    True: {"persistent": 0.089, "plateau": 0.336, "washout": 0.575},
    False: {"persistent": 0.830, "plateau": 0.115, "washout": 0.055},
}
MORPHOLOGY_GIVEN_MALIGNANCY = {
    True: {"round": 0.10, "lobulated": 0.16, "irregular": 0.36, "spiculated": 0.26, "nonmass": 0.12},
    False: {"round": 0.45, "lobulated": 0.35, "irregular": 0.08, "spiculated": 0.02, "nonmass": 0.10},
}
PATTERN_GIVEN_MALIGNANCY = {  # septated: the dark internal septations of a fibroadenoma
    True: {"homogeneous": 0.25, "heterogeneous": 0.45, "rim": 0.30, "septated": 0.0},
    False: {"homogeneous": 0.50, "heterogeneous": 0.27, "rim": 0.03, "septated": 0.20},
}
NONMASS_PATTERNS = {"homogeneous": 0.3, "heterogeneous": 0.7}  # clumped: no rim, no septations
DIAMETER_GIVEN_MALIGNANCY = {True: (8.0, 30.0), False: (5.0, 25.0)}


@dataclass(frozen=True)
class LesionSpec:
    """The design of one lesion before it is placed; ``diameter_mm`` is the volume-equivalent target."""

    label: int
    curve_type: str
    morphology: str
    pattern: str
    diameter_mm: float
    host: str
    malignant: bool | None = None


def case_rng(seed: int, case_index: int, stream: int = 0, site_key: int | None = None) -> np.random.Generator:
    """The random stream of one case, independent of every other case (parallel runs stay identical).

    ``stream`` separates independent draws of the same case; ``site_key`` makes every site's cases
    differ from another site's with the same seed (no shared lesion designs across a held-out split).
    """
    entropy = [int(seed), int(stream), int(case_index)] + ([] if site_key is None else [int(site_key)])
    return np.random.default_rng(np.random.SeedSequence(entropy))


def block_plan(seed: int, block: int) -> list[tuple[int, str]]:
    """(lesion count, primary curve type) for each of the 12 cases of one block."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 1, int(block)]))
    types = [BLOCK_TYPES[i] for i in rng.permutation(BLOCK_SIZE)]
    n_zero = int(rng.choice(len(ZERO_LESION_PROBS), p=ZERO_LESION_PROBS))
    plateau_slots = [i for i, t in enumerate(types) if t == "plateau"]
    zero_slots = set(rng.choice(plateau_slots, size=n_zero, replace=False).tolist())
    second = rng.random(BLOCK_SIZE) < SECOND_LESION_PROB
    return [(0 if i in zero_slots else 1 + int(second[i]), types[i]) for i in range(BLOCK_SIZE)]


def _pick(rng: np.random.Generator, table: dict[str, float]) -> str:
    return str(rng.choice(list(table), p=list(table.values())))


def draw_lesion_specs(rng: np.random.Generator, seed: int, case_index: int) -> list[LesionSpec]:
    """The lesions of one case: labels 1..n, the first with the block's type, others drawn freely."""
    count, primary = block_plan(seed, case_index // BLOCK_SIZE)[case_index % BLOCK_SIZE]
    specs = []
    for label in range(1, count + 1):
        curve_type = primary if label == 1 else _pick(rng, CURVE_PROBS)
        low, high = DIAMETER_RANGE_MM[curve_type]
        specs.append(LesionSpec(
            label=label,
            curve_type=curve_type,
            morphology=_pick(rng, MORPHOLOGY_GIVEN_TYPE[curve_type]),
            pattern=_pick(rng, PATTERN_GIVEN_TYPE[curve_type]),
            diameter_mm=float(np.exp(rng.uniform(np.log(low), np.log(high)))),
            host="fgt" if rng.random() < FGT_HOST_PROB else "fat",
        ))
    return specs


def draw_site_lesion_specs(rng: np.random.Generator, malignant_prob: float) -> list[LesionSpec]:
    """The lesions of one site case: malignancy first, then curve type, morphology, pattern and size given it."""
    count = int(rng.choice(len(SITE_LESION_COUNT_PROBS), p=SITE_LESION_COUNT_PROBS))
    specs = []
    for label in range(1, count + 1):
        malignant = bool(rng.random() < malignant_prob)
        low, high = DIAMETER_GIVEN_MALIGNANCY[malignant]
        curve_type = _pick(rng, CURVE_GIVEN_MALIGNANCY[malignant])
        morphology = _pick(rng, MORPHOLOGY_GIVEN_MALIGNANCY[malignant])
        pattern = _pick(rng, NONMASS_PATTERNS if morphology == "nonmass" else PATTERN_GIVEN_MALIGNANCY[malignant])
        specs.append(LesionSpec(
            label=label,
            curve_type=curve_type,
            morphology=morphology,
            pattern=pattern,
            diameter_mm=float(np.exp(rng.uniform(np.log(low), np.log(high)))),
            host="fgt" if rng.random() < FGT_HOST_PROB else "fat",
            malignant=malignant,
        ))
    return specs
