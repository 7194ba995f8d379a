"""Pieces shared by the command-line modules: root flags and error reporting."""
from __future__ import annotations

import argparse
import sys

from iterdce.paths import Roots, resolve_roots


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
    """A fold argument: a non-negative integer or ``all``."""
    if value == "all":
        return value
    if value.isdigit():
        return int(value)
    raise argparse.ArgumentTypeError(f"a fold is 0-4 or 'all', got {value!r}")
