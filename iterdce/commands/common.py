"""Pieces shared by the command-line modules: root flags, argument types and error reporting."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from iterdce.errors import IterdceError
from iterdce.paths import Roots, resolve_roots

INTERRUPTED = "interrupted; rerun the same command to resume"
EXIT_INTERRUPTED = 130


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


def run_guarded(body: Callable[[], int], interrupted: str = INTERRUPTED) -> int:
    """Run a command's body: an IterdceError becomes ``error: <message>`` and exit 1, Ctrl-C the one line
    ``interrupted`` and exit 130; any other exception is a bug in iterdce and propagates with its traceback."""
    try:
        return body()
    except IterdceError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        print(f"\n{interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED


def parse_fold(value: str) -> int | str:
    """A fold argument: a non-negative integer or ``all``."""
    if value == "all":
        return value
    if value.isdigit():
        return int(value)
    raise argparse.ArgumentTypeError(f"a fold is 0-4 or 'all', got {value!r}")


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
