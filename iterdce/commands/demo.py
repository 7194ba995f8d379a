"""``iterdce_demo [-o DIR]``: the whole pipeline on the built-in phantom, ending with a results table."""
from __future__ import annotations

import sys
from pathlib import Path

from iterdce.commands.common import add_quiet_argument, new_parser, positive_int, run_guarded
from iterdce.core.output_checks import require_writable_folder
from iterdce.workflow.demo import DemoConfig, run_demo


def main(argv: list[str] | None = None) -> int:
    defaults = DemoConfig()
    parser = new_parser("iterdce_demo", __doc__, "iterdce_demo -o iterdce_demo_output --device cpu")
    parser.add_argument("-o", "--output", type=Path, default=Path("iterdce_demo_output"),
                        help="folder for everything the demo writes (default ./iterdce_demo_output)")
    parser.add_argument("-n", "--num-cases", type=positive_int, default=defaults.num_cases, help="phantom cases")
    parser.add_argument("--shape", type=positive_int, nargs=3, default=list(defaults.shape), help="phantom voxel grid")
    parser.add_argument("--epochs", type=positive_int, nargs=2,
                        default=[defaults.warmup_epochs, defaults.recursive_epochs],
                        metavar=("WARMUP", "RECURSIVE"), help="epochs of each training stage")
    parser.add_argument("--iterations-per-epoch", type=positive_int, default=defaults.iterations_per_epoch)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    add_quiet_argument(parser)
    args = parser.parse_args(argv)
    config = DemoConfig(num_cases=args.num_cases, shape=tuple(args.shape), warmup_epochs=args.epochs[0],
                        recursive_epochs=args.epochs[1], iterations_per_epoch=args.iterations_per_epoch,
                        device=args.device)

    def body() -> int:
        require_writable_folder(args.output, "-o")
        run_demo(args.output, config, log=(lambda *_: None) if args.quiet else print)
        return 0

    return run_guarded(body)


if __name__ == "__main__":
    sys.exit(main())
