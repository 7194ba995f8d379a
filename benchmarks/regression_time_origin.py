"""Does the voxel-wise kinetic regression (the baseline, and the network's kinetic prior) carry over to another
site better when it knows *when* its last input was acquired? Chosen without the held-out site, then shown on it.

The regression models a voxel's change after the last input as ``sum c * u**a * v**b * tau**m`` with ``tau`` the
time since the last input (kinetic_terms.py). It does not know where on the uptake curve that last input lies:
a first post-contrast phase at 60 s (site A) and one at 120 s (site D) are treated alike, although by 120 s many
lesions have reached their peak. Two time bases that do know it, with the same clipping to the training range:

- ``since_last``: ``tau**m`` (today's basis);
- ``since_start``: ``(t / T)**m - (t_last / T)**m``, powers of the time since the pre-contrast phase (the
  series' time origin) taken as differences, so the change is still 0 at the last input and, for ``m >= 2``,
  depends on how late the last input was (``t**2 - t_last**2 = tau * (t + t_last)``); same number of terms;
- ``since_last_x_last``: today's terms plus each of them times ``t_last / T`` (twice the terms).

Each basis is fitted on training sites and scored on another training site (leave one site out among A-C, and
site A's fit on the slower sites B and C as in regression_time_basis.py); the choice is made there, and only then
is each basis, fitted on A-C, shown on site D. No training; run after ``benchmarks/cross_site.py`` on the same
workdir:

  python -m benchmarks.regression_time_origin --workdir cross_site_work --out time_origin.json
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.regression_time_basis import SITE_FOLDERS, score
from iterdce.core.file_names import archive_name
from iterdce.core.folder_names import plans_data_folder_name
from iterdce.core.kinetic_terms import DEGREE, TIME_DEGREE, TIME_UNIT_S, kinetic_terms, n_terms
from iterdce.preprocessing.case_files import load_preprocessed

BASES = ("since_last", "since_start", "since_last_x_last")
SPLITS = (("BC", "A"), ("AC", "B"), ("AB", "C"), ("A", "B"), ("A", "C"), ("ABC", "D"))


def time_factors(basis: str, t_last: float, t: float) -> list[float]:
    """The time factors that multiply each (u, v) term, in units of ``TIME_UNIT_S`` (already clipped)."""
    tau = (t - t_last) / TIME_UNIT_S
    if basis == "since_last":
        return [tau ** m for m in range(1, TIME_DEGREE + 1)]
    if basis == "since_start":
        s, s0 = t / TIME_UNIT_S, t_last / TIME_UNIT_S
        return [s ** m - s0 ** m for m in range(1, TIME_DEGREE + 1)]
    if basis == "since_last_x_last":
        plain = [tau ** m for m in range(1, TIME_DEGREE + 1)]
        return plain + [f * t_last / TIME_UNIT_S for f in plain]
    raise ValueError(f"unknown basis {basis!r}")


def design(basis: str, u: np.ndarray, v: np.ndarray, t_last: float, t: float) -> list[np.ndarray]:
    """Every term of the basis for voxels (u, v) at target time t after a last input at t_last."""
    uv = kinetic_terms(u, v, 1.0, DEGREE, 1)  # the (u, v) products alone (tau = 1, one time power)
    return [term * factor for factor in time_factors(basis, t_last, t) for term in uv]


@dataclass
class TimeOriginRegression:
    """A fitted basis; ``predict`` matches evaluation's PhasePredictor. Clips u, v and both times to training."""

    basis: str
    coefficients: np.ndarray
    low: np.ndarray  # (u, v, t_last, t, t - t_last)
    high: np.ndarray

    def predict(self, input_phases: np.ndarray, input_times_s: Sequence[float],
                target_times_s: Sequence[float]) -> np.ndarray:
        pre, early = input_phases[0].astype(np.float64), input_phases[-1].astype(np.float64)
        u = np.clip(early - pre, self.low[0], self.high[0])
        v = np.clip(pre, self.low[1], self.high[1])
        t_last = float(np.clip(input_times_s[-1], self.low[2], self.high[2]))
        out = np.empty((len(target_times_s), *early.shape), np.float32)
        for k, target in enumerate(target_times_s):
            if self.basis == "since_start":  # clip the time since the series' start
                t = float(np.clip(target, max(self.low[3], t_last), self.high[3]))
            else:  # clip the time since the last input, exactly as the package's regression
                t = t_last + float(np.clip(target - input_times_s[-1], self.low[4], self.high[4]))
            out[k] = early + sum(c * term for c, term in zip(self.coefficients, design(self.basis, u, v, t_last, t)))
        return out


