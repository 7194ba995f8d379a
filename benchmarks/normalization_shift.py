"""How far a breast-only field of view lies from heart-in-view training cases under each intensity normalization.

The shipped model's change is wrong on site F (site E without the heart in the field of view), and training on
both kinds of field of view trades site E for site F (reports/native_resolution.md): one voxel-wise kinetic prior
cannot serve both because TI-norm takes its mean and std over the whole body, where the heart's blood pool
weighs. This measures, without training, how much of a case's body lies outside the training cases' range of
the prior's two intensity features (early enhancement ``u = x1 - x0`` and pre-contrast ``v = x0``, normalized)
under candidate normalizations: the range is the regression's (per feature the lowest 0.5th and highest 99.5th
percentile over the training cases), a case's share is that of its body voxels with ``u`` or ``v`` outside, as
the out-of-distribution check counts it (there on the plan grid, here on the case's own).

Being inside the range is not enough: the same tissue must get the same normalized values with and without the
heart. Sites E and F share the acquisition and differ only in the heart, so a normalization blind to the field
of view gives their breasts (``masksTr``) the same early enhancement: the second table compares the mean over
cases of the median ``u`` inside the breast (F / E; 1 is blind to the field of view).

    python -m benchmarks.normalization_shift --train cs_wide/raw/Dataset90{0,1,2,3}_Site* \
        --test E=nc_e_current/raw/Dataset903_SiteE F=nc_f/raw/Dataset903_SiteF
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from iterdce.core.file_names import phase_file_name
from iterdce.dataset.layout import discover_cases
from iterdce.dataset.masks import derive_foreground_mask
from iterdce.dataset.nifti_io import read_image

LOW, HIGH = 0.5, 99.5  # the regression's feature clip percentiles (iterdce/regression/model.py)


def mean_std(values: np.ndarray) -> tuple[float, float]:
    return float(values.mean()), float(values.std())


def median_iqr(values: np.ndarray) -> tuple[float, float]:
    q1, median, q3 = np.percentile(values, [25, 50, 75])
    return float(median), float(q3 - q1)


def lower_half(values: np.ndarray) -> tuple[float, float]:
    """Mean and std of the body's darker half: the blood pool and enhancing organs left out."""
    kept = values[values <= np.median(values)]
    return float(kept.mean()), float(kept.std())


# name -> (reference phase, statistic, inside the breast mask only)
SCHEMES: dict[str, tuple[int, Callable[[np.ndarray], tuple[float, float]], bool]] = {
    "TI-norm (mean/std of phase 1, today)": (1, mean_std, False),
    "median/IQR of phase 1": (1, median_iqr, False),
    "mean/std of phase 0": (0, mean_std, False),
    "median/IQR of phase 0": (0, median_iqr, False),
    "mean/std of phase 1's darker half": (1, lower_half, False),
    "mean/std of phase 1 inside the breast mask": (1, mean_std, True),
}


def case_features(folder: Path) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """([2, V] body voxels of the pre-contrast and first post-contrast phase, the body voxels' breast mask or None)
    of every case of a dataset."""
    found = []
    for case_id, _ in sorted(discover_cases(folder).cases.items()):
        phases = np.stack([read_image(folder / "imagesTr" / phase_file_name(case_id, p))[0] for p in (0, 1)])
        body = derive_foreground_mask(phases)
        breast_path = folder / "masksTr" / f"{case_id}.nii.gz"
        breast = read_image(breast_path)[0][body] > 0 if breast_path.is_file() else None
        found.append((phases[:, body].astype(np.float64), breast))
    return found


def normalized(features: np.ndarray, breast: np.ndarray | None, scheme: str) -> np.ndarray:
    """[2, V] phases 0 and 1 -> the prior's features [u, v] under ``scheme``."""
    phase, statistic, in_breast = SCHEMES[scheme]
    if in_breast and (breast is None or not breast.any()):
        raise SystemExit(f"{scheme}: a case has no breast mask (masksTr)")
    centre, scale = statistic(features[phase][breast] if in_breast else features[phase])
    x0, x1 = (features - centre) / scale
    return np.stack([x1 - x0, x0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=Path, nargs="+", required=True, help="raw datasets of the training sites")
    parser.add_argument("--test", nargs="+", required=True, metavar="NAME=RAW")
    parser.add_argument("--out", type=Path, help="results.json here")
    args = parser.parse_args()
    train = [f for folder in args.train for f in case_features(folder)]
    tests = {name: case_features(Path(raw)) for name, raw in (t.split("=", 1) for t in args.test)}
    results: dict = {"train_cases": len(train), "schemes": {}}
    lines = ["| normalization | " + " | ".join(f"{n}: mean share outside / cases > 1 %" for n in tests) + " |",
             "|---|" + "---|" * len(tests)]
    breast_lines = ["| normalization | " + " | ".join(f"{n}: breast median u" for n in tests) + " |",
                    "|---|" + "---|" * len(tests)]
    for scheme in SCHEMES:
        percentiles = np.array([np.percentile(normalized(f, b, scheme), [LOW, HIGH], axis=1) for f, b in train])
        low, high = percentiles[:, 0].min(axis=0), percentiles[:, 1].max(axis=0)
        entry = {"low": low.tolist(), "high": high.tolist()}
        cells = []
        for name, cases in tests.items():
            shares = [float(np.mean(np.any((v < low[:, None]) | (v > high[:, None]), axis=0)))
                      for v in (normalized(f, b, scheme) for f, b in cases)]
            entry[name] = {"mean_outside": float(np.mean(shares)), "cases": len(shares),
                           "cases_over_1pct": int(np.sum(np.array(shares) > 0.01))}
            cells.append(f"{100 * np.mean(shares):.1f} % / {entry[name]['cases_over_1pct']} of {len(shares)}")
            medians = [float(np.median(normalized(f, breast, scheme)[0][breast])) for f, breast in cases
                       if breast is not None and breast.any()]
            entry[name]["breast_median_u"] = float(np.mean(medians)) if medians else None
        results["schemes"][scheme] = entry
        lines.append(f"| {scheme} | " + " | ".join(cells) + " |")
        breast_lines.append(f"| {scheme} | " + " | ".join(
            "-" if entry[n]["breast_median_u"] is None else f"{entry[n]['breast_median_u']:.3f}" for n in tests) + " |")
    print("\n".join(lines + [""] + breast_lines))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
