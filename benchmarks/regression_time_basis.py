"""Which time basis lets the voxel-wise kinetic regression (the baseline, and the network's kinetic prior) carry
over to a protocol slower than the training sites'? Chosen without the held-out site, then shown on it.

The regression models a voxel's change after the last input as a polynomial in time (``tau**1 .. tau**m``,
kinetic_terms.py), with ``tau`` clipped to the training range. The held-out site of the cross-site benchmark is
acquired later than every training site (site D's last phase 503-592 s; sites A-C at most 512 s), so its last
phase is an extrapolation in time. This script fits each basis (time degree 1-3, with and without the clip) on
site A, the fastest training protocol, and scores it on sites B and C, whose times lie beyond A's as site D's lie
beyond A-C's; the choice is made there, and only then is each basis, fitted on A-C, shown on site D.

Run after ``benchmarks/cross_site.py`` on the same workdir (it reuses the simulated sites and the A-C plan's
preprocessed cases); no training, about 20 minutes on one idle core:

  python -m benchmarks.regression_time_basis --workdir cross_site_work --out time_basis.json
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

from benchmarks.cross_site_data import real_target_folder
from iterdce.core.file_names import archive_name
from iterdce.core.folder_names import IMAGES_TR, LABELS_TR, plans_data_folder_name
from iterdce.core.kinetic_terms import DEGREE
from iterdce.evaluation.folders import evaluate_folders
from iterdce.preprocessing.case_files import load_preprocessed
from iterdce.regression.model import KineticRegression, RegressionFitter

SITE_FOLDERS = {"A": "Dataset900_SiteA", "B": "Dataset901_SiteB", "C": "Dataset902_SiteC", "D": "Dataset903_SiteD"}
# (fitted on, scored on): the fastest training site's fit on the two slower ones (an extrapolation in time, as
# from sites A-C to site D), then the held-out site itself
SPLITS = (("A", "B"), ("A", "C"), ("ABC", "D"))
BASES = ((3, True), (3, False), (2, True), (2, False), (1, True))  # (time degree, clip tau to the fitted range)
UNCLIPPED = 1e9


def fit(data: Path, sites: str, time_degree: int, n_inputs: int) -> KineticRegression:
    """The regression fitted on the preprocessed cases of ``sites`` (case names start with ``site<x>_``)."""
    fitter = RegressionFitter(DEGREE, time_degree)
    for path in sorted(data.glob(archive_name("*"))):
        if path.name[4].upper() in sites:
            case = load_preprocessed(data, path.name[:-4])
            fitter.add_case(case.data, case.times_s, n_inputs, case.mask > 0, case.lesion)
    return fitter.fit()


def score(model: KineticRegression, site_dir: Path, scratch: Path, n_inputs: int, name: str) -> dict[str, float]:
    """Last-phase lesion enhancement error, SCC, curve-type accuracy and last-phase PSNR on one site's cases."""
    targets = real_target_folder(site_dir, scratch / f"targets_{site_dir.name}", n_inputs)
    with contextlib.redirect_stdout(io.StringIO()):
        summary = evaluate_folders(targets, site_dir / IMAGES_TR, scratch / name, site_dir / LABELS_TR,
                                   progress=False, regression=model, methods=("regression",))
    entry = summary["methods"]["regression"]
    kinetics, last = entry["kinetics"], entry["per_phase"][max(entry["per_phase"], key=int)]
    return {"ee_last": kinetics["last_phase_enhancement_error"]["mean"], "scc": kinetics["scc"]["mean"],
            "type_acc": kinetics["curve_type_accuracy"], "psnr_last": last["psnr"]["mean"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="the cross-site benchmark's workdir")
    parser.add_argument("--out", type=Path, required=True, help="results json")
    parser.add_argument("--n-inputs", type=int, default=2)
    args = parser.parse_args()
    data = args.workdir / "preprocessed" / "Dataset899_SitesABC" / plans_data_folder_name("plans")
    if not data.is_dir():
        parser.error(f"{data} is missing: run python -m benchmarks.cross_site with --workdir {args.workdir} first")
    rows, fits = [], {}
    for train, test in SPLITS:
        for time_degree, clip in BASES:
            if (train, time_degree) not in fits:  # one fit serves the clipped and the unclipped basis
                fits[train, time_degree] = fit(data, train, time_degree, args.n_inputs)
            fitted = fits[train, time_degree]
            model = fitted if clip else KineticRegression(
                fitted.degree, fitted.time_degree, fitted.coefficients, fitted.feature_low,
                (fitted.feature_high[0], fitted.feature_high[1], UNCLIPPED))
            name = f"{train}_to_{test}_t{time_degree}_{'clip' if clip else 'noclip'}"
            metrics = score(model, args.workdir / "raw" / SITE_FOLDERS[test], args.out.parent / "time_basis_work",
                            args.n_inputs, name)
            rows.append({"fit": train, "test": test, "time_degree": time_degree, "clip": clip,
                         "tau_max": fitted.feature_high[2], **metrics})
            print(f"fit {train:3s} -> {test}: time degree {time_degree}, {'clip' if clip else 'no clip':7s} "
                  f"EE last {metrics['ee_last']:.4f}  SCC {metrics['scc']:.3f}  type {metrics['type_acc']:.3f}  "
                  f"PSNR last {metrics['psnr_last']:.2f}", flush=True)
            args.out.write_text(json.dumps(rows, indent=1))  # a run cut short keeps its rows


if __name__ == "__main__":
    main()
