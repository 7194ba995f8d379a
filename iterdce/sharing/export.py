"""``iterdce_export_model``: a trained model folder -> one zip another site installs (sharing/package.py).

The zip holds the plan, the chosen folds' checkpoints with their weights only (no optimiser state, random
state or log), each fold's fitted kinetic regression, the training fingerprint (case ids replaced by numbers),
the cross-validation summary where there is one, and the model card written from all of them. It is written
under a temporary name and renamed, so a zip at the output path is always whole.
"""
from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from iterdce.core.atomic import atomic_path
from iterdce.core.checkpoint import load_checkpoint
from iterdce.core.errors import OutputLocationError, UsageError
from iterdce.core.file_names import CV_SUMMARY, MODEL_CARD_JSON, MODEL_CARD_MD, MODEL_MANIFEST, checkpoint_name
from iterdce.core.folder_names import fold_folder_name
from iterdce.core.json_io import read_json
from iterdce.preprocessing.fingerprint import FINGERPRINT_FILE
from iterdce.preprocessing.fingerprint_schema import DatasetFingerprint
from iterdce.preprocessing.plans_io import load_plans
from iterdce.preprocessing.splits import SPLITS_FILE, read_splits
from iterdce.regression.model import REGRESSION_FILE
from iterdce.sharing.model_card import UNSPECIFIED_LICENSE, ModelCard, RunFacts, build_card
from iterdce.sharing.package import PLANS_FILE, manifest

# what a shared checkpoint keeps: the network and the facts about its training the card reads
WEIGHTS_KEYS = ("trainer", "plans_name", "fold", "model_config", "network_state", "epoch", "total_epochs",
                "iterations_per_epoch", "seed")
ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # members carry no export time: the same model exports to the same bytes


def weights_only(path: Path) -> tuple[bytes, dict[str, Any]]:
    """A checkpoint's bytes with its weights only (the file's own bytes when it holds nothing else), and the
    payload."""
    payload = load_checkpoint(path)
    if set(payload) <= set(WEIGHTS_KEYS):
        return path.read_bytes(), payload
    kept = {k: payload[k] for k in WEIGHTS_KEYS if k in payload}
    buffer = io.BytesIO()
    torch.save(kept, buffer)
    return buffer.getvalue(), kept


def anonymous_fingerprint(path: Path) -> tuple[bytes, DatasetFingerprint]:
    """The fingerprint with its case ids replaced by ``case_<i>`` and no source signature (the statistics, the
    protocols and the count stay: what the out-of-distribution check and the card need)."""
    raw = read_json(path, expect=dict)
    fingerprint = DatasetFingerprint.from_dict(raw)
    raw.pop("source_signature", None)
    for index, case in enumerate(raw.get("cases", [])):
        case["case"] = f"case_{index:04d}"
    return _json_bytes(raw), fingerprint


def _json_bytes(payload: Any) -> bytes:
    return (json.dumps(payload, indent=2) + "\n").encode()


def collect(model_folder: Path, folds: Sequence[int | str], checkpoint: str, preprocessed: Path | None
            ) -> tuple[dict[str, bytes], RunFacts]:
    """Every member of the zip but the card and the manifest, and what the card is built from."""
    model_folder = Path(model_folder)
    plans = load_plans(model_folder / PLANS_FILE)
    files = {PLANS_FILE: (model_folder / PLANS_FILE).read_bytes()}
    names = tuple(fold_folder_name(f) for f in folds)
    payloads = {}
    for fold in names:
        path = model_folder / fold / checkpoint_name(checkpoint)
        files[f"{fold}/{checkpoint_name(checkpoint)}"], payloads[fold] = weights_only(path)
        regression = model_folder / fold / REGRESSION_FILE
        if regression.is_file():
            read_json(regression, expect=dict)
            files[f"{fold}/{REGRESSION_FILE}"] = regression.read_bytes()
    fingerprint = splits = None
    if preprocessed is not None and (preprocessed / FINGERPRINT_FILE).is_file():
        try:
            files[FINGERPRINT_FILE], fingerprint = anonymous_fingerprint(preprocessed / FINGERPRINT_FILE)
        except ValueError as exc:
            raise UsageError(f"{preprocessed / FINGERPRINT_FILE}: {exc}") from None
    if preprocessed is not None and (preprocessed / SPLITS_FILE).is_file():
        splits = read_splits(preprocessed / SPLITS_FILE)
    if (model_folder / CV_SUMMARY).is_file():
        read_json(model_folder / CV_SUMMARY, expect=dict)
        files[CV_SUMMARY] = (model_folder / CV_SUMMARY).read_bytes()
    return files, RunFacts(model_folder, plans, names, checkpoint, payloads, fingerprint, splits)


def with_card(files: dict[str, bytes], card: ModelCard) -> dict[str, bytes]:
    """The members with the card (JSON and markdown) and the manifest added."""
    out = {**files, MODEL_CARD_JSON: _json_bytes(card.to_json()), MODEL_CARD_MD: card.to_markdown().encode()}
    return {**out, MODEL_MANIFEST: _json_bytes(manifest(out))}


def write_zip(files: dict[str, bytes], target: Path) -> None:
    """The members into ``target`` (deflated, fixed dates, regular files), atomically."""
    with atomic_path(target, suffix=".zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, ZIP_DATE)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o100644 << 16
            archive.writestr(info, files[name])


def export_model(model_folder: Path, folds: Sequence[int | str], output: Path, checkpoint: str = "final",
                 preprocessed: Path | None = None, name: str | None = None, license_: str = UNSPECIFIED_LICENSE,
                 overwrite: bool = False, created: dt.date | None = None) -> ModelCard:
    """Export ``folds`` of ``model_folder`` into the zip ``output``; returns its card."""
    output = Path(output)
    if output.suffix != ".zip":
        raise UsageError(f"-o {output}: the shared model is a .zip file")
    if output.is_dir():
        raise OutputLocationError(f"-o {output}: is a folder", output)
    if output.exists() and not overwrite:
        raise OutputLocationError(f"-o {output}: exists; pass --overwrite to replace it", output)
    files, facts = collect(model_folder, folds, checkpoint, preprocessed)
    checkpoints = {k: v for k, v in files.items() if k.endswith(".pth")}
    default_name = f"{facts.plans.dataset}__{model_folder.name}"
    card = build_card(facts, checkpoints, name or default_name, license_, created)
    write_zip(with_card(files, card), output)
    return card