def fit(data: Path, sites: str, basis: str, n_inputs: int, max_voxels: int = 200_000) -> TimeOriginRegression:
    """Weighted least squares as RegressionFitter (foreground and lesion half each per case, seeded subsample)."""
    rng = np.random.default_rng(0)
    count = n_terms(DEGREE, 1) * len(time_factors(basis, 1.0, 2.0))
    gram, moments = np.zeros((count, count)), np.zeros(count)
    low, high = np.full(5, np.inf), np.full(5, -np.inf)
    for path in sorted(data.glob(archive_name("*"))):
        if path.name[4].upper() not in sites:
            continue
        case = load_preprocessed(data, path.name[:-4])
        times = np.asarray(case.times_s, np.float64)
        fg = case.mask > 0
        les = np.zeros_like(fg) if case.lesion is None else case.lesion > 0
        for region in (fg & ~les, les):
            index = np.flatnonzero(region)
            if index.size == 0:
                continue
            if index.size > max_voxels:
                index = np.sort(rng.choice(index, max_voxels, replace=False))
            flat = case.data.reshape(case.data.shape[0], -1)[:, index].astype(np.float64)
            pre, early = flat[0], flat[n_inputs - 1]
            weight = 0.5 / (index.size * (times.size - n_inputs))
            for k in range(n_inputs, times.size):
                terms = np.stack([np.broadcast_to(term, pre.shape) for term in
                                  design(basis, early - pre, pre, times[n_inputs - 1], times[k])])
                gram += weight * terms @ terms.T
                moments += weight * terms @ (flat[k] - early)
            uv = np.stack([early - pre, pre])
            low[:2] = np.minimum(low[:2], np.percentile(uv, 0.5, axis=1))
            high[:2] = np.maximum(high[:2], np.percentile(uv, 99.5, axis=1))
        low[2], high[2] = min(low[2], times[n_inputs - 1]), max(high[2], times[n_inputs - 1])
        low[3], high[3] = min(low[3], times[n_inputs]), max(high[3], times[-1])
        taus = times[n_inputs:] - times[n_inputs - 1]
        low[4], high[4] = min(low[4], taus.min()), max(high[4], taus.max())
    return TimeOriginRegression(basis, np.linalg.lstsq(gram, moments, rcond=1e-13)[0], low, high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, required=True, help="the cross-site benchmark's workdir")
    parser.add_argument("--out", type=Path, required=True, help="results json")
    parser.add_argument("--n-inputs", type=int, default=2)
    parser.add_argument("--splits", nargs="+", default=[f"{a}:{b}" for a, b in SPLITS],
                        help="fit:test site pairs (default: every split)")
    args = parser.parse_args()
    data = args.workdir / "preprocessed" / "Dataset899_SitesABC" / plans_data_folder_name("plans")
    if not data.is_dir():
        parser.error(f"{data} is missing: run python -m benchmarks.cross_site with --workdir {args.workdir} first")
    for split in args.splits:
        train, _, test = split.partition(":")
        if not (train and set(train) <= set("ABC") and test in SITE_FOLDERS):
            parser.error(f"--splits: {split!r} is not FIT:TEST with FIT among A, B, C and TEST one of A-D")
    rows = []
    for split in args.splits:
        train, test = split.split(":")
        for basis in BASES:
            model = fit(data, train, basis, args.n_inputs)
            metrics = score(model, args.workdir / "raw" / SITE_FOLDERS[test],  # type: ignore[arg-type]
                            args.out.parent / "time_origin_work", args.n_inputs, f"{train}_to_{test}_{basis}")
            rows.append({"fit": train, "test": test, "basis": basis, **metrics})
            print(f"fit {train:3s} -> {test}: {basis:18s} EE last {metrics['ee_last']:.4f}  SCC {metrics['scc']:.3f}"
                  f"  type {metrics['type_acc']:.3f}  PSNR last {metrics['psnr_last']:.2f}", flush=True)
            args.out.write_text(json.dumps(rows, indent=1))  # a run cut short keeps its rows


if __name__ == "__main__":
    main()
