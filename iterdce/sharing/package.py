"""The shared-model zip: which members it may hold, its manifest, and the one check of a zip before anything of it
is written (``read_package``).

A zip holds a model folder as ``iterdce_predict`` reads it, at its top level: ``plans.json``,
``fold_<k>/checkpoint_<kind>.pth`` (weights only), optionally ``fold_<k>/kinetic_regression.json``,
``dataset_fingerprint.json`` and ``cv_summary.json``; the card (``model_card.json``, ``model_card.md``); and
``manifest.json``, the SHA-256 of every other member. Nothing else: a zip with another member, a path outside
its folder, a symbolic link, a checksum that does not match, a checkpoint holding Python objects, a plan version
this iterdce cannot read or a card whose id is not its weights' is refused whole, naming the member.
"""
from __future__ import annotations

import hashlib
import json
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from iterdce.core.checkpoint import CheckpointError, load_checkpoint_bytes
from iterdce.core.errors import CorruptFileError, IterdceError
from iterdce.core.file_names import (
    CHECKPOINT_KINDS,
    CV_SUMMARY,
    MODEL_CARD_JSON,
    MODEL_CARD_MD,
    MODEL_MANIFEST,
    checkpoint_name,
)
from iterdce.core.folder_names import FOLD_GLOB
from iterdce.preprocessing.fingerprint import FINGERPRINT_FILE
from iterdce.preprocessing.plan_schema import PlansError
from iterdce.preprocessing.plans_io import as_plans
from iterdce.regression.model import REGRESSION_FILE
from iterdce.sharing.model_card import ModelCard, ModelCardError, weights_id

MANIFEST_FORMAT = 1
PLANS_FILE = "plans.json"
TOP_LEVEL = (PLANS_FILE, FINGERPRINT_FILE, CV_SUMMARY, MODEL_CARD_JSON, MODEL_CARD_MD, MODEL_MANIFEST)
FOLD = FOLD_GLOB.replace("*", r"[A-Za-z0-9]+")
CHECKPOINT_MEMBER = re.compile(rf"^{FOLD}/(?:{'|'.join(re.escape(checkpoint_name(k)) for k in CHECKPOINT_KINDS)})$")
FOLD_MEMBER = re.compile(rf"^{FOLD}/{re.escape(REGRESSION_FILE)}$")
MAX_MEMBER_BYTES = 2 << 30  # a member larger than 2 GiB (uncompressed) is not one iterdce wrote


class PackageError(IterdceError, ValueError):
    """A shared-model zip that cannot be installed; the message names the zip and the member."""


def is_checkpoint_member(name: str) -> bool:
    return bool(CHECKPOINT_MEMBER.fullmatch(name))


def allowed_member(name: str) -> bool:
    """Whether ``name`` may be a member of a shared-model zip."""
    return name in TOP_LEVEL or is_checkpoint_member(name) or bool(FOLD_MEMBER.fullmatch(name))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def manifest(files: dict[str, bytes]) -> dict[str, Any]:
    """``manifest.json``: the SHA-256 and size of every member but itself."""
    return {"format": MANIFEST_FORMAT,
            "files": {name: {"sha256": sha256(data), "bytes": len(data)} for name, data in sorted(files.items())}}


def unsafe_name_reason(name: str) -> str | None:
    """Why a member name could write outside the folder it is extracted into (None: it cannot)."""
    if "\\" in name:
        return "a backslash in its path"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "a path outside its folder ('..')"
    if "\0" in name:
        return "a NUL byte in its name"
    return None


@dataclass(frozen=True)
class Package:
    """A checked zip: its members' bytes (manifest included) and its card."""

    files: dict[str, bytes]
    card: ModelCard

    @property
    def folds(self) -> list[str]:
        return sorted({name.split("/", 1)[0] for name in self.files if is_checkpoint_member(name)})


