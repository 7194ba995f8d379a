"""Split conformal calibration of a trained model (``iterdce_calibrate``): predict cases the model did not
train on, score them (inference/conformal.py, ``case_scores``) and store ``conformal_calibration.json`` in
the model folder, which ``iterdce_predict --uncertainty`` reads.

Two sources of such cases: each fold's validation cases predicted by that fold alone (the folds of a
cross-validated model; every case then counts once, predicted by a model that never saw it), or a held-back
folder of raw cases with their real phases predicted by the folds asked for (needed for fold ``all``, which
trained on every case). An ensemble of folds is at least as accurate as one fold on average, so intervals
calibrated on single folds are expected to be wider than needed for the ensemble, not narrower; the coverage
guarantee is the single fold's.
"""
from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from iterdce.core.errors import IterdceError, UsageError
from iterdce.core.kinetics_rule import CURVE_TYPES
from iterdce.dataset.case import DCECase, load_case
from iterdce.dataset.layout import CaseFiles, discover_cases
from iterdce.dataset.masks import derive_foreground_mask
from iterdce.evaluation.kinetics import curve_type, lesion_curve
from iterdce.inference.conformal import (
    CALIBRATION_VERSION,
    DEFAULT_DIFFICULTY,
    DIFFICULTIES,
    EPSILON,
    SCALE_DEFINITION,
    VOXELS_PER_CASE_PHASE,
    ConformalCalibration,
    case_scores,
    time_bin_edges,
)
from iterdce.inference.predictor import IterativePredictor, PredictionSettings
from iterdce.preprocessing.splits import read_splits

CALIBRATION_SEED = 0

Job = tuple[tuple[int | str, ...], list[CaseFiles]]  # (the folds that predict, the cases they predict)


def fold_jobs(raw_dir: Path, splits_file: Path, folds: Sequence[int | str]) -> list[Job]:
    """Each fold's validation cases (``splits_final.json``) from the raw dataset, predicted by that fold."""
    if "all" in folds:
        raise UsageError("fold 'all' trained on every case: calibrate it on held-back cases (--cases DIR)")
    splits = read_splits(splits_file)
    cases = discover_cases(raw_dir).cases
    jobs: list[Job] = []
    for fold in folds:
        if not 0 <= int(fold) < len(splits):
            raise UsageError(f"fold {fold} does not exist: {splits_file} has folds 0-{len(splits) - 1}")
        missing = [c for c in splits[int(fold)]["val"] if c not in cases]
        if missing:
            raise IterdceError(f"{raw_dir}: validation case(s) {', '.join(missing)} of fold {fold} are missing",
                               raw_dir)
        jobs.append(((fold,), [cases[c] for c in splits[int(fold)]["val"]]))
    return jobs


def folder_jobs(cases_dir: Path, folds: Sequence[int | str]) -> list[Job]:
    """Every case of a held-back raw dataset folder, predicted by the ensemble of ``folds``."""
    cases = discover_cases(cases_dir).cases
    if not cases:
        raise IterdceError(f"{cases_dir}: no cases to calibrate on", cases_dir)
    return [(tuple(folds), [cases[c] for c in sorted(cases)])]


