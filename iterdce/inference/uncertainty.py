"""``iterdce_predict --uncertainty``: a model folder's conformal calibration (conformal.py) applied to one
synthesized case: the interval of every phase, each lesion's curve with its band and its curve-type
probabilities, and the kinetic map's confidence layer.

Everything is in the output's intensity units on the case's own grid: the half-width of a voxel's interval is
``q * std * s`` with the case's TI-norm ``std`` and its difficulty ``s`` (conformal.difficulty). The
curve-type probabilities read the late phase's conformal predictive distribution; the early value of the rule
(the highest post-contrast value at <= 120 s, core/kinetics_rule.py) is taken as predicted, which it is exactly
when the early phases are inputs.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iterdce.core.atomic import write_json_atomic
from iterdce.core.errors import IterdceError
from iterdce.core.file_names import (
    KINETICS_REFERENCES_KEY,
    REFERENCE_KINETIC_PRIOR,
    REFERENCE_TYPE_FREQUENCIES,
    bound_file_name,
    case_file_name,
    kinetic_confidence_name,
    kinetics_json_name,
)
from iterdce.core.kinetics_rule import CURVE_CODES, CURVE_TYPES, THRESHOLD, classify_curve, early_index
from iterdce.dataset.nifti_io import Geometry, read_image, write_image
from iterdce.inference.conformal import (
    CalibrationError,
    ConformalCalibration,
    conformal_quantile,
    difficulty,
    predictive_cdf,
    time_bin,
    voxel_cdf,
)
from iterdce.inference.export import kinetic_map

DEFAULT_COVERAGE = 0.9


@dataclass(frozen=True)
class Uncertainty:
    """What one prediction run needs of the calibration (plain numbers: picklable for the ``-np`` workers)."""

    coverage: float
    epsilon: float
    edges: tuple[float, ...]
    body_q: tuple[float, ...]  # per time bin
    lesion_q: tuple[float, ...]
    body_scores: tuple[tuple[float, ...], ...]  # sorted signed scores per bin
    lesion_scores: tuple[tuple[float, ...], ...]
    lesion_dir: str | None = None
    # the references of the curve-type probabilities (calibration file; None when it has none)
    type_frequencies: tuple[float, ...] | None = None  # in CURVE_TYPES order
    prior_lesion_scores: tuple[tuple[float, ...], ...] | None = None
    change_weight: float = 1.0  # the difficulty's weight on the predicted change (conformal.DIFFICULTIES)

    def difficulty(self, predicted: np.ndarray | float, last_input: np.ndarray | float, std: float) -> np.ndarray:
        """The calibration's difficulty ``s`` of a prediction (conformal.difficulty with its epsilon and weight)."""
        return difficulty(predicted, last_input, std, self.epsilon, self.change_weight)

    @classmethod
    def of(cls, calibration: ConformalCalibration, coverage: float, lesion_dir: Path | None = None
           ) -> Uncertainty:
        """The multipliers at ``coverage``; a bin with too few scores for it is refused in one line."""
        if not 0.0 < coverage < 1.0:
            raise CalibrationError(f"--coverage {coverage}: must lie in (0, 1)")
        body = tuple(conformal_quantile(s, coverage) for s in calibration.body_scores)
        lesion = tuple(conformal_quantile(s, coverage) for s in calibration.lesion_scores)
        short = [f"{name} bin {b} ({len(scores[b])} scores)" for name, q, scores in
                 (("body", body, calibration.body_scores), ("lesion", lesion, calibration.lesion_scores))
                 for b in range(len(q)) if not np.isfinite(q[b]) and (name == "body" or lesion_dir is not None)]
        if short:
            raise CalibrationError(f"--coverage {coverage:g}: the calibration holds too few scores for it in "
                                   f"{', '.join(short)}: need at least {int(np.ceil(coverage / (1 - coverage)))}; "
                                   "lower --coverage or calibrate on more cases")
        frequencies = calibration.type_frequencies
        return cls(coverage, calibration.epsilon, calibration.time_bin_edges_s, body, lesion,
                   tuple(tuple(sorted(s)) for s in calibration.body_scores),
                   tuple(tuple(sorted(s)) for s in calibration.lesion_scores),
                   None if lesion_dir is None else str(lesion_dir),
                   None if frequencies is None else tuple(float(frequencies.get(n, 0.0)) for n in CURVE_TYPES),
                   None if calibration.prior_lesion_scores is None else
                   tuple(tuple(sorted(s)) for s in calibration.prior_lesion_scores), calibration.change_weight)

    @property
    def wants_prior(self) -> bool:
        """Whether lesion kinetics are written with the kinetic prior's probabilities as a reference."""
        return self.lesion_dir is not None and self.prior_lesion_scores is not None

    def provenance(self) -> dict[str, Any]:
        """What changes the interval files (into the provenance mark)."""
        return {"coverage": self.coverage}


