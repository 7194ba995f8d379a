"""``iterdce_verify_dataset -d DATASET``: report every problem of a raw dataset at once."""
from __future__ import annotations

import argparse
import sys

from iterdce.commands.common import add_root_arguments, roots_from_args, run_guarded
from iterdce.dataset.verify import verify_dataset
from iterdce.paths import find_dataset


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="iterdce_verify_dataset", description=__doc__)
    parser.add_argument("-d", "--dataset", required=True, help="dataset id (1), name, or path")
    parser.add_argument("--split", default="Tr", choices=["Tr", "Ts"], help="training or test images")
    add_root_arguments(parser)
    args = parser.parse_args(argv)
    roots = roots_from_args(args)

    def body() -> int:
        dataset_dir = find_dataset(args.dataset, roots.raw)
        problems = verify_dataset(dataset_dir, args.split)
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
