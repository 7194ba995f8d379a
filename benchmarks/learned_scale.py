"""A learned difficulty for the conformal intervals: a per-voxel Laplace scale fitted with the negative
log-likelihood (a proper scoring rule) on features every prediction has, against today's difficulty (the predicted
change from the last input) and none (the marginal interval). The uncertainty issue's item 1, learned-scale half,
measured on predictions that already exist (no new training).

Hypothesis: the errors of a synthesized phase grow with more than the predicted change: with the early
enhancement, with edges (the network's change comes from a coarser grid), with the intensity level. A scale
``b = exp(w . phi)`` over the logs of such features, fitted per target-time bin by the Laplace NLL
``sum |r| / b + log b`` (convex in w), contains both references (w = 0 but the intercept: the marginal interval;
weight 1 on the predicted change alone: today's), so on data like its fitting data it cannot be wider than the
better of them, and where the features say a voxel is easy it can be narrower.

Features (TI-normalized units, per voxel and target phase): the predicted change |yhat - x_last|, the early
enhancement |x_last - x_pre|, the gradient magnitude of x_last (per mm), |x_pre| and the prediction's level
|yhat|; each enters as log(0.05 + f). Lesion means use the scale at the lesion-mean features.

Per model (one seed each), with the set named by ``--calibration`` split in halves (even / odd cases): the scale
is fitted on one half and the conformal multipliers come from the other (the guarantee needs a scale that did not
see the calibration scores), the roles swapped and the two results averaged; the calibration set itself is scored
by 3-fold rotation (fit / calibrate / test). Coverage and mean width ``2 q s`` per set, all phases pooled.

    python -m benchmarks.learned_scale --predictions unc_check/preset_bf16_seed0 unc_check/preset_bf16_seed1 \
        unc_check_s2/preset_bf16_seed2 --sets held-out_A-C=unc_check/raw/Dataset961_heldout \
        D=cs_eval_D/raw/Dataset903_SiteD --calibration held-out_A-C --out learned_scale
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from iterdce.core.file_names import phase_file_name
from iterdce.dataset.case import DCECase, load_case
from iterdce.dataset.layout import discover_cases
from iterdce.dataset.masks import derive_foreground_mask
from iterdce.dataset.nifti_io import read_image
from iterdce.inference.case_pipeline import input_facts
from iterdce.inference.conformal import EPSILON, conformal_quantile, time_bin, time_bin_edges
from iterdce.inference.predictor import IterativePredictor, PredictionSettings
from iterdce.preprocessing.plan_schema import Plans

MODEL_FOLDER = "RecursiveTrainer__plans"
COVERAGE = 0.9
SEED = 0
VOXELS = 5000
FLOOR = 0.05  # inside the logs of the features
FEATURES = ("intercept", "change", "enhancement", "gradient", "pre", "level")
DIFFICULTIES = ("learned", "change", "marginal")


@dataclasses.dataclass
class Family:
    """Residuals, today's difficulty, features and time bins of one case's body voxels or lesion means."""

    residual: np.ndarray  # [N]
    change: np.ndarray  # [N] |yhat - x_last|
    features: np.ndarray  # [N, len(FEATURES)]
    bins: np.ndarray  # [N]


def design(change: np.ndarray, enhancement: np.ndarray, gradient: np.ndarray, pre: np.ndarray, level: np.ndarray
           ) -> np.ndarray:
    """The feature matrix [N, len(FEATURES)] (logs of the magnitudes above ``FLOOR``)."""
    columns = [np.log(FLOOR + np.abs(f)) for f in (change, enhancement, gradient, pre, level)]
    return np.column_stack([np.ones_like(columns[0]), *columns])


def case_families(case: DCECase, plans: Plans, prediction: Path, edges: tuple[float, ...]) -> tuple[Family, Family]:
    """(body voxels, lesion means) of one case predicted in ``prediction`` (TI-normalized by the case's std)."""
    n_in = len(plans.input_phases)
    pre_facts, _ = input_facts(dataclasses.replace(case, image=case.image[:n_in]), plans)
    std = float(pre_facts.properties.ti_norm.std)
    targets = range(n_in, case.image.shape[0])
    predicted = np.stack([read_image(prediction / phase_file_name(case.case_id, p))[0] for p in targets]) / std
    real = case.image[n_in:].astype(np.float64) / std
    last = case.image[n_in - 1].astype(np.float64) / std
    pre = case.image[0].astype(np.float64) / std
    gradient = np.sqrt(sum(g ** 2 for g in np.gradient(last, *case.geometry.spacing[:3])))
    bins = np.array([time_bin(float(t), edges) for t in case.times_s[n_in:]])
    body = np.flatnonzero(derive_foreground_mask(case.image[:n_in]))
    rng = np.random.default_rng([SEED, zlib.crc32(case.case_id.encode())])
    index = np.sort(rng.choice(body, size=min(VOXELS, body.size), replace=False))
    labels = [] if case.lesion is None else [int(v) for v in np.unique(case.lesion) if v > 0]
    regions = [np.flatnonzero(case.lesion == label) for label in labels]

    def family(gather: Callable[[np.ndarray], np.ndarray]) -> Family:
        """One row per (phase, voxel or lesion) of what ``gather`` takes from a volume."""
        rows: list[tuple[np.ndarray, ...]] = []
        x_last, x_pre, grad = gather(last), gather(pre), gather(gradient)
        for t in range(real.shape[0]):
            y, yhat = gather(real[t]), gather(predicted[t])
            rows.append((y - yhat, np.abs(yhat - x_last), design(yhat - x_last, x_last - x_pre, grad, x_pre, yhat),
                         np.full(y.shape, bins[t])))
        return Family(*(np.concatenate([r[i] for r in rows]) for i in range(4)))

    def voxels(volume: np.ndarray) -> np.ndarray:
        return np.asarray(volume, dtype=np.float64).reshape(-1)[index]

    def lesion_means(volume: np.ndarray) -> np.ndarray:
        flat = np.asarray(volume, dtype=np.float64).reshape(-1)
        return np.array([flat[r].mean() for r in regions])

    return family(voxels), family(lesion_means)


def merged(families: list[Family]) -> Family:
    return Family(*(np.concatenate([getattr(f, k) for f in families]) for k in ("residual", "change", "features",
                                                                                  "bins")))


def fit_scale(data: Family, n_bins: int) -> np.ndarray:
    """Laplace-NLL weights [n_bins, len(FEATURES)]: per bin, minimize sum |r| exp(-w.phi) + w.phi."""
    weights = np.zeros((n_bins, len(FEATURES)))
    for b in range(n_bins):
        keep = data.bins == b
        r, phi = np.abs(data.residual[keep]), data.features[keep]

        def loss(w: np.ndarray, r: np.ndarray = r, phi: np.ndarray = phi) -> tuple[float, np.ndarray]:
            eta = phi @ w
            term = r * np.exp(-eta)
            return float(np.mean(term + eta)), phi.T @ (1.0 - term) / r.size

        start = np.zeros(len(FEATURES))
        start[0] = np.log(np.mean(r) + 1e-9)
        weights[b] = minimize(loss, start, jac=True, method="L-BFGS-B").x
    return weights


def scale(difficulty: str, data: Family, weights: np.ndarray | None) -> np.ndarray:
    """The difficulty s of every row."""
    if difficulty == "learned":
        assert weights is not None
        return np.exp(np.einsum("nf,nf->n", data.features, weights[data.bins]))
    if difficulty == "change":
        return EPSILON + data.change
    return np.ones_like(data.change)


def multipliers(difficulty: str, data: Family, weights: np.ndarray | None, n_bins: int) -> np.ndarray:
    s = scale(difficulty, data, weights)
    return np.array([conformal_quantile(data.residual[data.bins == b] / s[data.bins == b], COVERAGE)
                     for b in range(n_bins)])


def scored(difficulty: str, cases: list[Family], weights: np.ndarray | None, q: np.ndarray) -> dict[str, float]:
    """Coverage and mean width over the cases (each case weighs the same, as iterdce_evaluate averages)."""
    covered, widths = [], []
    for data in cases:
        if data.residual.size == 0:
            continue
        half = q[data.bins] * scale(difficulty, data, weights)
        covered.append(float(np.mean(np.abs(data.residual) <= half)))
        widths.append(float(np.mean(2 * half)))
    return {"coverage": float(np.mean(covered)), "width": float(np.mean(widths))}


def evaluate(fit: list[tuple[Family, Family]], calibrate: list[tuple[Family, Family]],
             tests: dict[str, list[tuple[Family, Family]]], n_bins: int) -> dict:
    """Every difficulty: scale fitted on ``fit`` (body voxels), multipliers from ``calibrate``, scored on ``tests``."""
    weights = fit_scale(merged([f[0] for f in fit]), n_bins)
    out: dict = {"weights": weights.tolist()}
    for difficulty in DIFFICULTIES:
        w = weights if difficulty == "learned" else None
        q_body = multipliers(difficulty, merged([c[0] for c in calibrate]), w, n_bins)
        q_lesion = multipliers(difficulty, merged([c[1] for c in calibrate]), w, n_bins)
        out[difficulty] = {name: {"body": scored(difficulty, [c[0] for c in cases], w, q_body),
                                  "lesion": scored(difficulty, [c[1] for c in cases], w, q_lesion)}
                           for name, cases in tests.items()}
    return out


def averaged(runs: list[dict]) -> dict:
    """The mean of the runs' coverage and width per difficulty, set and family."""
    out: dict = {}
    for difficulty in DIFFICULTIES:
        out[difficulty] = {name: {family: {k: float(np.mean([r[difficulty][name][family][k] for r in runs]))
                                           for k in ("coverage", "width")} for family in ("body", "lesion")}
                           for name in runs[0][difficulty]}
    return out


def one_model(prediction_root: Path, sets: dict[str, Path], calibration: str, plans: Plans) -> dict:
    edges = time_bin_edges(plans.trained_target_times_s)
    n_bins = len(edges) + 1
    data = {name: [case_families(load_case(files, plans.phase_times_s), plans, prediction_root / f"pred_{name}",
                                 edges) for _, files in sorted(discover_cases(raw).cases.items())]
            for name, raw in sets.items()}
    cal = data[calibration]
    others = {name: cases for name, cases in data.items() if name != calibration}
    halves = (cal[0::2], cal[1::2])
    runs = [evaluate(halves[i], halves[1 - i], others, n_bins) for i in (0, 1)]
    outside = averaged(runs)
    thirds = (cal[0::3], cal[1::3], cal[2::3])
    inside = averaged([evaluate(thirds[i], thirds[(i + 1) % 3], {calibration: thirds[(i + 2) % 3]}, n_bins)
                       for i in range(3)])
    result = {d: {**inside[d], **outside[d]} for d in DIFFICULTIES}
    result["weights_first_half"] = runs[0]["weights"]
    return result


def markdown(results: dict, sets: list[str]) -> str:
    """Coverage / width per difficulty and set (mean over the models)."""
    models = [k for k in results if k != "settings"]
    lines = ["| difficulty | " + " | ".join(f"{s} body | {s} lesion" for s in sets) + " |",
             "|" + "---|" * (1 + 2 * len(sets))]
    for difficulty in DIFFICULTIES:
        cells = []
        for name in sets:
            for family in ("body", "lesion"):
                cov = [results[m][difficulty][name][family]["coverage"] for m in models]
                wid = [results[m][difficulty][name][family]["width"] for m in models]
                cells.append(f"{100 * np.mean(cov):.1f} % / {np.mean(wid):.3f}")
        lines.append(f"| {difficulty} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=Path, nargs="+", required=True,
                        help="one folder per model, with <folder>/pred_<NAME> for every set and its model in "
                             f"<folder>/{MODEL_FOLDER}")
    parser.add_argument("--sets", nargs="+", required=True, metavar="NAME=RAW")
    parser.add_argument("--calibration", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sets = {name: Path(raw) for name, raw in (item.split("=", 1) for item in args.sets)}
    if args.calibration not in sets:
        parser.error(f"--calibration {args.calibration}: not one of --sets ({', '.join(sets)})")
    results: dict = {"settings": {"coverage": COVERAGE, "voxels": VOXELS, "features": FEATURES,
                                  "calibration": args.calibration}}
    for root in args.predictions:
        plans = IterativePredictor(root / MODEL_FOLDER, PredictionSettings(folds=["all"], device="cpu",
                                                                           progress=False)).plans
        results[root.name] = one_model(root, sets, args.calibration, plans)
        print(f"{root.name}: done", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    table = markdown(results, [args.calibration, *[s for s in sets if s != args.calibration]])
    (args.out / "results.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
