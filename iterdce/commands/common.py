"""Pieces shared by the command-line modules, so every command spells a flag the same way.

``-d/--dataset`` (required), ``-p/--plans-name``, ``-np/--num-processes``, ``--quiet``, the root flags, an
example line in ``--help``, and one-line errors.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from iterdce.paths import Roots, resolve_roots
from iterdce.preprocessing.splits import SPLITS_FILE


def new_parser(prog: str, description: str | None, example: str) -> argparse.ArgumentParser:
    """A parser whose ``--help`` ends with an example command line."""
    return argparse.ArgumentParser(prog=prog, description=description, epilog=f"example:\n  {example}",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_dataset_argument(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """-d/--dataset: an id (1), a name (Phantom, Dataset001_Phantom) or a path."""
    parser.add_argument("-d", "--dataset", required=required, help="dataset id (1), name, or path")


def add_plans_argument(parser: argparse.ArgumentParser) -> None:
    """-p/--plans-name."""
    parser.add_argument("-p", "--plans-name", default="plans", help="plan name without .json (default plans)")


def add_processes_argument(parser: argparse.ArgumentParser, default: int, what: str) -> None:
    """-np/--num-processes: the one spelling of parallelism."""
    parser.add_argument("-np", "--num-processes", type=int, default=default, help=f"{what} (default {default})")


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    """--quiet: no progress bars."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_root_arguments(parser: argparse.ArgumentParser) -> None:
    """--raw / --preprocessed / --results flags (else env vars, else ./iterdce_data)."""
    group = parser.add_argument_group("data roots")
    group.add_argument("--raw", help="raw datasets root (env ITERDCE_RAW)")
    group.add_argument("--preprocessed", help="preprocessed root (env ITERDCE_PREPROCESSED)")
    group.add_argument("--results", help="results root (env ITERDCE_RESULTS)")


def roots_from_args(args: argparse.Namespace) -> Roots:
    """Resolve the roots when the command runs."""
    return resolve_roots(getattr(args, "raw", None), getattr(args, "preprocessed", None),
                         getattr(args, "results", None))


def fail(message: str, code: int = 1) -> int:
    """Print ``error: message`` to stderr and return the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code


def parse_fold(value: str) -> int | str:
    """A fold argument: a non-negative integer or ``all`` (checked against the splits by ``check_folds``)."""
    if value == "all":
        return value
    if value.isdigit():
        return int(value)
    raise argparse.ArgumentTypeError(f"a fold is a non-negative integer or 'all', got {value!r}")


def check_folds(folds: Sequence[int | str], preprocessed_dataset: Path) -> None:
    """Every fold must exist in the dataset's splits (ValueError naming the file and the folds it has)."""
    path = preprocessed_dataset / SPLITS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no splits; run iterdce_plan_and_preprocess first")
    count = len(json.loads(path.read_text()))
    bad = [f for f in folds if f != "all" and not 0 <= int(f) < count]
    if bad:
        raise ValueError(f"fold {', '.join(map(str, bad))} does not exist: {path} has folds 0-{count - 1} (or 'all')")
