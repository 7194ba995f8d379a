"""``iterdce_verify_dataset -d DATASET``: report every problem of a raw dataset at once."""
from __future__ import annotations

import sys

from iterdce.commands.common import (
    add_dataset_argument,
    add_quiet_argument,
    add_root_arguments,
    new_parser,
    roots_from_args,
    run_guarded,
)
from iterdce.core.paths import find_dataset
from iterdce.dataset.verify import verify_dataset


def main(argv: list[str] | None = None) -> int:
    parser = new_parser("iterdce_verify_dataset", __doc__, "iterdce_verify_dataset -d 1")
    add_dataset_argument(parser)
    parser.add_argument("--split", default="Tr", choices=["Tr", "Ts"], help="training or test images")
    add_quiet_argument(parser)
    add_root_arguments(parser)
    args = parser.parse_args(argv)
    roots = roots_from_args(args)

    def body() -> int:
        dataset_dir = find_dataset(args.dataset, roots.raw, "raw")
        problems = verify_dataset(dataset_dir, args.split, progress=not args.quiet)
        if problems:
            print(f"{dataset_dir}: {len(problems)} problem(s)", file=sys.stderr)
            for problem in problems:
                print(f"  - {problem}", file=sys.stderr)
            return 1
        print(f"{dataset_dir}: OK")
        return 0

    return run_guarded(body)


if __name__ == "__main__":
    sys.exit(main())