class ScoreSet:
    """The signed scores of calibration cases per target-time bin, gathered case by case (``add``), and the
    calibration file they make (``calibration``); shared by ``iterdce_calibrate`` and the benchmarks' references."""

    def __init__(self, edges: Sequence[float], seed: int = CALIBRATION_SEED, n_voxels: int = VOXELS_PER_CASE_PHASE,
                 epsilon: float = EPSILON, change_weight: float = 1.0) -> None:
        self.edges, self.seed, self.n_voxels, self.epsilon = tuple(edges), seed, n_voxels, epsilon
        self.change_weight = change_weight
        self.body: list[list[float]] = [[] for _ in range(len(self.edges) + 1)]
        self.lesion: list[list[float]] = [[] for _ in range(len(self.edges) + 1)]
        self.prior_lesion: list[list[float]] = [[] for _ in range(len(self.edges) + 1)]
        self.types = dict.fromkeys(CURVE_TYPES, 0)
        self.names: list[str] = []
        self.with_prior = True  # every case so far came with the prior's phases

    def add(self, case: DCECase, n_in: int, native: np.ndarray, std: float, prior: np.ndarray | None = None
            ) -> None:
        """Score one case (all its phases read, the first ``n_in`` the inputs) predicted as ``native``, and the
        kinetic prior's phases ``prior`` (the reference of the curve-type probabilities) when given."""
        mask = derive_foreground_mask(case.image[:n_in])
        labels = None if case.lesion is None else case.lesion.astype(np.int16)
        times = [float(t) for t in case.times_s[n_in:]]

        def scores(predicted: np.ndarray) -> tuple[list[list[float]], list[list[float]]]:
            rng = np.random.default_rng([self.seed, zlib.crc32(case.case_id.encode())])
            return case_scores(case.image[n_in:], predicted, case.image[n_in - 1], std, mask, labels, times,
                               self.edges, rng, self.n_voxels, self.epsilon, self.change_weight)

        case_body, case_lesion = scores(native)
        prior_lesion = scores(prior)[1] if prior is not None else None
        for b in range(len(self.body)):
            self.body[b] += case_body[b]
            self.lesion[b] += case_lesion[b]
            if prior_lesion is not None:
                self.prior_lesion[b] += prior_lesion[b]
        self.with_prior = self.with_prior and prior is not None
        for label in [] if labels is None else [int(v) for v in np.unique(labels) if v > 0]:
            kind = curve_type(lesion_curve(case.image, np.asarray(labels == label)), case.times_s)  # the evaluation's
            if kind in self.types:
                self.types[kind] += 1
        self.names.append(case.case_id)

    def type_frequencies(self) -> dict[str, float] | None:
        """The true curve-type shares of the lesions scored so far (None without a typed lesion)."""
        total = sum(self.types.values())
        return {name: count / total for name, count in self.types.items()} if total else None

    def calibration(self, source: str, decimals: int | None = 6) -> ConformalCalibration:
        """The calibration record, each bin's scores sorted (rounded to ``decimals``; None: as computed)."""
        def kept(scores: list[float]) -> tuple[float, ...]:
            return tuple(sorted(scores if decimals is None else (round(v, decimals) for v in scores)))

        frequencies = self.type_frequencies()
        return ConformalCalibration(CALIBRATION_VERSION, SCALE_DEFINITION, self.epsilon, self.edges,
                                    tuple(kept(b) for b in self.body), tuple(kept(b) for b in self.lesion),
                                    tuple(self.names), source, self.seed, self.n_voxels,
                                    None if frequencies is None else {k: round(v, 6) for k, v in frequencies.items()},
                                    tuple(kept(b) for b in self.prior_lesion) if self.with_prior and self.names
                                    else None, self.change_weight)


def calibrate(model_folder: Path, jobs: Sequence[Job], source: str, settings: PredictionSettings | None = None,
              seed: int = CALIBRATION_SEED, n_voxels: int = VOXELS_PER_CASE_PHASE,
              difficulty: str = DEFAULT_DIFFICULTY) -> ConformalCalibration:
    """Predict every job's cases as iterdce_predict does, score them against their real phases with the
    ``difficulty`` of ``conformal.DIFFICULTIES`` and write ``conformal_calibration.json`` into ``model_folder``;
    returns it."""
    settings = settings or PredictionSettings()
    scores: ScoreSet | None = None
    for folds, cases in jobs:
        predictor = IterativePredictor(model_folder, dataclasses.replace(settings, folds=folds, progress=False,
                                                                         coverage=None))
        scores = scores or ScoreSet(time_bin_edges(predictor.plans.trained_target_times_s), seed, n_voxels,
                                    *DIFFICULTIES[difficulty])
        n_in = len(predictor.input_phases)
        for files in tqdm(cases, desc=f"calibration folds {', '.join(map(str, folds))}", unit="case",
                          disable=not settings.progress):
            case = load_case(files, predictor.plans.phase_times_s)
            if case.image.shape[0] <= n_in:
                continue  # no real phase to score against
            inputs = DCECase(case.case_id, case.image[:n_in], case.times_s, case.geometry)
            scores.add(case, n_in, *predictor.predict_case_scaled(inputs, with_prior=True))
    if scores is None or not scores.names:
        raise IterdceError(f"{model_folder}: no case with real target phases to calibrate on", model_folder)
    calibration = scores.calibration(source)
    calibration.save(model_folder)
    return calibration
