"""The model card of a shared model: what it was trained on, how, and what it scored, written by the exporter
from the run (never by hand) as ``model_card.json`` (the typed ``ModelCard``) and a readable ``model_card.md``.

The card's ``id`` is the SHA-256 of the packaged weights (every checkpoint's name and bytes), its ``version`` the
iterdce version and, where the code is a git checkout, its commit. Predictions record both
(``<case>.json``, the DICOM derived series).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iterdce import __version__
from iterdce.core.dataclass_json import build_dataclass, to_json
from iterdce.core.errors import JSONFileError
from iterdce.core.file_names import CV_SUMMARY, MODEL_CARD_JSON, TRAINING_LOG
from iterdce.core.folder_names import FOLD_ALL, fold_folder_name
from iterdce.core.json_io import read_json
from iterdce.preprocessing.fingerprint_schema import DatasetFingerprint
from iterdce.preprocessing.plan_schema import Plans

CARD_FORMAT = 1
UNSPECIFIED_LICENSE = "unspecified"
INTENDED_USE = ("Research: synthesizing the delayed phases of a breast DCE-MRI exam from its pre-contrast and first "
                "post-contrast phases, on cases like the training cases (protocol, field strength, resolution, "
                "intensity range). Not for diagnosis: a synthesized phase was not acquired.")
LIMITATIONS = (
    "Trained on the cases, protocols and target times listed here only; target times outside the trained range "
    "are extrapolated (iterdce_predict warns).",
    "A case whose intensities lie outside the training cases' range is named in a warning; its synthesized phases "
    "are less certain (iterdce_predict --ood-guard moves them towards the last input).",
    "The scores quoted are those of the run's own validation or benchmark cases; they do not transfer to other "
    "sites or scanners without measuring there.",
)
PRECISION_NOTE = re.compile(r"\((bf16|fp32)\)")


class ModelCardError(JSONFileError):
    """A model card that is missing a field, has an unknown one or a value of the wrong type."""


@dataclass(frozen=True)
class CardTable:
    """A table of scores and where its numbers come from (a file of the run, or a documentation page)."""

    title: str
    source: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class ModelCard:
    """The ``model_card.json`` of a shared model."""

    format: int
    id: str  # SHA-256 of the packaged weights
    version: str  # iterdce version (+ git commit) of the exporter
    name: str
    created: str  # ISO date of the export
    license: str
    dataset: str
    cases: int | None  # the dataset's case count (None: not known to the exporter)
    training_cases: dict[str, int]  # per exported fold
    protocols: tuple[str, ...]  # each protocol (phase count and times) the dataset holds
    input_times_s: tuple[float, ...]
    target_times_s: tuple[float, ...]  # the plan's default protocol's targets
    trained_target_times_s: tuple[float, ...]  # the range of target times trained on
    preset: str
    plans_name: str
    trainer: str
    folds: tuple[str, ...]
    checkpoint: str
    steps: dict[str, int]  # training steps (epochs x iterations) per stage
    precision: str  # the training arithmetic (bf16, fp32 or unknown)
    kinetic_prior: bool
    evaluations: tuple[CardTable, ...]
    intended_use: str
    limitations: tuple[str, ...]
    notes: tuple[str, ...] = field(default=())  # where facts the run folder lacks were taken from

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = to_json(self)
        return payload

    @classmethod
    def from_json(cls, raw: Any, what: str = MODEL_CARD_JSON) -> ModelCard:
        """The card of a JSON object; ModelCardError names every missing, unknown or mistyped key."""
        problems: list[str] = []
        card = build_dataclass(cls, raw, "", problems, what, defaults_optional=True)
        if problems or card is None:
            raise ModelCardError(f"{what}: not a model card: {'; '.join(problems[:5])}")
        if card.format != CARD_FORMAT:
            raise ModelCardError(f"{what}: card format {card.format} is not supported (this iterdce reads format "
                                 f"{CARD_FORMAT})")
        return card

    def to_markdown(self) -> str:
        """``model_card.md``: the same facts, readable."""
        def times(values: Sequence[float]) -> str:
            return ", ".join(f"{v:g}" for v in values)

        lines = [f"# Model card: {self.name}", "",
                 f"- id: `{self.id}`", f"- version: iterdce {self.version}", f"- created: {self.created}",
                 f"- license: {self.license}", "", "## Training", "",
                 f"- dataset: {self.dataset} ({self.cases if self.cases is not None else 'unknown number of'} cases)",
                 "- training cases per fold: " + ", ".join(f"{k}: {v}" for k, v in self.training_cases.items()),
                 *[f"- protocol: {p}" for p in self.protocols],
                 f"- input times: {times(self.input_times_s)} s; default targets: {times(self.target_times_s)} s; "
                 f"trained target range: {times(self.trained_target_times_s)} s",
                 f"- preset: {self.preset}; plan: {self.plans_name}; trainer: {self.trainer}; kinetic prior: "
                 f"{'on' if self.kinetic_prior else 'off'}",
                 f"- folds: {', '.join(self.folds)} (checkpoint {self.checkpoint})",
                 "- steps: " + ", ".join(f"{k} {v:,}" for k, v in self.steps.items()),
                 f"- precision: {self.precision}", ""]
        for table in self.evaluations:
            lines += [f"## {table.title}", "", f"Source: {table.source}", "",
                      "| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns),
                      *["| " + " | ".join(row) + " |" for row in table.rows], ""]
        lines += ["## Intended use", "", self.intended_use, "", "## Limits", "", *[f"- {x}" for x in self.limitations]]
        if self.notes:
            lines += ["", "## Sources of the facts above", "", *[f"- {x}" for x in self.notes]]
        return "\n".join(lines) + "\n"


def read_card(path: Path) -> ModelCard:
    """``model_card.json`` of a model folder."""
    return ModelCard.from_json(read_json(path, expect=dict), str(path))


def card_of_folder(model_folder: Path) -> ModelCard | None:
    """The card of a model folder, or None for a folder without one (a trained model not exported)."""
    path = Path(model_folder) / MODEL_CARD_JSON
    return read_card(path) if path.is_file() else None


def weights_id(checkpoints: Mapping[str, bytes]) -> str:
    """The card id: SHA-256 over every packaged checkpoint's name and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(checkpoints):
        digest.update(name.encode())
        digest.update(checkpoints[name])
    return digest.hexdigest()


