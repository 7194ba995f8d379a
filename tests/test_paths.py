"""Data roots (flag > environment variable > ./iterdce_data) and dataset lookup by id, name or path."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from iterdce.core.folder_names import model_folder_name
from iterdce.core.paths import (
    ENV_VARS,
    DatasetNotFoundError,
    find_dataset,
    resolve_roots,
)

REPO = Path(__file__).resolve().parents[1]


def make_dataset_folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "dataset.json").write_text(json.dumps({"name": name.split("_", 1)[1]}))
    return folder


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No ITERDCE_* variable set, and a fresh working directory."""
    for var in ENV_VARS.values():
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_roots_default_to_iterdce_data_in_working_directory(clean_env, tmp_path):
    roots = resolve_roots()
    assert roots.raw == tmp_path / "iterdce_data" / "raw"
    assert roots.preprocessed == tmp_path / "iterdce_data" / "preprocessed"
    assert roots.results == tmp_path / "iterdce_data" / "results"
    assert not (tmp_path / "iterdce_data").exists()


def test_environment_overrides_default_and_flag_overrides_environment(clean_env, tmp_path):
    clean_env.setenv("ITERDCE_RAW", str(tmp_path / "env_raw"))
    clean_env.setenv("ITERDCE_RESULTS", str(tmp_path / "env_results"))
    roots = resolve_roots()
    assert roots.raw == tmp_path / "env_raw"
    assert roots.results == tmp_path / "env_results"
    assert roots.preprocessed == tmp_path / "iterdce_data" / "preprocessed"
    roots = resolve_roots(raw=tmp_path / "flag_raw", preprocessed=str(tmp_path / "flag_pre"))
    assert roots.raw == tmp_path / "flag_raw"
    assert roots.preprocessed == tmp_path / "flag_pre"
    assert roots.results == tmp_path / "env_results"


def test_roots_follow_environment_changes_after_import(clean_env, tmp_path):
    assert resolve_roots().raw == tmp_path / "iterdce_data" / "raw"
    clean_env.setenv("ITERDCE_RAW", str(tmp_path / "later"))
    assert resolve_roots().raw == tmp_path / "later"


def test_importing_paths_reads_no_environment_variable():
    """A spy replaces os.environ before the import; only the later resolve_roots call may read ITERDCE_*."""
    script = """
import os, sys
class Spy(dict):
    seen = []
    def __getitem__(self, key):
        Spy.seen.append(key)
        return dict.__getitem__(self, key)
    def get(self, key, default=None):
        Spy.seen.append(key)
        return dict.get(self, key, default)
    def __contains__(self, key):
        Spy.seen.append(key)
        return dict.__contains__(self, key)
os.environ = Spy(os.environ)
import iterdce.core.paths
at_import = [k for k in Spy.seen if k.startswith("ITERDCE")]
iterdce.core.paths.resolve_roots()
after_call = [k for k in Spy.seen if k.startswith("ITERDCE")]
print(at_import, sorted(after_call))
"""
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] ['ITERDCE_PREPROCESSED', 'ITERDCE_RAW', 'ITERDCE_RESULTS']"


def test_find_dataset_by_id_name_folder_and_path(tmp_path, clean_env):
    root = tmp_path / "raw"
    phantom = make_dataset_folder(root, "Dataset001_Phantom")
    make_dataset_folder(root, "Dataset012_Other")
    (root / "Dataset003_NoJson").mkdir()
    (root / "not_a_dataset").mkdir()
    assert find_dataset("1", root) == phantom
    assert find_dataset("001", root) == phantom
    assert find_dataset("Phantom", root) == phantom
    assert find_dataset("Dataset001_Phantom", root) == phantom
    assert find_dataset("12", root) == root / "Dataset012_Other"
    assert find_dataset(phantom, root / "elsewhere") == phantom.resolve()
    assert find_dataset(str(phantom), root / "elsewhere") == phantom.resolve()
    clean_env.chdir(root)
    assert find_dataset("./Dataset001_Phantom", tmp_path / "elsewhere") == phantom.resolve()
    assert model_folder_name("RecursiveTrainer", "plans") == "RecursiveTrainer__plans"


def test_folder_given_as_path_is_returned_even_without_dataset_json(tmp_path):
    folder = tmp_path / "Dataset004_Broken"
    folder.mkdir()
    assert find_dataset(str(folder), tmp_path / "raw") == folder.resolve()


def test_missing_dataset_errors_are_clear(tmp_path):
    root = tmp_path / "raw"
    make_dataset_folder(root, "Dataset001_Phantom")
    with pytest.raises(DatasetNotFoundError,
                       match=r"'7' not found under the raw root .*raw \(datasets there: Dataset001_Phantom\)"):
        find_dataset("7", root)
    with pytest.raises(DatasetNotFoundError, match="'Nope' not found"):
        find_dataset("Nope", root)
    with pytest.raises(DatasetNotFoundError, match="raw root .*missing_root does not exist"):
        find_dataset("Phantom", tmp_path / "missing_root")
    with pytest.raises(DatasetNotFoundError, match=r"results root .*missing_root does not exist \(set --results"):
        find_dataset("Phantom", tmp_path / "missing_root", "results")
    with pytest.raises(DatasetNotFoundError, match="no such folder"):
        find_dataset(str(tmp_path / "absent" / "Dataset001_Phantom"), root)
    assert issubclass(DatasetNotFoundError, FileNotFoundError)


def test_ambiguous_dataset_errors_list_the_matches(tmp_path):
    root = tmp_path / "raw"
    make_dataset_folder(root, "Dataset001_Phantom")
    make_dataset_folder(root, "Dataset001_Other")
    make_dataset_folder(root, "Dataset002_Phantom")
    with pytest.raises(DatasetNotFoundError, match="'1' is ambiguous .*matches Dataset001_Other, Dataset001_Phantom$"):
        find_dataset("1", root)
    with pytest.raises(DatasetNotFoundError, match="'Phantom' is ambiguous .*Dataset001_Phantom, Dataset002_Phantom$"):
        find_dataset("Phantom", root)
    assert find_dataset("Dataset002_Phantom", root) == root / "Dataset002_Phantom"
    assert find_dataset("Other", root) == root / "Dataset001_Other"
