"""The voxel-wise kinetic regression baseline of a fold: fitted on the fold's training cases, stored next to
its checkpoints (``fold_<k>/kinetic_regression.json``) and read back by validation and ``iterdce_evaluate``."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from iterdce.core.atomic import write_json_atomic
from iterdce.core.errors import IterdceError, JSONFileError
from iterdce.core.folder_names import FOLD_GLOB
from iterdce.core.json_io import read_json
from iterdce.core.kinetic_terms import SLOPE_SMOOTHING_MM, slope_degree_for
from iterdce.preprocessing.case_files import load_preprocessed
from iterdce.regression.model import REGRESSION_FILE, REGRESSION_FORMAT, KineticRegression, RegressionFitter


class RegressionFitError(IterdceError, ValueError):
    """A stored fit that is missing or unreadable; the message names the file."""


class RegressionEnsemble:
    """The mean prediction of one or more fitted regressions (one per fold, like the network's folds)."""

    def __init__(self, members: Sequence[KineticRegression], sources: Sequence[Path] = ()) -> None:
        if not members:
            raise ValueError("a regression ensemble needs at least one fit")
        self.members, self.sources = list(members), list(sources)

    def predict(self, input_phases: np.ndarray, input_times_s: Sequence[float],
                target_times_s: Sequence[float], spacing_mm: Sequence[float] | None = None) -> np.ndarray:
        return np.mean([m.predict(input_phases, input_times_s, target_times_s, spacing_mm) for m in self.members],
                       axis=0)


def fit_fold_regression(data_dir: Path, case_ids: Sequence[str], n_inputs: int, progress: bool = False
                        ) -> KineticRegression:
    """Fit the regression on preprocessed (TI-normalized, plan-space) training cases."""
    fitter = RegressionFitter(slope_degree=slope_degree_for(n_inputs), slope_sigma_mm=SLOPE_SMOOTHING_MM)
    for case_id in tqdm(case_ids, desc="fitting the regression baseline", unit="case", disable=not progress):
        case = load_preprocessed(data_dir, case_id)
        fitter.add_case(case.data, case.times_s, n_inputs, case.mask > 0, case.lesion, case.spacing_mm)
    return fitter.fit()


def ensure_fold_regression(fold_folder: Path, data_dir: Path, case_ids: Sequence[str], n_inputs: int,
                           progress: bool = False) -> KineticRegression:
    """The fold's stored fit, fitted and written first when it does not exist yet (or was written by an older
    iterdce in another format: the fit is derived data, refitted from the same cases)."""
    path = fold_folder / REGRESSION_FILE
    stored = stored_fit_for(path, n_inputs)
    if stored is not None:
        return stored
    model = fit_fold_regression(data_dir, case_ids, n_inputs, progress)
    write_json_atomic(path, model.to_json())
    return model


def stored_fit_for(path: Path, n_inputs: int) -> KineticRegression | None:
    """The fit stored at ``path`` when it is one for ``n_inputs`` inputs; None when there is none or it is derived
    data to refit: written by an older iterdce in another format, or without the slope terms three or more inputs
    now have (kinetic_terms.slope_degree_for) or their current smoothing (SLOPE_SMOOTHING_MM). A broken file of the
    current format is an error naming it."""
    if not path.is_file():
        return None
    try:
        model = load_regression_file(path)
    except RegressionFitError:
        if read_json(path, expect=dict).get("format") == REGRESSION_FORMAT:
            raise
        return None
    wanted = slope_degree_for(n_inputs)
    current = model.slope_degree == wanted and (not wanted or model.slope_sigma_mm == SLOPE_SMOOTHING_MM)
    return model if current else None


def load_regression_file(path: Path) -> KineticRegression:
    """One stored fit; errors name the file."""
    try:
        return KineticRegression.from_json(read_json(path, expect=dict))
    except (JSONFileError, ValueError, KeyError, TypeError) as exc:
        raise RegressionFitError(f"{path}: cannot read the kinetic regression fit ({exc})") from exc


def load_regression(path: Path) -> RegressionEnsemble:
    """A fit file, or a model folder (or fold folder) whose ``fold_*/kinetic_regression.json`` fits are averaged."""
    path = Path(path)
    if path.is_file():
        files = [path]
    else:
        files = sorted(path.glob(REGRESSION_FILE)) or sorted(path.glob(f"{FOLD_GLOB}/{REGRESSION_FILE}"))
    if not files:
        raise RegressionFitError(f"{path}: no {REGRESSION_FILE} here or in its {FOLD_GLOB} folders; train a fold first "
                         "(iterdce_train fits it) or pass the file")
    return RegressionEnsemble([load_regression_file(f) for f in files], files)