def code_version() -> str:
    """``<iterdce version>`` and, in a git checkout, ``+g<commit>`` (``.dirty`` with uncommitted changes)."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}" if commit else __version__


def protocols_of(plans: Plans, fingerprint: DatasetFingerprint | None) -> tuple[str, ...]:
    """Each protocol the dataset holds (the fingerprint's), else the plan's default protocol."""
    def times(values: Sequence[float]) -> str:
        return ", ".join(f"{v:g}" for v in values)

    if fingerprint is None:
        return (f"{plans.max_phases} phases (default protocol: inputs {times(plans.input_times_s)} s, targets "
                f"{times(plans.target_times_s)} s)",)
    return tuple(f"{p.num_phases} phases, {p.cases} case(s): times from {times(p.times_min_s)} s to "
                 f"{times(p.times_max_s)} s" for p in fingerprint.protocols)


def cv_table(summary: Mapping[str, Any], source: str) -> CardTable:
    """The cross-validation summary (``cv_summary.json``) as a table: per method, the mean over all phases of
    every metric, and the lesion-kinetics scores where there are lesions."""
    methods: Mapping[str, Any] = summary.get("methods") or {}
    metrics: list[str] = []
    for entry in methods.values():
        metrics += [m for m in entry.get("all_phases", {}) if m not in metrics]
    kinetic = ("scc", "last_phase_enhancement_error", "curve_type_accuracy")
    rows = []
    for method, entry in methods.items():
        cells = [method]
        for metric in metrics:
            stats = entry.get("all_phases", {}).get(metric) or {}
            cells.append(_number(stats.get("mean")))
        kinetics = entry.get("kinetics") or {}
        for key in kinetic:
            value = kinetics.get(key)
            cells.append(_number(value.get("mean") if isinstance(value, dict) else value))
        rows.append(tuple(cells))
    folds = ", ".join(str(f) for f in summary.get("folds", []))
    return CardTable(f"Cross-validation (folds {folds}; mean over all phases)", source,
                     ("method", *metrics, *kinetic), tuple(rows))


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""


def training_precision(fold_folder: Path) -> str | None:
    """The precision a fold trained in, as its training log's first note names it (``... (bf16)``)."""
    path = fold_folder / TRAINING_LOG
    if not path.is_file():
        return None
    notes = read_json(path, expect=dict).get("notes") or []
    for note in notes:
        match = PRECISION_NOTE.search(str(note))
        if match:
            return match.group(1)
    return None


@dataclass(frozen=True)
class RunFacts:
    """What the exporter read from a trained model folder and its preprocessed dataset."""

    model_folder: Path
    plans: Plans
    folds: tuple[str, ...]  # fold folder names
    checkpoint: str
    payloads: Mapping[str, Mapping[str, Any]]  # fold folder name -> its checkpoint (weights only)
    fingerprint: DatasetFingerprint | None = None
    splits: Sequence[Mapping[str, Sequence[str]]] | None = None


def build_card(facts: RunFacts, weights: Mapping[str, bytes], name: str, license_: str = UNSPECIFIED_LICENSE,
               created: dt.date | None = None) -> ModelCard:
    """The card of an export, every field from the run (``facts``) and the packaged weights."""
    plans, first = facts.plans, facts.payloads[facts.folds[0]]
    trainer = str(first.get("trainer", "unknown"))
    cases = len(facts.fingerprint.cases) if facts.fingerprint is not None else None
    training_cases: dict[str, int] = {}
    for fold in facts.folds:
        index = fold.removeprefix(fold_folder_name(""))
        if facts.splits is not None and index.isdigit() and int(index) < len(facts.splits):
            training_cases[fold] = len(facts.splits[int(index)].get("train", []))
        elif index == FOLD_ALL and cases is not None:
            training_cases[fold] = cases
    steps = {f"{trainer} {fold}": int(facts.payloads[fold].get("epoch", facts.payloads[fold].get("total_epochs", 0)))
             * int(facts.payloads[fold].get("iterations_per_epoch", 0)) for fold in facts.folds}
    precisions = {training_precision(facts.model_folder / fold) for fold in facts.folds}
    precision = precisions.pop() if len(precisions) == 1 else None
    evaluations = []
    cv_path = facts.model_folder / CV_SUMMARY
    if cv_path.is_file():
        evaluations.append(cv_table(read_json(cv_path, expect=dict), CV_SUMMARY))
    return ModelCard(
        format=CARD_FORMAT, id=weights_id(weights), version=code_version(), name=name,
        created=(created or dt.date.today()).isoformat(), license=license_, dataset=plans.dataset, cases=cases,
        training_cases=training_cases, protocols=protocols_of(plans, facts.fingerprint),
        input_times_s=tuple(plans.input_times_s), target_times_s=tuple(plans.target_times_s),
        trained_target_times_s=tuple(plans.trained_target_times_s), preset=plans.preset,
        plans_name=plans.plans_name, trainer=trainer, folds=facts.folds, checkpoint=facts.checkpoint, steps=steps,
        precision=precision or "unknown", kinetic_prior=bool(plans.network.kinetic_prior),
        evaluations=tuple(evaluations), intended_use=INTENDED_USE, limitations=LIMITATIONS)


def with_documented(card: ModelCard, **fields: Any) -> ModelCard:
    """The card with facts the run folder no longer holds (a shipped model's cases, precision, benchmark tables),
    each taken from a documentation file the caller names in ``notes``."""
    return dataclasses.replace(card, **fields)
