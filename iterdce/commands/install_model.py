"""``iterdce_install_model model.zip``: check a shared model (every member's checksum, no path outside its folder,
no link, no pickled object, a plan this iterdce reads) and install it for ``iterdce_predict --model NAME``."""
from __future__ import annotations

import sys
from pathlib import Path

from iterdce.commands.common import (
    add_models_root_argument,
    add_quiet_argument,
    add_root_arguments,
    new_parser,
    roots_from_args,
    run_guarded,
)
from iterdce.core.paths import models_root
from iterdce.sharing.install import install_model


def main(argv: list[str] | None = None) -> int:
    parser = new_parser("iterdce_install_model", __doc__, "iterdce_install_model phantom.zip --name phantom")
    parser.add_argument("zip", help="the shared model (iterdce_export_model's zip)")
    parser.add_argument("--name", help="install under this name (default: the name in its model card)")
    parser.add_argument("--overwrite", action="store_true", help="replace an installed model of the same name")
    add_quiet_argument(parser)
    add_models_root_argument(parser)
    add_root_arguments(parser)
    args = parser.parse_args(argv)
    roots = roots_from_args(args)

    def body() -> int:
        folder, card = install_model(Path(args.zip), models_root(roots.results, args.models_root), args.name,
                                     args.overwrite)
        print(f"installed {card.name} (card id {card.id[:16]}, iterdce {card.version}, license {card.license}) "
              f"as {folder}; predict with: iterdce_predict --model {folder.name} -i ... -o ...")
        return 0

    return run_guarded(body)


if __name__ == "__main__":
    sys.exit(main())
