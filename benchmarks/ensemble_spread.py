"""Which difficulty makes the narrowest calibrated intervals: the predicted change (today's), the spread of an
ensemble, or none (the marginal interval)? The uncertainty issue's item 1, ensemble half, measured without new
training on models that already exist.

The members are models of one recipe trained with different seeds (a deep ensemble; a fold ensemble is the same
idea with different training cases). Every set is predicted by each member (plain ``iterdce_predict`` outputs, the
default composition); the ensemble's prediction is the members' mean, as ``iterdce_predict`` averages folds. For
each difficulty ``s`` (TI-normalized units) the split-conformal multiplier ``q`` of each target-time bin comes from
the calibration set's signed scores ``(y - yhat) / (std * s)`` (``iterdce.inference.conformal``: the same bins,
body-voxel sample and lesion means as ``iterdce_calibrate``), and each test set gets its coverage and mean width
``2 q s``:

- ``change``: ``s = eps + |yhat - x_last| / std`` (what ``iterdce_predict --uncertainty`` uses, ``eps`` 0.1);
- ``spread``: ``s = eps + sd_members / std`` (per voxel; per lesion the sd of the members' lesion means);
- ``marginal``: ``s = 1`` (one width per time bin);
- ``member0 change``: one member alone with ``change`` (what the measurement of reports/uncertainty.md used).

Each ``eps`` of a small grid is reported; the one with the narrowest mean body width on the calibration cases is
marked (a choice made on calibration data, not on the test sets).

Only predictions that exist are used (each member folder holds ``pred_<set>`` for every set): the calibration set
is one of the sets; it is scored by 2-fold cross-fitting (calibrated on its even cases, tested on its odd ones,
and the other way round), every other set with the whole calibration set.

    python -m benchmarks.ensemble_spread --members unc_check/preset_bf16_seed0 unc_check/preset_bf16_seed1 \
        unc_check_s2/preset_bf16_seed2 --sets held-out_A-C=unc_check/raw/Dataset961_heldout \
        D=cs_eval_D/raw/Dataset903_SiteD --calibration held-out_A-C --out spread
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import zlib
from pathlib import Path

import numpy as np

from iterdce.core.file_names import phase_file_name
from iterdce.dataset.case import DCECase, load_case
from iterdce.dataset.layout import discover_cases
from iterdce.dataset.masks import derive_foreground_mask
from iterdce.dataset.nifti_io import read_image
from iterdce.inference.case_pipeline import input_facts
from iterdce.inference.conformal import conformal_quantile, time_bin, time_bin_edges
from iterdce.inference.predictor import IterativePredictor, PredictionSettings
from iterdce.preprocessing.plan_schema import Plans

MODEL_FOLDER = "RecursiveTrainer__plans"
COVERAGE = 0.9
EPSILONS = {"change": (0.03, 0.1, 0.3), "spread": (0.003, 0.01, 0.03, 0.1), "marginal": (1.0,),
            "member0 change": (0.1,)}
SEED = 0
VOXELS = 5000  # body voxels drawn per case (calibration scores and test coverage on a fixed-seed sample: memory)


@dataclasses.dataclass
class CaseData:
    """What the analysis needs of one case, in TI-normalized units (divided by the case's std)."""

    bins: list[int]  # time bin of each target phase
    body_real: np.ndarray  # [T, V] sampled (calibration) or all (test) body voxels
    body_mean: np.ndarray  # ensemble mean
    body_sd: np.ndarray  # sd over members
    body_last: np.ndarray  # [V] last input
    body_member0: np.ndarray  # [T, V]
    lesion_real: np.ndarray  # [L, T] lesion means
    lesion_mean: np.ndarray
    lesion_sd: np.ndarray
    lesion_last: np.ndarray  # [L]
    lesion_member0: np.ndarray


def case_data(case: DCECase, plans: Plans, predictions: list[Path], edges: tuple[float, ...], n_voxels: int
              ) -> CaseData:
    """One case's real and predicted body voxels (a fixed-seed draw of ``n_voxels`` per case, as
    iterdce_calibrate draws) and lesion means."""
    n_in = len(plans.input_phases)
    pre, _ = input_facts(dataclasses.replace(case, image=case.image[:n_in]), plans)
    std = float(pre.properties.ti_norm.std)
    targets = range(n_in, case.image.shape[0])
    members = np.stack([np.stack([read_image(folder / phase_file_name(case.case_id, p))[0] for p in targets])
                        for folder in predictions]).astype(np.float64) / std  # [M, T, X, Y, Z]
    real = case.image[n_in:].astype(np.float64) / std
    last = case.image[n_in - 1].astype(np.float64) / std
    body = derive_foreground_mask(case.image[:n_in])
    index = np.flatnonzero(body)
    rng = np.random.default_rng([SEED, zlib.crc32(case.case_id.encode())])
    index = np.sort(rng.choice(index, size=min(n_voxels, index.size), replace=False))
    flat = members.reshape(*members.shape[:2], -1)[..., index]
    labels = [] if case.lesion is None else [int(v) for v in np.unique(case.lesion) if v > 0]
    regions = [case.lesion == label for label in labels]

    def means(volumes: np.ndarray) -> np.ndarray:  # [..., X, Y, Z] -> [L, ...]
        return np.array([volumes[..., r].mean(axis=-1) for r in regions]).reshape(len(regions), *volumes.shape[:-3])

    lesion_members = means(members)  # [L, M, T]
    return CaseData([time_bin(float(t), edges) for t in case.times_s[n_in:]],
                    real.reshape(real.shape[0], -1)[:, index], flat.mean(axis=0), flat.std(axis=0, ddof=1),
                    last.ravel()[index], flat[0], means(real), lesion_members.mean(axis=1),
                    lesion_members.std(axis=1, ddof=1), means(last), lesion_members[:, 0])


def scale_of(variant: str, eps: float, predicted: np.ndarray, last: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """The difficulty ``s`` of one variant (TI-normalized inputs)."""
    if variant == "spread":
        return eps + sd
    if variant == "marginal":
        return np.ones_like(predicted)
    return eps + np.abs(predicted - last)


def family(data: CaseData, variant: str, eps: float, lesion: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(residual y - yhat, scale s, time bin) of every body voxel or lesion mean of one case, flattened."""
    if lesion:
        real, mean, sd, last, first = data.lesion_real, data.lesion_mean, data.lesion_sd, data.lesion_last[:, None], \
            data.lesion_member0
        bins = np.broadcast_to(np.array(data.bins), real.shape)
    else:
        real, mean, sd, last, first = data.body_real, data.body_mean, data.body_sd, data.body_last[None], \
            data.body_member0
        bins = np.broadcast_to(np.array(data.bins)[:, None], real.shape)
    predicted = first if variant == "member0 change" else mean
    scale = scale_of(variant, eps, predicted, np.broadcast_to(last, predicted.shape), sd)
    return (real - predicted).ravel(), scale.ravel(), bins.ravel()


def quantiles(cases: list[CaseData], variant: str, eps: float, lesion: bool, n_bins: int) -> list[float]:
    """The conformal multiplier of each time bin from the calibration cases."""
    parts = [family(c, variant, eps, lesion) for c in cases]
    residual, scale, bins = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return [conformal_quantile(residual[bins == b] / scale[bins == b], COVERAGE) for b in range(n_bins)]


def scored(cases: list[CaseData], variant: str, eps: float, lesion: bool, q: list[float]) -> dict[str, float]:
    """Coverage and mean width (TI-normalized units) over every voxel or lesion-phase of the test cases; each
    case weighs by its voxels, as iterdce_evaluate's per-phase columns average per case."""
    covered, widths = [], []
    for c in cases:
        residual, scale, bins = family(c, variant, eps, lesion)
        half = np.asarray(q)[bins] * scale
        if residual.size:
            covered.append(float(np.mean(np.abs(residual) <= half)))
            widths.append(float(np.mean(2 * half)))
    return {"coverage": float(np.mean(covered)), "width": float(np.mean(widths))}


def load_set(raw_dir: Path, predictions: list[Path], plans: Plans, edges: tuple[float, ...], n_voxels: int
             ) -> list[CaseData]:
    """Every case of one set."""
    return [case_data(load_case(files, plans.phase_times_s), plans, predictions, edges, n_voxels)
            for _, files in sorted(discover_cases(raw_dir).cases.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=Path, nargs="+", required=True)
    parser.add_argument("--sets", nargs="+", required=True, metavar="NAME=RAW", help="raw datasets predicted by "
                        "every member into <member>/pred_<NAME>")
    parser.add_argument("--calibration", required=True, help="the NAME of the calibration set")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    plans = IterativePredictor(args.members[0] / MODEL_FOLDER, PredictionSettings(folds=["all"], device="cpu",
                                                                                  progress=False)).plans
    edges = time_bin_edges(plans.trained_target_times_s)
    n_bins = len(edges) + 1
    sets = {name: load_set(Path(raw), [m / f"pred_{name}" for m in args.members], plans, edges, VOXELS)
            for name, raw in (item.split("=", 1) for item in args.sets)}
    if args.calibration not in sets:
        parser.error(f"--calibration {args.calibration}: not one of --sets ({', '.join(sets)})")
    calibration = sets[args.calibration]
    halves = (calibration[0::2], calibration[1::2])
    results: dict = {"members": [str(m) for m in args.members], "coverage": COVERAGE, "calibration": args.calibration,
                     "cases": {name: len(cases) for name, cases in sets.items()}, "rows": []}
    for variant, grid in EPSILONS.items():
        cal_widths: dict[float, float] = {}
        for eps in grid:
            q_body, q_lesion = (quantiles(calibration, variant, eps, lesion, n_bins) for lesion in (False, True))
            cal_widths[eps] = scored(calibration, variant, eps, False, q_body)["width"]
            row: dict = {"variant": variant, "eps": eps, "q_body": q_body, "q_lesion": q_lesion,
                         "calibration_body_width": cal_widths[eps]}
            for name, cases in sets.items():
                row[name] = {family: cross_fitted(halves, variant, eps, family == "lesion", n_bins)
                             if name == args.calibration else
                             scored(cases, variant, eps, family == "lesion", q_lesion if family == "lesion" else q_body)
                             for family in ("body", "lesion")}
            results["rows"].append(row)
        best = min(cal_widths, key=lambda e: cal_widths[e])
        for row in results["rows"]:
            if row["variant"] == variant:
                row["chosen_on_calibration"] = row["eps"] == best
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    table = markdown(results, list(sets))
    (args.out / "results.md").write_text(table + "\n")
    print(table)


def cross_fitted(halves: tuple[list[CaseData], list[CaseData]], variant: str, eps: float, lesion: bool,
                 n_bins: int) -> dict[str, float]:
    """Coverage and width of the calibration set itself: each half tested with the other half's multipliers."""
    parts = [scored(test, variant, eps, lesion, quantiles(cal, variant, eps, lesion, n_bins))
             for cal, test in ((halves[0], halves[1]), (halves[1], halves[0]))]
    return {k: float(np.mean([p[k] for p in parts])) for k in ("coverage", "width")}


def markdown(results: dict, sets: list[str]) -> str:
    """One row per (variant, eps): body and lesion coverage / width on each test set."""
    head = "| difficulty | eps | " + " | ".join(f"{s} body cov. / width | {s} lesion cov. / width" for s in sets) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(sets))]
    for row in results["rows"]:
        mark = " (chosen)" if row.get("chosen_on_calibration") and len(EPSILONS[row["variant"]]) > 1 else ""
        cells = [f"{100 * row[s][f]['coverage']:.1f} % / {row[s][f]['width']:.3f}" for s in sets
                 for f in ("body", "lesion")]
        lines.append(f"| {row['variant']} | {row['eps']:g}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