def type_probabilities(scores: Sequence[float], predicted_late: float, early: float, scale: float
                       ) -> dict[str, float] | None:
    """P(persistent / plateau / washout) of one curve whose late value is ``predicted_late`` with the
    native ``scale`` (``std * s``): the predictive distribution of the signed ``scores`` integrated over the
    rule's bands r > 0.10, |r| <= 0.10, r < -0.10 of r = (late - early) / early. None when ``early`` <= 0
    (the rule is undefined)."""
    if not early > 0 or not scale > 0:
        return None
    z = [(early * (1 - THRESHOLD) - predicted_late) / scale, (early * (1 + THRESHOLD) - predicted_late) / scale]
    low, high = predictive_cdf(scores, z)
    return {"persistent": float(1.0 - high), "plateau": float(high - low), "washout": float(low)}


def write_uncertainty(uncertainty: Uncertainty, restored: np.ndarray, inputs: np.ndarray,
                      times_s: Sequence[float] | np.ndarray, std: float, geometry: Geometry, out_dir: Path,
                      case_id: str, mark: str | None, kinetic_confidence: bool, prior: np.ndarray | None = None
                      ) -> list[Path]:
    """The interval files of every synthesized phase, ``<case>_kinetics.json`` with lesion masks, and (with
    ``kinetic_confidence``) the kinetic map's confidence layer; returns the paths written.

    Args:
        restored: the synthesized phases [T, X, Y, Z] on the case's grid (native intensities).
        inputs: the input phases [n_in, X, Y, Z] as read.
        times_s: every time, inputs first.
        std: the case's TI-norm standard deviation (the unit of the difficulty).
        prior: the kinetic prior's phases like ``restored`` (``composition.native_phases_and_prior``): each lesion's
            curve-type probabilities then have the prior's beside them, a reference (``wants_prior``).
    """
    first = len(times_s) - len(restored)
    last = inputs[-1].astype(np.float32)
    bins = [time_bin(t, uncertainty.edges) for t in times_s[first:]]
    paths = []
    for t, volume in enumerate(restored):
        half = np.float32(uncertainty.body_q[bins[t]] * std) * uncertainty.difficulty(volume, last, std)
        for upper, bound in ((False, volume - half), (True, volume + half)):
            path = out_dir / bound_file_name(case_id, first + t, upper)
            write_image(path, bound.astype(np.float32), geometry, description=mark)
            paths.append(path)
    all_phases = np.concatenate([inputs.astype(np.float32), restored.astype(np.float32)])
    if uncertainty.lesion_dir is not None:
        prior_phases = None if prior is None else np.concatenate([inputs.astype(np.float32),
                                                                  prior.astype(np.float32)])
        paths.append(write_lesion_kinetics(uncertainty, all_phases, times_s, first, bins, std, geometry.shape[:3],
                                           out_dir, case_id, mark, prior_phases))
    if kinetic_confidence:
        path = out_dir / kinetic_confidence_name(case_id)
        write_image(path, voxel_type_confidence(uncertainty, all_phases, times_s, bins[-1], std, last), geometry,
                    description=mark)
        paths.append(path)
    return paths


def write_lesion_kinetics(uncertainty: Uncertainty, all_phases: np.ndarray, times_s: Sequence[float] | np.ndarray,
                          first: int, bins: Sequence[int], std: float, shape: Sequence[int], out_dir: Path,
                          case_id: str, mark: str | None, prior_phases: np.ndarray | None = None) -> Path:
    """``<case>_kinetics.json``: per lesion of ``<lesion_dir>/<case>.nii.gz``, the predicted mean curve, the band
    of each synthesized phase and P(persistent / plateau / washout), with the references' probabilities when the
    calibration has them (``prior_phases``: every phase of the kinetic prior's curve); no lesions when the case
    has no mask."""
    mask_path = Path(uncertainty.lesion_dir or "") / case_file_name(case_id)
    lesions: list[dict[str, Any]] = []
    if mask_path.is_file():
        labels = read_image(mask_path)[0]
        if tuple(labels.shape[:3]) != tuple(shape):
            raise IterdceError(f"{mask_path}: shape {labels.shape} differs from the case's {tuple(shape)}",
                               mask_path)
        labels = np.rint(labels).astype(np.int32)
        for label in [int(v) for v in np.unique(labels) if v > 0]:
            entry = lesion_entry(uncertainty, all_phases[:, labels == label].astype(np.float64).mean(axis=1),
                                 times_s, first, bins, std, label, int((labels == label).sum()))
            prior_curve = None if prior_phases is None else \
                prior_phases[:, labels == label].astype(np.float64).mean(axis=1)
            references = reference_probabilities(uncertainty, prior_curve, times_s, first, bins[-1], std)
            lesions.append({**entry, **({KINETICS_REFERENCES_KEY: references} if references else {})})
    path = out_dir / kinetics_json_name(case_id)
    write_json_atomic(path, {
        "coverage": uncertainty.coverage, "phase_times_s": [float(t) for t in times_s],
        "synthesized_phases": list(range(first, len(times_s))),
        "lesion_mask": str(mask_path) if mask_path.is_file() else None, "lesions": lesions, "written_by": mark,
        "note": "curve: mean intensity per phase (inputs, then synthesized); lower/upper: the lesion-mean interval "
                "of each synthesized phase at this coverage; probabilities: of the curve type by the BI-RADS rule; "
                f"{KINETICS_REFERENCES_KEY}: the same from the calibration lesions' type frequencies and from the "
                "kinetic prior alone (documentation/prediction.md)"})
    return path


