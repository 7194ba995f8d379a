"""``iterdce_plan_and_preprocess -d DATASET``: fingerprint, plan, preprocess and split a raw dataset."""
from __future__ import annotations

import argparse
import sys

from iterdce.commands.common import add_root_arguments, fail, roots_from_args
from iterdce.dataset.verify import InvalidDatasetError
from iterdce.paths import DatasetNotFoundError, find_dataset
from iterdce.preprocessing.pipeline import plan_and_preprocess
from iterdce.preprocessing.plans_io import PlansError
from iterdce.preprocessing.presets import PRESETS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iterdce_plan_and_preprocess", description=__doc__)
    parser.add_argument("-d", "--dataset", required=True, help="dataset id (1), name, or path")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS), help="planner preset")
    parser.add_argument("--gpu-memory-gb", type=float, default=8.0, help="training memory budget (default 8)")
    parser.add_argument("--plans-name", default="plans", help="plan file name without .json (default plans)")
    parser.add_argument("--replan", action="store_true", help="plan anew even if the plan file exists")
    add_root_arguments(parser)
    args = parser.parse_args(argv)
    roots = roots_from_args(args)
    try:
        dataset_dir = find_dataset(args.dataset, roots.raw)
        plan_and_preprocess(dataset_dir, roots.preprocessed, args.num_processes, args.preset, args.gpu_memory_gb,
                            args.plans_name, args.replan)
    except (DatasetNotFoundError, InvalidDatasetError, PlansError, ValueError) as exc:
        return fail(str(exc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
