"""GPU check: the GPU-only paths of iterdce and the prediction / training benchmarks, in one short run.

Sections (each guarded: a failure is recorded as FAIL with its one-line error and the run goes on):

- environment: torch, device, bf16 support, packages replaced by placeholders (see below);
- bf16 train steps of the warm-up and the recursive stage (the recursive stage starts from the warm-up's
  checkpoint), host synchronisations counted inside the step loop with ``torch.cuda.set_sync_debug_mode``;
- checkpoint save + resume: the same steps after a resume give the same weights (max difference reported);
- pinned-memory data loading with worker processes (batches pinned, copied non-blocking);
- prediction with the CUDA out-of-memory fallback, forced twice: by an injected ``OutOfMemoryError`` and by a
  real memory cap (``torch.cuda.set_per_process_memory_fraction``); output compared with an uncapped run;
- 2-process DDP (NCCL) when there are >= 2 GPUs (gloo on CPU in ``--dry-run``);
- prediction benchmark: iterdce's ``predict_volume`` against MONAI's ``sliding_window_inference`` (when monai is
  importable) and the bare forward passes, with the default plan's network and patch;
- training-step benchmark with the default plan's network, patch and batch (bf16), both stages.

It prints one markdown table (check, status, result, seconds) and writes it as JSON to ``--out`` after every
section, so a run cut short still leaves what it did. Only the repository and torch (with numpy) are needed: a
package iterdce imports at module level but that no section uses (nibabel, batchgenerators, dcmri, dtaidistance,
pydicom) is replaced by a placeholder that raises when used, if it is not installed (gpu_check_placeholders.py).
The augmentation of the loader section then runs without batchgenerators' transforms (said so).

The layers, each importing only those below it: gpu_check.py (this driver: the report and the command line) ->
gpu_check_sections.py (the pass/fail checks) -> gpu_check_bench.py (the timed sections) -> gpu_check_fixtures.py
(plans, datasets, trainers) and gpu_check_placeholders.py.

    python -m benchmarks.gpu_check --out gpu_check.json                       # on a GPU machine, < 6 min
    python -m benchmarks.gpu_check --device cpu --dry-run --out /tmp/gc.json  # every section at toy size, < 30 s
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks.common import markdown_table
from benchmarks.gpu_check_placeholders import install_placeholders


class Report:
    """The table: one row per section, written to ``out`` (JSON) after each row."""

    def __init__(self, out: Path | None, meta: dict) -> None:
        self.out, self.meta, self.rows = out, meta, []

    def run(self, name: str, section: Callable[[], tuple[str, str] | str], deadline: float) -> None:
        from benchmarks.gpu_check_fixtures import Skip

        start = time.perf_counter()
        if time.monotonic() > deadline:
            status, result = "SKIP", "time budget (--max-seconds) used up"
        else:
            try:
                outcome = section()
                status, result = outcome if isinstance(outcome, tuple) else ("PASS", outcome)
            except Skip as exc:
                status, result = "SKIP", str(exc)
            except BaseException as exc:  # noqa: BLE001 - one failure must not lose the rest of the run
                if isinstance(exc, KeyboardInterrupt):
                    raise
                status = "FAIL"
                result = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:300]
                self.meta.setdefault("tracebacks", {})[name] = traceback.format_exc()[-4000:]
        row = {"check": name, "status": status, "result": result,
               "seconds": round(time.perf_counter() - start, 2)}
        self.rows.append(row)
        print(f"[{row['status']}] {name} ({row['seconds']} s): {row['result']}", flush=True)
        self.write()

    def write(self) -> None:
        if self.out is None:
            return
        self.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.out.with_name(f".{self.out.name}.tmp")
        tmp.write_text(json.dumps({**self.meta, "rows": self.rows}, indent=2) + "\n")
        os.replace(tmp, self.out)

    def markdown(self) -> str:
        return markdown_table(("check", "status", "result", "seconds"),
                              [(r["check"], r["status"], r["result"], f"{r['seconds']:.1f}") for r in self.rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cuda or cpu")
    parser.add_argument("--dry-run", action="store_true", help="every section at toy size (a CPU test of this script)")
    parser.add_argument("--out", type=Path, help="write the table as JSON here (rewritten after each section)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, deleted)")
    parser.add_argument("--max-seconds", type=float, default=330.0,
                        help="sections not started by then are skipped (default 330)")
    parser.add_argument("--only", nargs="+", help="run only these sections (names as in the table)")
    args = parser.parse_args(argv)
    placeholders = install_placeholders()
    import torch

    from benchmarks.gpu_check_fixtures import Context
    from benchmarks.gpu_check_sections import SECTIONS

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_check: --device cuda was asked for but torch sees no CUDA device", file=sys.stderr)
        return 2
    meta = {"torch": torch.__version__, "device": str(device), "dry_run": args.dry_run,
            "placeholders": placeholders, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    if device.type == "cuda":
        meta["gpu"] = torch.cuda.get_device_name(device)
    if args.dry_run and device.type == "cpu":
        torch.set_num_threads(1)  # toy sizes: more threads only add contention on a shared machine
    report = Report(args.out, meta)
    deadline = time.monotonic() + args.max_seconds
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        work = args.work or Path(scratch)
        context = Context(device=device, dry_run=args.dry_run, work=work, placeholders=placeholders)
        for name, section in SECTIONS:
            if args.only and name not in args.only:
                continue
            report.run(name, lambda section=section: section(context), deadline)
            gc.collect()  # what a failed section held is released before the next one
            if device.type == "cuda":
                torch.cuda.empty_cache()
    print()
    print(f"gpu_check on {meta.get('gpu', device)} (torch {torch.__version__}"
          f"{', dry run' if args.dry_run else ''}), {meta['started']}")
    print(report.markdown())
    failed = [r["check"] for r in report.rows if r["status"] == "FAIL"]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
