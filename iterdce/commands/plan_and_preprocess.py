"""``iterdce_plan_and_preprocess -d DATASET``: fingerprint, plan, preprocess and split a raw dataset."""
from __future__ import annotations

import sys

from iterdce.commands.common import (
    add_dataset_argument,
    add_plans_argument,
    add_processes_argument,
    add_quiet_argument,
    add_root_arguments,
    new_parser,
    positive_float,
    roots_from_args,
    run_guarded,
)
from iterdce.core.output_checks import require_writable_folder
from iterdce.core.owned_outputs import refuse_overlap
from iterdce.core.paths import find_dataset
from iterdce.preprocessing.pipeline import plan_and_preprocess
from iterdce.preprocessing.presets import PRESETS


def main(argv: list[str] | None = None) -> int:
    parser = new_parser("iterdce_plan_and_preprocess", __doc__,
                        "iterdce_plan_and_preprocess -d 1 -np 4 --preset tiny")
    add_dataset_argument(parser)
    add_processes_argument(parser, 2, "worker processes")
    parser.add_argument("--preset", default="default", choices=sorted(PRESETS), help="planner preset")
    parser.add_argument("--gpu-memory-gb", type=positive_float, default=8.0, help="training memory budget (default 8)")
    add_plans_argument(parser)
    parser.add_argument("--replan", action="store_true", help="plan anew even if the plan file exists")
    add_quiet_argument(parser)
    add_root_arguments(parser)
    args = parser.parse_args(argv)
    roots = roots_from_args(args)

    def body() -> int:
        dataset_dir = find_dataset(args.dataset, roots.raw, "raw")
        refuse_overlap(roots.preprocessed / dataset_dir.name, "--preprocessed", [("raw dataset", dataset_dir)])
        require_writable_folder(roots.preprocessed / dataset_dir.name, "--preprocessed")
        plan_and_preprocess(dataset_dir, roots.preprocessed, args.num_processes, args.preset, args.gpu_memory_gb,
                            args.plans_name, args.replan, progress=not args.quiet)
        return 0

    return run_guarded(body)


if __name__ == "__main__":
    sys.exit(main())
