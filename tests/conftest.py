"""Fixtures over the helpers in tests/helpers.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import build_preprocessed, make_raw_dataset


@pytest.fixture(name="make_raw_dataset")
def make_raw_dataset_fixture():
    """The ``make_raw_dataset`` function, as a fixture."""
    return make_raw_dataset


@pytest.fixture
def raw_dataset(tmp_path: Path) -> Path:
    """A default valid flat-layout dataset (2 cases, 4 phases, 16x16x8, masks) under ``tmp_path/raw``."""
    return make_raw_dataset(tmp_path / "raw")


@pytest.fixture(scope="session")
def preprocessed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_preprocessed(tmp_path_factory.mktemp("training_data"))


@pytest.fixture(scope="session")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bad-input matrix's workspace (tests/bad_inputs/workspace.py): a tiny trained model, its predictions,
    exported to model.zip and installed; built once per session, copied by the tests that change it."""
    from tests.bad_inputs.workspace import build_workspace

    return build_workspace(tmp_path_factory.mktemp("bad_inputs") / "ws")
