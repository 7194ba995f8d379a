"""Sharing a model (documentation/sharing_models.md): export -> install -> predict gives the original model's
outputs bit for bit; the card holds the run's facts; the shipped models carry cards of the same format.
The refusals of bad zips are rows of the bad-input matrix (tests/bad_inputs/rows.py)."""
from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest

from iterdce import __version__
from iterdce.commands.export_model import main as export_main
from iterdce.commands.install_model import main as install_main
from iterdce.commands.predict import main as predict_main
from iterdce.core.checkpoint import load_checkpoint
from iterdce.core.file_names import CHECKPOINT_FINAL, MODEL_CARD_JSON, MODEL_CARD_MD, MODEL_MANIFEST
from iterdce.inference.dicom_output import DicomExporter
from iterdce.pretrained import PRETRAINED_MODELS, pretrained_model_folder
from iterdce.sharing.model_card import read_card, weights_id
from iterdce.sharing.package import Package, read_package
from tests.bad_inputs.workspace import DATASET, SHARED, TRAINER

NAME = f"{DATASET}__{TRAINER}__plans"


def roots(ws: Path, results: Path | None = None) -> list[str]:
    return ["--raw", f"{ws}/raw", "--preprocessed", f"{ws}/preprocessed", "--results", str(results or ws / "results")]


def voxels(folder: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(nib.load(p).dataobj) for p in sorted(folder.glob("*.nii.gz"))}


