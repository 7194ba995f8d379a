"""``iterdce_install_model``: a checked shared-model zip -> ``<models root>/<name>/``, a model folder
``iterdce_predict --model NAME`` reads.

The whole zip is checked in memory first (``package.read_package``); only then is it written, into a hidden
temporary folder beside the target, which is renamed into place. A refused zip leaves the models root as it was;
an existing name is replaced only with ``overwrite``.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from iterdce.core.atomic import write_atomic
from iterdce.core.errors import OutputLocationError, UsageError
from iterdce.core.file_names import MODEL_ZIP_SUFFIX
from iterdce.core.folder_names import is_model_name
from iterdce.sharing.model_card import ModelCard
from iterdce.sharing.package import Package, PackageError, read_package


def check_name(name: str) -> str:
    if not is_model_name(name):
        raise UsageError(f"--name {name!r}: a model name is letters, digits, '_', '.' and '-' (at most 100, not "
                         "starting with '.' or '-'; no folders)")
    return name


def _writer(data: bytes) -> Callable[[Path], int]:
    return lambda tmp: tmp.write_bytes(data)


def write_package(package: Package, folder: Path) -> None:
    """Every member of a checked package into ``folder`` (which must not exist)."""
    folder.mkdir()
    for name, data in package.files.items():
        target = folder.joinpath(*name.split("/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, _writer(data))


def install_model(zip_path: Path, root: Path, name: str | None = None, overwrite: bool = False
                  ) -> tuple[Path, ModelCard]:
    """Check ``zip_path`` and install it as ``root/<name>`` (default: the card's name); returns the folder."""
    package = read_package(Path(zip_path))
    name = check_name(name if name is not None else package.card.name)
    target = Path(root) / name
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise OutputLocationError(f"{target}: a model named {name!r} is installed already; pass --overwrite to "
                                  "replace it, or --name to install it under another name", target)
    if target.exists() and not target.is_dir():
        raise OutputLocationError(f"{target}: exists and is not a model folder", target)
    Path(root).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.partial-{os.getpid()}-", dir=root))
    old = None
    try:
        staging.rmdir()
        write_package(package, staging)
        if target.exists():
            old = target.with_name(f".{name}.old-{os.getpid()}")
            target.rename(old)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
        if old is not None and old.exists():
            if target.exists():
                shutil.rmtree(old)
            else:
                old.rename(target)  # the rename failed: the old model stays
    return target, package.card


def installed_models(root: Path) -> list[str]:
    """The names of the models installed under ``root``."""
    if not Path(root).is_dir():
        return []
    return sorted(p.name for p in Path(root).iterdir() if p.is_dir() and is_model_name(p.name))


def resolve_model(spec: str, root: Path, unpack_into: Path) -> Path:
    """``--model``: a zip (checked, then unpacked into the empty folder ``unpack_into``) or an installed model's
    name under ``root``; returns the model folder."""
    path = Path(spec).expanduser()
    if spec.endswith(MODEL_ZIP_SUFFIX) or path.is_file():
        package = read_package(path)
        folder = Path(unpack_into) / "model"
        write_package(package, folder)
        return folder
    if not is_model_name(spec):
        raise PackageError(f"--model {spec}: neither a .zip file nor an installed model's name")
    folder = Path(root) / spec
    if not folder.is_dir():
        known = ", ".join(installed_models(root)) or "none"
        raise PackageError(f"--model {spec}: no model of that name under {root} (installed: {known}; "
                           "iterdce_install_model installs one)")
    return folder
