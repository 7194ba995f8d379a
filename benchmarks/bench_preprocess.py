"""Speed and peak memory of ``iterdce_plan_and_preprocess`` on the phantom, with 1 and 2 worker processes.

Simulates the phantom once (20 cases of 128 x 128 x 48, 6 phases by default) into ``--workdir`` (a temporary
folder if not given; an existing simulated dataset there is reused), then preprocesses it into a fresh folder
once per worker count. Each run happens in its own child process so that its peak RSS is its own:
``main`` is the peak (VmHWM) of the process that runs the pipeline (all the work when -np 1), ``workers``
the peak of the largest worker process (getrusage RUSAGE_CHILDREN; forked workers also count the pages they
share with the main process). ``baseline`` is the main process's RSS after imports, before any case is read.

    python -m benchmarks.bench_preprocess [--workdir DIR] [--cases 20] [--processes 1 2]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from iterdce.core.file_names import archive_name
from iterdce.core.folder_names import plans_data_folder_name

DATASET_NAME = "Dataset001_Phantom"


def status_mb(field: str) -> float:
    """A memory line of /proc/self/status in MB (Linux): VmRSS (now) or VmHWM (peak of this process image)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def children_peak_mb() -> float:
    """Peak RSS (MB) of the largest finished child process (the pool's workers)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0  # Linux reports kilobytes


def simulate(raw_root: Path, cases: int, shape: list[int], jobs: int) -> Path:
    """The phantom dataset under ``raw_root``; reused when a finished one (dataset.json present) is there."""
    dataset_dir = raw_root / DATASET_NAME
    if (dataset_dir / "dataset.json").is_file():
        info = json.loads((dataset_dir / "dataset.json").read_text())
        if info.get("numTraining") == cases:
            print(f"reusing the simulated dataset {dataset_dir}")
            return dataset_dir
    from iterdce.simulation import simulate_dataset

    start = time.perf_counter()
    simulate_dataset(dataset_dir, num_cases=cases, shape=tuple(shape), seed=0, jobs=jobs, overwrite=True)
    print(f"simulated {cases} cases of {' x '.join(map(str, shape))} in {time.perf_counter() - start:.1f} s "
          f"into {dataset_dir}")
    return dataset_dir


def child(dataset_dir: Path, preprocessed_root: Path, processes: int) -> None:
    """Run the pipeline once with stage timers and print one JSON line of measurements."""
    from iterdce.preprocessing import pipeline

    baseline = status_mb("VmRSS")
    stages: dict[str, float] = {}

    def timed(name: str, function):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                stages[name] = stages.get(name, 0.0) + time.perf_counter() - start
        return wrapper

    pipeline.require_valid_dataset = timed("verify", pipeline.require_valid_dataset)
    pipeline.fingerprint_for = timed("fingerprint", pipeline.fingerprint_for)
    pipeline.map_with_progress = timed("preprocess", pipeline.map_with_progress)
    start = time.perf_counter()
    plans = pipeline.plan_and_preprocess(dataset_dir, preprocessed_root, num_processes=processes, progress=False,
                                         log=lambda _: None)
    wall = time.perf_counter() - start
    npz = sorted((preprocessed_root / dataset_dir.name / plans_data_folder_name("plans")).glob(archive_name("*")))
    print(json.dumps({"wall_s": wall, "stages_s": stages, "cases": len(npz), "baseline_mb": baseline,
                      "main_peak_mb": status_mb("VmHWM"), "workers_peak_mb": children_peak_mb(),
                      "patch_size": list(plans.patch_size), "spacing": list(plans.spacing),
                      "npz_mb": sum(p.stat().st_size for p in npz) / len(npz) / 2**20}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="folder for the simulated and preprocessed data (default: temp)")
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 128, 48])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--simulation-jobs", type=int, default=2)
    parser.add_argument("--child", nargs=3, metavar=("DATASET", "PREPROCESSED", "NP"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(Path(args.child[0]), Path(args.child[1]), int(args.child[2]))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="iterdce_bench_preprocess_"))
    dataset_dir = simulate(workdir / "raw", args.cases, args.shape, args.simulation_jobs)
    case_mb = 6 * 4 * args.shape[0] * args.shape[1] * args.shape[2] / 2**20
    print(f"one case in memory: {case_mb:.1f} MB (6 phases float32)")
    print(f"{'np':>3} {'cases/s':>8} {'wall s':>7} {'verify':>7} {'fingerpr':>8} {'preproc':>8} "
          f"{'baseline MB':>11} {'main peak MB':>12} {'worker peak MB':>14}   (peak above baseline / one case)")
    for processes in args.processes:
        out = workdir / f"preprocessed_np{processes}"
        shutil.rmtree(out, ignore_errors=True)
        command = [sys.executable, "-m", "benchmarks.bench_preprocess", "--child", str(dataset_dir), str(out),
                   str(processes)]
        result = subprocess.run(command, check=True, capture_output=True, text=True)
        row = json.loads(result.stdout.strip().splitlines()[-1])
        stages, baseline = row["stages_s"], row["baseline_mb"]
        ratios = f"main {(row['main_peak_mb'] - baseline) / case_mb:.1f}x"
        workers = "-"
        if processes > 1:
            workers = f"{row['workers_peak_mb']:.0f}"
            ratios += f", worker {(row['workers_peak_mb'] - baseline) / case_mb:.1f}x"
        print(f"{processes:>3} {row['cases'] / row['wall_s']:>8.2f} {row['wall_s']:>7.1f} {stages['verify']:>7.1f} "
              f"{stages['fingerprint']:>8.1f} {stages['preprocess']:>8.1f} {baseline:>11.0f} "
              f"{row['main_peak_mb']:>12.0f} {workers:>14}   ({ratios})")
    print(f"plan: patch {row['patch_size']}, spacing {[round(s, 3) for s in row['spacing']]}; "
          f"{row['npz_mb']:.1f} MB per .npz; data in {workdir}")


if __name__ == "__main__":
    main()