@pytest.fixture
def ws(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "ws"
    shutil.copytree(pristine, copy)
    return copy


def test_round_trip_predicts_the_original_models_outputs_bit_for_bit(ws: Path, capsys):
    """Export fold 0, install it on a fresh results root, predict by name and from the zip: the voxels are those of
    the prediction with the original model folder (workspace.py: folds [0], CPU, default settings)."""
    assert export_main(["-d", "1", "-tr", TRAINER, "-f", "0", "-o", f"{ws}/fold0.zip", *roots(ws)]) == 0
    fresh = ws / "fresh_results"
    assert install_main([f"{ws}/fold0.zip", *roots(ws, fresh)]) == 0
    assert (fresh / "models" / NAME / "fold_0" / CHECKPOINT_FINAL).is_file()
    original = voxels(ws / "pred")
    assert len(original) == 4
    card = read_card(fresh / "models" / NAME / MODEL_CARD_JSON)
    for label, model in (("by_name", NAME), ("from_zip", f"{ws}/fold0.zip")):
        out = ws / label
        assert predict_main(["-i", f"{ws}/inputs", "-o", str(out), "--model", model, "--device", "cpu", "--quiet",
                             *roots(ws, fresh)]) == 0, capsys.readouterr().err
        shared = voxels(out)
        assert shared.keys() == original.keys()
        for name, array in original.items():
            assert array.dtype == shared[name].dtype and array.tobytes() == shared[name].tobytes(), name
        record = json.loads((out / "case_000.json").read_text())
        assert record["model_card"] == {"name": NAME, "id": card.id, "version": card.version}


def test_the_card_holds_the_runs_facts_and_the_weights_are_weights_only(ws: Path):
    assert export_main(["-d", "1", "-tr", TRAINER, "-o", f"{ws}/m.zip", "--license", "CC-BY-4.0", *roots(ws)]) == 0
    with zipfile.ZipFile(ws / "m.zip") as archive:
        names = set(archive.namelist())
        card = json.loads(archive.read(MODEL_CARD_JSON))
        checkpoint = archive.read(f"fold_0/{CHECKPOINT_FINAL}")
        markdown = archive.read(MODEL_CARD_MD).decode()
    assert {MODEL_CARD_JSON, MODEL_CARD_MD, MODEL_MANIFEST, "plans.json", "dataset_fingerprint.json",
            f"fold_0/{CHECKPOINT_FINAL}"} <= names
    assert card["license"] == "CC-BY-4.0" and "license: CC-BY-4.0" in markdown
    assert card["dataset"] == DATASET and card["cases"] == 4 and card["training_cases"] == {"fold_0": 3}
    assert card["preset"] == "tiny" and card["trainer"] == TRAINER and card["precision"] == "fp32"
    assert card["steps"] == {f"{TRAINER} fold_0": 1} and card["folds"] == ["fold_0"]
    assert card["version"].startswith(__version__) and card["protocols"] and card["intended_use"]
    assert card["id"] == hashlib.sha256(f"fold_0/{CHECKPOINT_FINAL}".encode() + checkpoint).hexdigest()
    original = load_checkpoint(ws / "results" / DATASET / f"{TRAINER}__plans" / "fold_0" / CHECKPOINT_FINAL)
    assert "optimizer_state" in original  # what the export leaves out
    shared = read_package(ws / "m.zip")
    payload = load_checkpoint(ws / "results" / "models" / SHARED / "fold_0" / CHECKPOINT_FINAL)
    assert "optimizer_state" not in payload and set(payload["network_state"]) == set(original["network_state"])
    fingerprint = json.loads(shared.files["dataset_fingerprint.json"])
    assert [c["case"] for c in fingerprint["cases"]] == [f"case_{i:04d}" for i in range(4)]  # no case ids leave
    # the same model exports to the same bytes
    assert export_main(["-d", "1", "-tr", TRAINER, "-o", f"{ws}/again.zip", "--license", "CC-BY-4.0",
                        *roots(ws)]) == 0
    assert (ws / "again.zip").read_bytes() == (ws / "m.zip").read_bytes()


def test_install_replaces_an_installed_model_only_with_overwrite(ws: Path, capsys):
    installed = ws / "results" / "models" / SHARED
    (installed / "plans.json").write_text("{}")
    assert install_main([f"{ws}/model.zip", "--name", SHARED, *roots(ws)]) == 1
    assert (installed / "plans.json").read_text() == "{}"
    assert install_main([f"{ws}/model.zip", "--name", SHARED, "--overwrite", *roots(ws)]) == 0
    assert json.loads((installed / "plans.json").read_text())["dataset"] == DATASET
    assert sorted(p.name for p in installed.parent.iterdir()) == [SHARED]  # no temporary folder left


@pytest.mark.parametrize("name", list(PRETRAINED_MODELS))
def test_shipped_models_carry_a_card_of_the_exported_format(name: str, tmp_path: Path):
    """Each shipped folder is what an install of its zip writes: zipping it gives a package that passes every
    check, whose card names its weights, with the documented case counts (documentation/training.md)."""
    folder = pretrained_model_folder(name)
    card = read_card(folder / MODEL_CARD_JSON)
    weights = (folder / "fold_all" / CHECKPOINT_FINAL).read_bytes()
    assert card.id == weights_id({f"fold_all/{CHECKPOINT_FINAL}": weights})
    assert card.cases == {"phantom_all_sites": 80, "phantom_sites_abc": 40}[name]
    assert sum(card.steps.values()) == {"phantom_all_sites": 3200, "phantom_sites_abc": 800}[name]
    assert card.evaluations and all(t.source for t in card.evaluations)
    assert (folder / MODEL_CARD_MD).read_text().startswith(f"# Model card: {name}")
    zipped = tmp_path / f"{name}.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            archive.write(path, path.relative_to(folder).as_posix())
    package: Package = read_package(zipped)
    assert package.card == card and package.folds == ["fold_all"]


def test_dicom_series_record_the_model_card():
    card = {"name": "shared", "id": "ab" * 32, "version": "0.1.0+g123"}
    predictor = SimpleNamespace(input_phases=[0, 1], folds=["fold_0"], card=card)
    exporter = DicomExporter(predictor, "shared", progress=False)  # type: ignore[arg-type]
    source = SimpleNamespace(acquisition=SimpleNamespace(series=[SimpleNamespace(number=3),
                                                                 SimpleNamespace(number=4)]))
    text = exporter._derivation(source, "DCE phase 2")  # type: ignore[arg-type]
    assert f"model card {card['id']} version {card['version']}" in text
