"""Write the model cards of the shipped models (iterdce/pretrained/<name>/model_card.json, model_card.md and
manifest.json), so that they are in the format iterdce_install_model installs.

The cards are built by the exporter's code (``iterdce.sharing``) from each model folder (plan, checkpoint); the
facts their training runs recorded elsewhere (the case count, the precision, the steps of both stages, the
benchmark tables) are parsed from documentation/training.md and reports/pretrained_models.md, which each card
names in its notes. Nothing is typed in by hand: rerun after a model or those pages change:

    python -m benchmarks.shipped_model_cards
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

from iterdce.core.atomic import write_atomic
from iterdce.core.file_names import CHECKPOINT_FINAL, MODEL_CARD_JSON, MODEL_CARD_MD, MODEL_MANIFEST
from iterdce.core.folder_names import FOLD_ALL, fold_folder_name
from iterdce.preprocessing.plans_io import load_plans
from iterdce.pretrained import PRETRAINED_MODELS, pretrained_model_folder
from iterdce.sharing.export import weights_only, with_card
from iterdce.sharing.model_card import CardTable, ModelCard, RunFacts, build_card, with_documented
from iterdce.sharing.package import PLANS_FILE

ROOT = Path(__file__).resolve().parents[1]
TRAINING_PAGE = "documentation/training.md"
REPORT = "reports/pretrained_models.md"
SCORES_HEADER = "| model | PSNR last (dB) | EE last | SCC | type acc. |"
NATIVE_HEADER = "| site (last phase) |"
# which rows of the report's first score table are each model's own (besides the copy-last and regression rows)
OWN_ROW = {"phantom_all_sites": "as shipped now", "phantom_sites_abc": "`phantom_sites_abc`"}
BASELINE_ROWS = ("copy-last", "voxel-wise regression")


def markdown_table(text: str, header_start: str) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The first markdown table whose header line starts with ``header_start``: its columns and rows (cells
    stripped of bold marks)."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append(tuple(cell.strip().replace("**", "") for cell in line.strip().strip("|").split("|")))
    return rows[0], [r for r in rows[2:]]


def training_row(name: str) -> tuple[str, ...]:
    """The model's row of the table in documentation/training.md ("The shipped pretrained models")."""
    _, rows = markdown_table((ROOT / TRAINING_PAGE).read_text(), "| name | trained on | steps | use |")
    return next(r for r in rows if r[0].startswith(f"`{name}`"))


def documented_card(name: str, card: ModelCard, recursive_steps: int) -> ModelCard:
    """The facts the shipped model's folder does not hold, parsed from the documentation pages."""
    _, trained_on, steps_cell, _ = training_row(name)
    cases = int(re.search(r"(\d+) (?:phantom )?cases", trained_on).group(1))  # type: ignore[union-attr]
    total = int(re.match(r"([\d,]+)", steps_cell).group(1).replace(",", ""))  # type: ignore[union-attr]
    precision = re.search(r"\b(bf16|fp32|float32)\b", steps_cell)
    report = (ROOT / REPORT).read_text()
    columns, rows = markdown_table(report, SCORES_HEADER)
    kept = tuple(r for r in rows if r[0].startswith(BASELINE_ROWS) or OWN_ROW[name] in r[0])
    tables = [CardTable("Cross-site benchmark: the 24 site-D test cases (28 lesions), last phase, one seed", REPORT,
                        columns, kept)]
    if name == "phantom_all_sites":
        native_columns, native_rows = markdown_table(report, NATIVE_HEADER)
        tables.append(CardTable("Sites never seen in training (24 cases each), default composition", REPORT,
                                native_columns, tuple(native_rows)))
    fold = fold_folder_name(FOLD_ALL)
    return with_documented(
        card, cases=cases, training_cases={fold: cases},
        precision=(precision.group(1).replace("float32", "fp32") if precision else "not recorded"),
        steps={f"WarmupTrainer {fold}": total - recursive_steps, f"RecursiveTrainer {fold}": recursive_steps},
        evaluations=tuple(tables),
        notes=(f"case count, total steps and precision: {TRAINING_PAGE}, 'The shipped pretrained models' "
               f"({trained_on}; {steps_cell}); the recursive stage's steps from the checkpoint "
               "(epochs x iterations), the warm-up's the rest",
               f"scores: {REPORT}", f"trained on {PRETRAINED_MODELS[name]} (iterdce.pretrained)"))


def write_card(name: str) -> ModelCard:
    folder = pretrained_model_folder(name)
    fold = fold_folder_name(FOLD_ALL)
    member = f"{fold}/{CHECKPOINT_FINAL}"
    data, payload = weights_only(folder / fold / CHECKPOINT_FINAL)
    facts = RunFacts(folder, load_plans(folder / PLANS_FILE), (fold,), "final", {fold: payload})
    card = build_card(facts, {member: data}, name)
    recursive = int(payload["epoch"]) * int(payload["iterations_per_epoch"])
    card = documented_card(name, card, recursive)
    files = with_card({PLANS_FILE: (folder / PLANS_FILE).read_bytes(), member: data}, card)
    for written in (MODEL_CARD_JSON, MODEL_CARD_MD, MODEL_MANIFEST):
        write_atomic(folder / written, lambda tmp, body=files[written]: tmp.write_bytes(body))
    return card


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(PRETRAINED_MODELS), help="shipped models (default: all)")
    for name in parser.parse_args().names:
        card = write_card(name)
        print(f"{name}: card {card.id[:16]}, {card.cases} cases, steps {card.steps}, precision {card.precision}")


if __name__ == "__main__":
    main()