def read_package(path: Path) -> Package:
    """Read and check the whole zip in memory; PackageError (one line) at the first problem, nothing written."""
    path = Path(path)
    if not path.is_file():
        raise PackageError(f"{path}: no such file", path)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            for info in infos:
                _check_member(path, info)
            names = [i.filename for i in infos]
            duplicated = sorted({n for n in names if names.count(n) > 1})
            if duplicated:
                raise PackageError(f"{path}: member {duplicated[0]} appears twice", path)
            files = {i.filename: archive.read(i) for i in infos}
    except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile) as exc:
        raise PackageError(f"{path}: not a readable zip (truncated or not a zip file: {exc})", path) from exc
    except (OSError, NotImplementedError, RuntimeError) as exc:
        raise PackageError(f"{path}: cannot be read ({type(exc).__name__}: {exc})", path) from exc
    return Package(files, _check_contents(path, files))


def _check_member(path: Path, info: zipfile.ZipInfo) -> None:
    name = info.filename
    reason = unsafe_name_reason(name)
    if reason:
        raise PackageError(f"{path}: refused: member {name!r} has {reason}", path)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        raise PackageError(f"{path}: refused: member {name} is a symbolic link", path)
    if info.is_dir() or not allowed_member(name):
        raise PackageError(f"{path}: refused: member {name} is not part of a shared model (allowed: "
                           f"{', '.join(TOP_LEVEL)}, fold_<k>/checkpoint_<kind>.pth, fold_<k>/{REGRESSION_FILE})", path)
    if info.file_size > MAX_MEMBER_BYTES:
        raise PackageError(f"{path}: refused: member {name} is {info.file_size} bytes uncompressed", path)


def _check_contents(path: Path, files: dict[str, bytes]) -> ModelCard:
    if MODEL_MANIFEST not in files:
        raise PackageError(f"{path}: no {MODEL_MANIFEST}: not a zip iterdce_export_model wrote", path)
    listed = _json_member(path, files, MODEL_MANIFEST).get("files")
    if not isinstance(listed, dict):
        raise PackageError(f"{path}: {MODEL_MANIFEST} lists no files", path)
    for name in sorted(set(files) - {MODEL_MANIFEST}):
        entry = listed.get(name)
        if not isinstance(entry, dict) or "sha256" not in entry:
            raise PackageError(f"{path}: member {name} is not in {MODEL_MANIFEST}", path)
        if sha256(files[name]) != entry["sha256"]:
            raise PackageError(f"{path}: checksum mismatch: member {name} is not the file that was exported "
                               "(altered or corrupted)", path)
    missing = sorted(set(listed) - set(files))
    if missing:
        raise PackageError(f"{path}: {MODEL_MANIFEST} lists {missing[0]}, which the zip does not hold", path)
    for required in (PLANS_FILE, MODEL_CARD_JSON):
        if required not in files:
            raise PackageError(f"{path}: no {required}", path)
    try:
        as_plans(_json_member(path, files, PLANS_FILE))
    except PlansError as exc:
        raise PackageError(f"{path}: member {PLANS_FILE}: {exc}", path) from None
    checkpoints = {name: data for name, data in files.items() if is_checkpoint_member(name)}
    if not checkpoints:
        raise PackageError(f"{path}: holds no fold_<k>/checkpoint_<kind>.pth", path)
    for name, data in sorted(checkpoints.items()):
        try:
            load_checkpoint_bytes(data, f"{path}:{name}")
        except CheckpointError as exc:
            raise PackageError(str(exc), path) from None
    try:
        card = ModelCard.from_json(_json_member(path, files, MODEL_CARD_JSON), f"{path}:{MODEL_CARD_JSON}")
    except ModelCardError as exc:
        raise PackageError(str(exc), path) from None
    if card.id != weights_id(checkpoints):
        raise PackageError(f"{path}: {MODEL_CARD_JSON} id {card.id[:16]}... is not the SHA-256 of the weights it "
                           "ships with", path)
    return card


def _json_member(path: Path, files: dict[str, bytes], name: str) -> dict[str, Any]:
    try:
        payload = json.loads(files[name].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CorruptFileError(f"{path}: member {name} is not valid JSON ({type(exc).__name__})", path) from exc
    if not isinstance(payload, dict):
        raise PackageError(f"{path}: member {name} must hold a JSON object", path)
    return payload
