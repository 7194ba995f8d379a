"""Placeholders for the packages iterdce imports at module level but that no gpu_check section uses.

gpu_check must run where only torch and numpy are installed (a bare GPU machine): each missing package of
``OPTIONAL_PACKAGES`` is served by a module whose every attribute is a class that raises when used. The bottom
layer of gpu_check: the driver (gpu_check.py) installs them before anything imports iterdce, and each DDP rank
(gpu_check_sections.py) installs them again in its own process.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types

OPTIONAL_PACKAGES = ("nibabel", "batchgenerators", "dcmri", "dtaidistance", "pydicom")


class _Placeholder(types.ModuleType):
    """A module standing in for a package that is not installed: any attribute is a class that raises when used."""

    def __getattr__(self, attribute: str) -> type:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        package = self.__name__.split(".")[0]

        def unavailable(*args: object, **kwargs: object) -> None:
            raise ModuleNotFoundError(f"{package} is not installed (needed for {self.__name__}.{attribute})")

        return type(attribute, (), {"__init__": unavailable, "__call__": unavailable})


class _PlaceholderFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves ``_Placeholder`` modules for the missing packages listed in ``names``."""

    def __init__(self, names: list[str]) -> None:
        self.names = set(names)

    def find_spec(self, fullname: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] not in self.names:
            return None
        return importlib.machinery.ModuleSpec(fullname, self, is_package=True)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _Placeholder(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def install_placeholders() -> list[str]:
    """Placeholders for the optional packages that are not installed; returns their names."""
    missing = [name for name in OPTIONAL_PACKAGES if importlib.util.find_spec(name) is None]
    if missing and not any(isinstance(f, _PlaceholderFinder) for f in sys.meta_path):
        sys.meta_path.append(_PlaceholderFinder(missing))
    return missing
