"""``iterdce_plan_and_preprocess -d DATASET``: fingerprint, plan, preprocess and split a raw dataset."""
from __future__ import annotations

import argparse
import sys

from iterdce.commands.common import add_root_arguments, positive_float, positive_int, roots_from_args, run_guarded
from iterdce.output_checks import require_writable_folder
from iterdce.paths import find_dataset
from iterdce.preprocessing.pipeline import plan_and_preprocess
from iterdce.preprocessing.presets import PRESETS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iterdce_plan_and_preprocess", description=__doc__)
    parser.add_argument("-d", "--dataset", required=True, help="dataset id (1), name, or path")
    parser.add_argument("-np", "--num-processes", type=positive_int, default=2, help="worker processes (default 2)")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS), help="planner preset")
    parser.add_argument("--gpu-memory-gb", type=positive_float, default=8.0, help="training memory budget (default 8)")
    parser.add_argument("--plans-name", default="plans", help="plan file name without .json (default plans)")
    parser.add_argument("--replan", action="store_true", help="plan anew even if the plan file exists")
    add_root_arguments(parser)
    args = parser.parse_args(argv)
    roots = roots_from_args(args)

    def body() -> int:
        dataset_dir = find_dataset(args.dataset, roots.raw)
        require_writable_folder(roots.preprocessed / dataset_dir.name, "--preprocessed")
        plan_and_preprocess(dataset_dir, roots.preprocessed, args.num_processes, args.preset, args.gpu_memory_gb,
                            args.plans_name, args.replan)
        return 0

    return run_guarded(body)


if __name__ == "__main__":
    sys.exit(main())
