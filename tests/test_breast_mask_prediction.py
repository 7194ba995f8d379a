"""``iterdce_predict --breast-masks``: a model whose plan normalizes inside breast masks (``normalization.mask``
``breast``) is given each case's mask at prediction, so the case is normalized as its training cases were; a
missing or misfit mask is refused before anything is written, the option is refused for other plans, and such a
plan predicted without masks warns."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from iterdce.commands.predict import main as predict_main
from iterdce.core.kinetic_terms import DEGREE, TIME_DEGREE
from iterdce.dataset.nifti_io import Geometry, read_image, write_image
from iterdce.inference.inputs import PredictionInputError
from iterdce.regression.model import KineticRegression
from tests.test_composition import prior_fit, prior_model_folder
from tests.test_predictor import TIMES, base_plans, oblique_affine, predictor_for, smooth_phases, write_case  # noqa: F401

SHAPE = (24, 22, 10)


def breast_plans(plans: dict) -> dict:
    return {**plans, "normalization": {**plans["normalization"], "mask": "breast"}}


def write_inputs(tmp_path, with_mask: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """One case and (optionally) its breast mask: a box away from the zero border."""
    phases = smooth_phases(SHAPE, seed=7)
    geometry = Geometry(SHAPE, oblique_affine())
    write_case(tmp_path / "in", "case_b", phases, geometry)
    breast = np.zeros(SHAPE, bool)
    breast[4:16, 3:14, 2:8] = True
    if with_mask:
        write_image(tmp_path / "masks" / "case_b.nii.gz", breast.astype(np.uint8), geometry)
    return phases, breast


def test_a_breast_plan_normalizes_each_case_inside_its_mask(tmp_path, base_plans):  # noqa: F811
    fit = prior_fit()
    folder = prior_model_folder(tmp_path, breast_plans(base_plans), fit)
    phases, breast = write_inputs(tmp_path)
    predictor_for(folder, precision="fp32", breast_masks=tmp_path / "masks").predict_folder(
        tmp_path / "in", tmp_path / "out")
    reference = phases[1][breast].astype(np.float64)
    mean, std = reference.mean(), reference.std()
    regression = KineticRegression(DEGREE, TIME_DEGREE, np.asarray(fit.coefficients), fit.low, fit.high)
    want = regression.predict((phases - mean) / std, TIMES[:2], TIMES[2:]) * std + mean
    inside = np.any(phases != 0, axis=0)
    data = read_image(tmp_path / "out" / "case_b_0005.nii.gz")[0]
    assert float(np.abs(data - want[-1])[inside].max()) <= 1e-4 * float(np.ptp(phases[1]))
    # without the mask the case is normalized in its body foreground: another image, and a warning says so
    with pytest.warns(UserWarning, match="without --breast-masks"):
        predictor_for(folder, precision="fp32").predict_folder(tmp_path / "in", tmp_path / "out_body")
    body = read_image(tmp_path / "out_body" / "case_b_0005.nii.gz")[0]
    assert float(np.abs(body - data)[inside].max()) > 1e-2 * float(np.ptp(phases[1]))


def test_a_missing_or_misfit_mask_is_refused_before_anything_is_written(tmp_path, base_plans):  # noqa: F811
    folder = prior_model_folder(tmp_path, breast_plans(base_plans), prior_fit())
    write_inputs(tmp_path, with_mask=False)
    predictor = predictor_for(folder, precision="fp32", breast_masks=tmp_path / "masks")
    with pytest.raises(PredictionInputError, match=r"case_b\.nii\.gz: no breast mask for case case_b"):
        predictor.predict_folder(tmp_path / "in", tmp_path / "out")
    write_image(tmp_path / "masks" / "case_b.nii.gz", np.ones((5, 5, 5), np.uint8), Geometry((5, 5, 5), np.eye(4)))
    with pytest.raises(PredictionInputError, match="its grid"):
        predictor.predict_folder(tmp_path / "in", tmp_path / "out")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_breast_masks_are_refused_for_a_plan_normalized_elsewhere(tmp_path, base_plans, capsys):  # noqa: F811
    prior_model_folder(tmp_path, base_plans, prior_fit())
    write_inputs(tmp_path)
    argv = ["-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-d", "1", "-f", "0", "--device", "cpu",
            "--quiet", "--breast-masks", str(tmp_path / "masks"), "--results", str(tmp_path / "results")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert predict_main(argv) != 0
    assert "--breast-masks: this model's plan normalizes inside the 'foreground' mask" in capsys.readouterr().err
