"""benchmarks.gpu_check: its CPU dry run passes every section, and its placeholders for missing packages work."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.gpu_check_placeholders import _PlaceholderFinder
from benchmarks.gpu_check_sections import SECTIONS

REPO = Path(__file__).resolve().parents[1]


def test_dry_run_runs_every_section(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check.json"
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu", "--dry-run", "--out",
                           str(out)], capture_output=True, text=True, timeout=280, cwd=REPO)
    report = json.loads(out.read_text())
    rows = {row["check"]: row for row in report["rows"]}
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert list(rows) == [name for name, _ in SECTIONS]
    assert {r["status"] for r in rows.values()} <= {"PASS", "SKIP"}, report
    assert rows["predict OOM (memory cap)"]["status"] == "SKIP"  # CUDA only; everything else runs on CPU
    assert rows["checkpoint resume"]["result"].startswith("weights identical")
    assert "| check | status | result | seconds |" in done.stdout


def test_placeholder_modules_import_and_fail_on_use() -> None:
    finder = _PlaceholderFinder(["iterdce_absent_package"])
    sys.meta_path.append(finder)
    try:
        from iterdce_absent_package.transforms import Transform  # type: ignore[import-not-found]

        class Derived(Transform):  # module-level subclassing, as iterdce's bias field transform does
            pass

        with pytest.raises(ModuleNotFoundError, match="iterdce_absent_package is not installed"):
            Derived()
    finally:
        sys.meta_path.remove(finder)
        for name in [m for m in sys.modules if m.startswith("iterdce_absent_package")]:
            del sys.modules[name]
