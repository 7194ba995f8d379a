"""How much of a lesion's curve type can any model read from the early phases? A ceiling for the cross-site benchmark.

A network that predicts the delayed phases from the pre-contrast and first post-contrast images gets a lesion's
curve type right only as far as the type is written in those two images. This script measures that with a
deliberately generous, transparent reader: per-lesion features computed *with the true lesion segmentation*
(which the network does not get) -- mean and 90th percentile of the early enhancement, mean pre-contrast
intensity, heterogeneity (coefficient of variation), rim-to-core enhancement ratio, log volume, and the
mean enhancement of the whole body foreground -- and a multinomial logistic regression (scikit-learn, a
benchmark extra). Scored two ways: cross-validated inside the training sites (grouped by case) and trained on
the training sites, tested on the held-out site; both against always answering the most frequent type.

Run after ``benchmarks/cross_site.py`` on the same workdir (it reuses the simulated sites and the training plan;
the held-out site is preprocessed here with the training plan, as a user applying a model would):

  python -m benchmarks.type_predictability --workdir cross_site_work
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from benchmarks.cross_site_data import prepare_training_set
from iterdce.evaluation.kinetics import curve_type, lesion_curve
from iterdce.preprocessing.case_files import load_preprocessed
from iterdce.preprocessing.pipeline import data_folder
from iterdce.preprocessing.plans_io import load_plans

FEATURES = ("mean early enhancement", "mean pre-contrast", "heterogeneity (CV)", "log volume", "rim / core",
            "p90 early enhancement", "foreground mean enhancement")
FEATURE_SETS = {"early enhancement only": [0], "enhancement + pre-contrast": [0, 1],
                "enhancement + morphology": [0, 2, 3, 4], "all seven": list(range(len(FEATURES)))}
# with three or more input phases (--input-phases): the lesion's mean change from the second-last input to the last
LAST_CHANGE = len(FEATURES)
MORE_INPUT_SETS = {"enhancement + its last change": [0, LAST_CHANGE], "all eight": list(range(LAST_CHANGE + 1))}


def lesion_table(folder: Path, n_inputs: int, sites: str | None = None, first_group: int = 0
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features [L, 7] (8 with three or more inputs: the last change), true curve types [L] and the case index of
    each lesion of a preprocessed folder (only the cases named ``site<x>_...`` with x in ``sites`` when given; case
    indices start at ``first_group``)."""
    rows, types, groups = [], [], []
    sidecars = [path for path in sorted(folder.glob("*.json"))
                if sites is None or (path.name.startswith("site") and path.name[4].upper() in sites.upper())]
    for index, sidecar in enumerate(sidecars, start=first_group):
        case = load_preprocessed(folder, sidecar.stem)
        ti = json.loads(sidecar.read_text())["ti_norm"]
        early = case.data[n_inputs - 1] - case.data[0]
        foreground = case.mask > 0
        for label in [int(v) for v in np.unique(case.lesion) if v > 0]:
            region = case.lesion == label
            if region.sum() < 5:
                continue
            core = ndimage.binary_erosion(region)
            rim = region & ~core
            values = early[region]
            rim_ratio = float(early[rim].mean() / (abs(early[core].mean()) + 1e-3)) if core.any() else 1.0
            row = [values.mean(), case.data[0][region].mean(), values.std() / (abs(values.mean()) + 1e-3),
                   np.log(region.sum()), rim_ratio, np.percentile(values, 90), early[foreground].mean()]
            if n_inputs >= 3:
                row.append((case.data[n_inputs - 1] - case.data[n_inputs - 2])[region].mean())
            rows.append(row)
            curve = lesion_curve(case.data, region) * ti["std"] + ti["mean"]
            types.append(curve_type(curve, case.times_s))
            groups.append(index)
    return np.asarray(rows), np.asarray(types), np.asarray(groups)


def accuracies(train: tuple, test: tuple, columns: list[int]) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def model():
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))

    (x_train, y_train, groups), (x_test, y_test, _) = train, test
    inside = cross_val_predict(model(), x_train[:, columns], y_train, groups=groups, cv=GroupKFold(5))
    fitted = model().fit(x_train[:, columns], y_train)
    return {"cv_inside_training_sites": float((inside == y_train).mean()),
            "held_out_site": float((fitted.predict(x_test[:, columns]) == y_test).mean())}