def lesion_entry(uncertainty: Uncertainty, curve: np.ndarray, times_s: Sequence[float] | np.ndarray, first: int,
                 bins: Sequence[int], std: float, label: int, voxels: int) -> dict[str, Any]:
    """One lesion's entry of ``<case>_kinetics.json`` from its predicted mean curve (native intensities)."""
    last_input = float(curve[first - 1])
    scales = [float(std * uncertainty.difficulty(curve[first + t], last_input, std)) for t in range(len(bins))]
    half = [uncertainty.lesion_q[b] * s for b, s in zip(bins, scales)]
    early = float(curve[early_index(times_s)].max())
    probabilities = type_probabilities(uncertainty.lesion_scores[bins[-1]], float(curve[-1]), early, scales[-1])
    return {"label": label, "voxels": voxels, "curve": [float(v) for v in curve],
            "lower": [float(curve[first + t] - h) for t, h in enumerate(half)],
            "upper": [float(curve[first + t] + h) for t, h in enumerate(half)],
            "predicted_type": classify_curve(curve, times_s), "probabilities": probabilities}


def reference_probabilities(uncertainty: Uncertainty, prior_curve: np.ndarray | None,
                            times_s: Sequence[float] | np.ndarray, first: int, last_bin: int, std: float
                            ) -> dict[str, dict[str, float] | None]:
    """What a lesion's curve-type probabilities are compared with (iterdce_evaluate): the calibration lesions'
    type frequencies (a constant answer from data like the training data) and the kinetic prior's own
    probabilities (its curve read with its own calibrated scores); only those the calibration holds."""
    references: dict[str, dict[str, float] | None] = {}
    if uncertainty.type_frequencies is not None:
        references[REFERENCE_TYPE_FREQUENCIES] = dict(zip(CURVE_TYPES, uncertainty.type_frequencies))
    if prior_curve is not None and uncertainty.prior_lesion_scores is not None:
        scale = float(std * uncertainty.difficulty(prior_curve[-1], float(prior_curve[first - 1]), std))
        references[REFERENCE_KINETIC_PRIOR] = type_probabilities(uncertainty.prior_lesion_scores[last_bin],
                                                       float(prior_curve[-1]),
                                                       float(prior_curve[early_index(times_s)].max()), scale)
    return references


def voxel_type_confidence(uncertainty: Uncertainty, all_phases: np.ndarray, times_s: Sequence[float] | np.ndarray,
                          last_bin: int, std: float, last_input: np.ndarray) -> np.ndarray:
    """Per voxel of the kinetic map, the probability of the curve type it shows (0 where it shows none): the
    body scores' predictive distribution of the last phase over the rule's bands, as ``type_probabilities``."""
    codes = kinetic_map(all_phases, times_s)
    late = all_phases[-1].astype(np.float64)
    scale = std * uncertainty.difficulty(late, last_input, std)
    early = all_phases[early_index(times_s)].max(axis=0).astype(np.float64)
    scores = np.asarray(uncertainty.body_scores[last_bin])
    low = voxel_cdf(scores, (early * (1 - THRESHOLD) - late) / scale)
    high = voxel_cdf(scores, (early * (1 + THRESHOLD) - late) / scale)
    confidence = np.zeros(codes.shape, np.float32)
    for name, probability in zip(CURVE_TYPES, (1.0 - high, high - low, low)):
        chosen = codes == CURVE_CODES[name]
        confidence[chosen] = probability[chosen]
    return confidence
