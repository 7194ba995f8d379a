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


@dataclass(frozen=True)
class LesionSpec:
    """The design of one lesion before it is placed; ``diameter_mm`` is the volume-equivalent target."""

    label: int
    curve_type: str
    morphology: str
    pattern: str
    diameter_mm: float
    host: str


def case_rng(seed: int, case_index: int) -> np.random.Generator:
    """The random stream of one case, independent of every other case (parallel runs stay identical)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), 0, int(case_index)]))


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