def majority(types: np.ndarray) -> float:
    return max(float((types == t).mean()) for t in set(types.tolist()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("cross_site_work"))
    parser.add_argument("--train-dataset", default="Dataset899_SitesABC")
    parser.add_argument("--test-site-dir", type=Path, help="raw held-out site (default: <workdir>/raw/*_SiteD)")
    parser.add_argument("--out", type=Path, help="results.json / results.md folder (default: workdir)")
    parser.add_argument("--input-phases", type=int,
                        help="read the features from this many input phases (default: the plan's; 3 adds the "
                             "lesion's change from the second to the third phase)")
    parser.add_argument("--train-sites", help="only these sites of --train-dataset (e.g. D; default: every case)")
    parser.add_argument("--extra-train", type=Path, nargs="*", default=[],
                        help="more preprocessed dataset folders preprocessed with the same plan (e.g. the all-sites "
                             "run's); their cases of --extra-sites join the training lesions")
    parser.add_argument("--extra-sites", default="ABC", help="which sites of --extra-train to use (default ABC)")
    args = parser.parse_args()
    train_pre = args.workdir / "preprocessed" / args.train_dataset
    plans = load_plans(train_pre / "plans.json")  # older plan versions migrate
    test_raw = args.test_site_dir or sorted((args.workdir / "raw").glob("Dataset9*_SiteD"))[-1]
    test_pre, _, _ = prepare_training_set([test_raw], args.workdir / "raw", args.workdir / "preprocessed",
                                          "Dataset896_HeldOutSitePlanned", plans.preset, 2,
                                          plan_from=train_pre / "plans.json")
    n_inputs = args.input_phases or len(plans.input_phases)
    if not 2 <= n_inputs <= 4:
        parser.error(f"--input-phases must be 2-4, got {n_inputs}")
    train = lesion_table(data_folder(train_pre, "plans"), n_inputs, args.train_sites)
    for extra in args.extra_train:
        if load_plans(extra / "plans.json").spacing != plans.spacing:
            parser.error(f"{extra}: preprocessed at another spacing than {train_pre}; use folders of the same plan")
        more = lesion_table(data_folder(extra, "plans"), n_inputs, args.extra_sites, int(train[2].max()) + 1)
        train = tuple(np.concatenate([a, b]) for a, b in zip(train, more))  # type: ignore[assignment]
    if train[1].size == 0:
        parser.error(f"no lesion of sites {args.train_sites or 'any'} in {train_pre} or --extra-train")
    test = lesion_table(data_folder(test_pre, "plans"), n_inputs)
    sets = {**FEATURE_SETS, **(MORE_INPUT_SETS if n_inputs >= 3 else {})}
    feature_sets = {name: accuracies(train, test, cols) for name, cols in sets.items()}
    result = {"input_phases": n_inputs,
              "train_lesions": {t: int((train[1] == t).sum()) for t in sorted(set(train[1].tolist()))},
              "test_lesions": {t: int((test[1] == t).sum()) for t in sorted(set(test[1].tolist()))},
              "majority_inside": majority(train[1]), "majority_held_out": majority(test[1]),
              "feature_sets": feature_sets}
    lines = [f"lesions: training sites {result['train_lesions']}, held-out site {result['test_lesions']}", "",
             "| features (true lesion masks) | accuracy, 5-fold CV inside the training sites "
             "| accuracy, held-out site |",
             "|---|---|---|",
             f"| always the most frequent type | {result['majority_inside']:.2f} | {result['majority_held_out']:.2f} |"]
    lines += [f"| {name} | {acc['cv_inside_training_sites']:.2f} | {acc['held_out_site']:.2f} |"
              for name, acc in feature_sets.items()]
    out = args.out or args.workdir
    out.mkdir(parents=True, exist_ok=True)
    (out / "type_predictability.json").write_text(json.dumps(result, indent=1))
    (out / "type_predictability.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
