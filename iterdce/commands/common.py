"""Pieces shared by the command-line modules, so every command spells a flag the same way.

``-d/--dataset`` (required), ``-p/--plans-name``, ``-np/--num-processes``, ``--precision``, ``--quiet``, the
root flags, an example line in ``--help``, argument types, and error reporting.
"""
from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from iterdce.core.errors import IterdceError, JSONFileError, UsageError
from iterdce.core.paths import MODELS_ENV, Roots, resolve_roots
from iterdce.network.precision import PRECISIONS
from iterdce.preprocessing.splits import SPLITS_FILE, read_splits


def new_parser(prog: str, description: str | None, example: str) -> argparse.ArgumentParser:
    """A parser whose ``--help`` ends with an example command line."""
    return argparse.ArgumentParser(prog=prog, description=description, epilog=f"example:\n  {example}",
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_dataset_argument(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """-d/--dataset: an id (1), a name (Phantom, Dataset001_Phantom) or a path."""
    parser.add_argument("-d", "--dataset", required=required, help="dataset id (1), name, or path")


def plans_name(value: str) -> str:
    """A plan name: letters, digits, ``_ . -``, not starting with a dot (it names ``<name>.json`` and
    ``<name>_data/`` inside the dataset's folder, so it can never point elsewhere)."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", value) or value.endswith(".json"):
        raise argparse.ArgumentTypeError(f"{value!r} is not a plan name: use letters, digits, '_', '.' and '-' "
                                         "(no folders, no .json)")
    return value


def add_plans_argument(parser: argparse.ArgumentParser) -> None:
    """-p/--plans-name."""
    parser.add_argument("-p", "--plans-name", type=plans_name, default="plans",
                        help="plan name without .json (default plans)")


def add_processes_argument(parser: argparse.ArgumentParser, default: int, what: str) -> None:
    """-np/--num-processes: the one spelling of parallelism."""
    parser.add_argument("-np", "--num-processes", type=positive_int, default=default,
                        help=f"{what} (default {default})")


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """--precision: the network's arithmetic (network/precision.py)."""
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="network arithmetic: bf16 autocast or float32 (default auto: bf16 on CUDA and on CPUs "
                             "with AMX bf16 units, else float32)")


def add_quiet_argument(parser: argparse.ArgumentParser) -> None:
    """--quiet: no progress bars."""
    parser.add_argument("--quiet", action="store_true", help="no progress bars")

INTERRUPTED = "interrupted; rerun the same command to resume"
EXIT_INTERRUPTED = 130


def add_root_arguments(parser: argparse.ArgumentParser) -> None:
    """--raw / --preprocessed / --results flags (else env vars, else ./iterdce_data)."""
    group = parser.add_argument_group("data roots")
    group.add_argument("--raw", help="raw datasets root (env ITERDCE_RAW)")
    group.add_argument("--preprocessed", help="preprocessed root (env ITERDCE_PREPROCESSED)")
    group.add_argument("--results", help="results root (env ITERDCE_RESULTS)")


def add_models_root_argument(parser: argparse.ArgumentParser) -> None:
    """--models-root: where installed models live (else ITERDCE_MODELS, else <results root>/models)."""
    parser.add_argument("--models-root", help=f"installed models' folder (env {MODELS_ENV}; default "
                                              "<results root>/models)")


def roots_from_args(args: argparse.Namespace) -> Roots:
    """Resolve the roots when the command runs."""
    return resolve_roots(getattr(args, "raw", None), getattr(args, "preprocessed", None),
                         getattr(args, "results", None))


def fail(message: str, code: int = 1) -> int:
    """Print ``error: message`` to stderr and return the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code


def one_line_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                     line: str | None = None) -> str:
    """A warning as a user reads it: ``warning: <message>``, without the source file and line of iterdce's code
    that Python's default format adds."""
    return f"warning: {message}\n"


def run_guarded(body: Callable[[], int], interrupted: str = INTERRUPTED) -> int:
    """Run a command's body: an IterdceError becomes ``error: <message>`` and exit 1, Ctrl-C the one line
    ``interrupted`` and exit 130; any other exception is a bug in iterdce and propagates with its traceback.
    Warnings print as ``warning: <message>`` while it runs."""
    default_format = warnings.formatwarning
    warnings.formatwarning = one_line_warning
    try:
        return body()
    except IterdceError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        print(f"\n{interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        warnings.formatwarning = default_format


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
        raise JSONFileError(f"{path}: no splits; run iterdce_plan_and_preprocess first", path)
    count = len(read_splits(path))
    bad = [f for f in folds if f != "all" and not 0 <= int(f) < count]
    if bad:
        raise UsageError(f"fold {', '.join(map(str, bad))} does not exist: {path} has folds 0-{count - 1} (or 'all')")


def _integer(value: str, low: int, what: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {value!r}") from None
    if number < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {number}")
    return number


def positive_int(value: str) -> int:
    """An argument that must be an integer >= 1 (argparse names the flag in its error)."""
    return _integer(value, 1, "at least 1")


def non_negative_int(value: str) -> int:
    """An argument that must be an integer >= 0."""
    return _integer(value, 0, "at least 0")


def positive_float(value: str) -> float:
    """An argument that must be a finite number > 0."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {value!r}") from None
    if not (number > 0 and number != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value}")
    return number
