"""Wall time of the phantom simulator: 40 cases of 128 x 128 x 48 (6 phases) with 2 worker processes.

Target: under 2 minutes on 2 CPU cores (a few minutes for 160 x 128 x 48 with a site profile). Prints the
seconds, the time per case and the lesion type counts.

    python -m benchmarks.bench_simulate [--cases 40] [--shape 128 128 48] [--jobs 2] [--site D]
                                                  [--workdir DIR]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from iterdce.simulation.sites import SITES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=40)
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 128, 48])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--site", choices=sorted(SITES), default=None, help="a built-in site profile")
    parser.add_argument("--workdir", type=Path, default=None, help="kept if given; else a temporary folder")
    args = parser.parse_args()

    from iterdce.simulation import simulate_dataset

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_simulate_"))
    target = workdir / "Dataset001_Phantom"
    try:
        start = time.perf_counter()
        summary = simulate_dataset(target, args.cases, shape=tuple(args.shape), seed=args.seed, jobs=args.jobs,
                                   overwrite=True, site=args.site)
        seconds = time.perf_counter() - start
        size_mb = sum(p.stat().st_size for p in target.rglob("*") if p.is_file()) / 1e6
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    site = f" (site {args.site})" if args.site else ""
    print(f"simulated {args.cases} cases{site} of {' x '.join(map(str, args.shape))} with {args.jobs} jobs: "
          f"{seconds:.1f} s ({seconds / args.cases:.2f} s per case, {size_mb:.0f} MB written); "
          f"lesions {summary.curve_type_counts}")
    print(f"{seconds:.2f}")


if __name__ == "__main__":
    main()
