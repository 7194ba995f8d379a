"""The user's own modules (a loss term, a trainer variant): imported once, before a loss term or a trainer is
looked up by name, so that registering in one file of one's own is enough (documentation/architecture.md).

Two sources, both optional:

- the environment variable ITERDCE_EXTENSIONS: paths of ``.py`` files or dotted module names, separated by
  ``os.pathsep`` (``:`` on Linux), e.g. ``ITERDCE_EXTENSIONS=~/my_trainer.py iterdce_train ...``;
- installed packages that declare an entry point in the group ``iterdce.extensions`` (their module is imported).

A module registers what it defines as it is imported (``register_loss_term``, a ``Trainer`` subclass).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable
from functools import partial
from importlib.metadata import entry_points
from pathlib import Path

from iterdce.core.errors import UsageError

EXTENSIONS_ENV = "ITERDCE_EXTENSIONS"
ENTRY_POINT_GROUP = "iterdce.extensions"

_loaded: set[str] = set()  # the entries imported (or being imported) in this process


def load_extensions() -> None:
    """Import every module of ITERDCE_EXTENSIONS and of the ``iterdce.extensions`` entry points not imported yet
    (cheap when there is nothing new; re-entrant: a module being imported is not imported again)."""
    if "entry points" not in _loaded:
        _loaded.add("entry points")
        for point in entry_points(group=ENTRY_POINT_GROUP):
            _import_once(f"entry point {point.name}", point.load)
    for entry in filter(None, os.environ.get(EXTENSIONS_ENV, "").split(os.pathsep)):
        _import_once(entry, partial(_import_module, entry))


def _import_once(key: str, do_import: Callable[[], object]) -> None:
    if key in _loaded:
        return
    _loaded.add(key)
    try:
        do_import()
    except (ImportError, OSError, SyntaxError) as exc:  # not found or not Python: one line naming the entry
        _loaded.discard(key)
        raise UsageError(f"{EXTENSIONS_ENV}/{ENTRY_POINT_GROUP}: importing {key} failed: "
                         f"{type(exc).__name__}: {exc}") from exc
    except BaseException:  # an error inside the user's module keeps its traceback
        _loaded.discard(key)
        raise


def _import_module(entry: str) -> None:
    """A dotted module name, or a ``.py`` file imported as the module ``iterdce_extension_<stem>``."""
    if not entry.endswith(".py"):
        importlib.import_module(entry)
        return
    path = Path(entry).expanduser().resolve()
    name = f"iterdce_extension_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None or not path.is_file():
        raise FileNotFoundError(f"no Python file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
