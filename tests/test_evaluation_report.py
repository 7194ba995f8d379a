"""Case evaluation, report files and the iterdce_evaluate CLI on hand-made volumes with known answers."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iterdce.commands.evaluate import main as evaluate_main
from iterdce.dataset.nifti_io import write_image
from iterdce.evaluation.case_evaluation import evaluate_case
from iterdce.evaluation.folders import EvaluationInputError, evaluate_folders
from iterdce.evaluation.region import Scoring
from iterdce.evaluation.report import summarize, summary_table, write_report
from tests.helpers import make_raw_dataset

TIMES = [0.0, 85.0, 155.0, 225.0, 295.0, 365.0]


def _volumes(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (16, 16, 8)
    base = rng.normal(0.0, 1.0, shape).astype(np.float32)
    lesion = np.zeros(shape, np.int16)
    lesion[6:10, 6:10, 3:5] = 1
    real = np.stack([base + 0.3 * k * (lesion > 0) for k in range(6)]).astype(np.float32)
    return real, lesion, np.ones(shape, bool)


def test_perfect_synthesis_scores_perfectly_and_baselines_do_not() -> None:
    real, lesion, mask = _volumes()
    evaluation = evaluate_case("c", real[2:], real, TIMES, mask, lesion)
    rows = pd.DataFrame(evaluation.phase_rows)
    ours = rows[rows["method"] == "iterdce"]
    assert np.isinf(ours["psnr"]).all()
    assert np.allclose(ours["ssim"], 1.0) and np.allclose(ours["mae"], 0.0)
    assert np.allclose(ours["enhancement_error"], 0.0)
    copy = rows[(rows["method"] == "copy_last") & (rows["phase"] == 5)]
    # the lesion rises 0.3 per phase: copy-last of phase 1 misses phase 5 by 4 * 0.3
    assert copy["enhancement_error"].iloc[0] == pytest.approx((4 * 0.3) ** 2, rel=1e-5)
    linear = rows[(rows["method"] == "linear")].sort_values("phase")
    # the line through (0 s, 0) and (85 s, 0.3) predicts 0.3 t / 85 where the lesion really holds 0.3 k
    expected = [(0.3 * TIMES[k] / 85.0 - 0.3 * k) ** 2 for k in range(2, 6)]
    assert np.allclose(linear["enhancement_error"], expected, rtol=1e-4)
    lesions = pd.DataFrame(evaluation.lesion_rows)
    assert lesions.loc[lesions["method"] == "iterdce", "scc"].iloc[0] == pytest.approx(1.0)
    assert lesions.loc[lesions["method"] == "iterdce", "dtw"].iloc[0] == pytest.approx(0.0)


def test_known_offset_gives_known_errors_and_summary(tmp_path: Path) -> None:
    real, lesion, mask = _volumes(1)
    synthesized = real[2:] + 0.5
    evaluation = evaluate_case("c", synthesized, real, TIMES, mask, lesion)
    rows = pd.DataFrame(evaluation.phase_rows)
    ours = rows[rows["method"] == "iterdce"]
    assert np.allclose(ours["mae"], 0.5, atol=1e-6)
    assert np.allclose(ours["enhancement_error"], 0.25, atol=1e-6)
    summary = write_report([evaluation], tmp_path, Scoring("foreground", 1))
    assert summary["scoring"]["region"] == "foreground" and "phase 1" in summary["scoring"]["normalization"]
    assert "scored on each case's own grid inside the body foreground" in summary_table(summary)
    assert summary["methods"]["iterdce"]["all_phases"]["enhancement_error"]["mean"] == pytest.approx(0.25, abs=1e-6)
    for name in ("per_case.csv", "curves.csv", "lesions.csv", "summary.json", "kinetic_curves/c.png"):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "summary.json").read_text()) == json.loads(json.dumps(summary))


def test_summary_without_lesions_has_no_kinetics() -> None:
    real, _, mask = _volumes(2)
    evaluation = evaluate_case("c", real[2:], real, TIMES, mask, None)
    summary = summarize(pd.DataFrame(evaluation.phase_rows), pd.DataFrame(evaluation.lesion_rows),
                        Scoring("foreground", 1).describe())
    assert "kinetics" not in summary["methods"]["iterdce"]
    assert summary["methods"]["iterdce"]["all_phases"]["enhancement_error"]["n"] == 0


def _predictions_from_real(dataset: Path, out: Path, offset: float = 0.0) -> None:
    from iterdce.dataset.nifti_io import read_image

    for path in sorted((dataset / "imagesTr").glob("*_000[2-5].nii.gz")):
        data, geometry = read_image(path)
        write_image(out / path.name, data + offset, geometry)


def test_evaluate_folders_end_to_end(tmp_path: Path) -> None:
    dataset = make_raw_dataset(tmp_path / "raw", n_cases=2, shape=(16, 16, 8), n_phases=6)
    pred = tmp_path / "pred"
    _predictions_from_real(dataset, pred)
    times = json.loads((dataset / "dataset.json").read_text())["phase_times_s"]
    (pred / "case_000.json").write_text(json.dumps({"phase_times_s": times, "ood": {  # as iterdce_predict writes it
        "flag": True, "score": 3.5, "reasons": ["spacing S-I 6 mm, trained 2-2 mm"], "references": ["plan"]}}))
    report = tmp_path / "report"
    summary = evaluate_folders(pred, dataset / "imagesTr", report, labels=dataset / "labelsTr",
                               masks=dataset / "masksTr", progress=False)
    assert summary["methods"]["iterdce"]["kinetics"]["curve_type_accuracy"] == 1.0
    table = pd.read_csv(report / "per_case.csv")
    assert set(table["method"]) == {"iterdce", "copy_last", "linear"}
    assert {"psnr", "ssim", "enhancement_error"} <= set(table.columns)
    assert len(table) == 2 * 4 * 3
    scores = table.groupby("case")["ood_score"].agg(["min", "max"])  # every row of a case: its OOD score
    assert tuple(scores.loc["case_000"]) == (3.5, 3.5) and scores.loc["case_001"].isna().all()
    assert (report / "montage.png").stat().st_size > 1000


def test_evaluate_refuses_mismatched_and_missing_inputs(tmp_path: Path, capsys) -> None:
    dataset = make_raw_dataset(tmp_path / "raw", n_cases=2, shape=(16, 16, 8), n_phases=6)
    pred = tmp_path / "pred"
    _predictions_from_real(dataset, pred)
    write_image(pred / "case_000_0003.nii.gz", np.zeros((8, 8, 8), np.float32), np.eye(4))
    (dataset / "imagesTr" / "case_001_0004.nii.gz").unlink()
    with pytest.raises(EvaluationInputError) as error:
        evaluate_folders(pred, dataset / "imagesTr", tmp_path / "report", progress=False)
    message = str(error.value)
    assert "case_000_0003.nii.gz" in message and "geometry" in message
    assert "case_001_0004.nii.gz" in message and "missing" in message
    assert not (tmp_path / "report").exists()
    code = evaluate_main(["--pred", str(pred), "-r", str(dataset / "imagesTr"), "-o", str(tmp_path / "report")])
    assert code != 0
    assert "case_000_0003" in capsys.readouterr().err
