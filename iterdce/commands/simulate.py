"""``iterdce_simulate -o DIR``: write a synthetic breast DCE-MRI dataset (the physics-based phantom)."""
from __future__ import annotations

import argparse
import time

from iterdce.commands.common import (
    add_processes_argument,
    add_quiet_argument,
    fail,
    new_parser,
    positive_float,
    positive_int,
    run_guarded,
)
from iterdce.core.output_checks import require_writable_folder
from iterdce.simulation.early_frames import MAX_EARLY_FRAMES, early_frame_problems
from iterdce.simulation.sites import SITES


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of iterdce_simulate (kept separate so the docs and tests can inspect it)."""
    parser = new_parser("iterdce_simulate", __doc__,
                        "iterdce_simulate -o iterdce_data/raw/Dataset001_Phantom -n 40 -np 4")
    parser.add_argument("-o", "--output", required=True,
                        help="dataset folder to write, e.g. iterdce_data/raw/Dataset001_Phantom")
    parser.add_argument("-n", "--num-cases", type=positive_int, default=40, help="number of cases (default 40)")
    parser.add_argument("--shape", type=positive_int, nargs=3, default=[128, 128, 48], metavar=("X", "Y", "Z"),
                        help="voxel grid (default 128 128 48)")
    parser.add_argument("--spacing", type=positive_float, nargs=3, default=None, metavar=("X", "Y", "Z"),
                        help="voxel size in mm (default 1.6 1.6 2.0)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0); same seed, same files")
    parser.add_argument("--snr", type=float, default=None,
                        help="mean pre-contrast FGT signal / noise standard deviation (default 40)")
    parser.add_argument("--timing-jitter", type=float, default=None, metavar="SECONDS",
                        help="per-case uniform jitter of each post-contrast time, +-SECONDS; writes timesTr/ "
                             "(default 0: fixed protocol)")
    parser.add_argument("--protocols", choices=["fixed", "mixed"], default="fixed",
                        help="fixed (default): every case follows one protocol; mixed: cases cycle through three "
                             "protocols of 6, 5 and 4 phases with 70, 90 and 120 s gaps, each with its timesTr/ "
                             "sidecar (a multi-centre collection; documentation/simulation.md)")
    parser.add_argument("--early-frames", type=int, default=0, metavar="K",
                        help="ultrafast-style protocol: K frames evenly from 20 to 90 s after injection replace the "
                             "early phases and become the model's inputs with the pre-contrast phase (input_phases "
                             "0..K); the later phases follow (default 0: the protocol as is; at most "
                             f"{MAX_EARLY_FRAMES})")
    parser.add_argument("--no-fat-suppression", action="store_true",
                        help="no spectral fat saturation: fat is the brightest tissue before contrast")
    parser.add_argument("--motion", type=float, default=None, metavar="MM",
                        help="largest random inter-phase translation in mm (default 0)")
    sites = parser.add_mutually_exclusive_group()
    sites.add_argument("--site", choices=sorted(SITES), default=None,
                       help="draw each case's spacing, orientation, SNR, bias, fat saturation, field strength, "
                            "agent, flip angle/TR, timing, motion and lesion kinetics from a built-in site "
                            "profile (documentation/simulation.md); replaces the fixed acquisition options")
    sites.add_argument("--site-profile", default=None, metavar="FILE.json",
                       help="like --site, with the ranges read from a JSON site profile")
    parser.add_argument("--case-prefix", default="phantom", metavar="NAME",
                        help="case ids NAME_000, NAME_001, ... (letters and digits; default phantom), e.g. siteA "
                             "so that datasets of several sites can be merged")
    add_processes_argument(parser, 1, "worker processes")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a dataset already in the output folder")
    add_quiet_argument(parser)
    return parser


FIXED_OPTIONS = {"spacing": [1.6, 1.6, 2.0], "snr": 40.0, "timing_jitter": 0.0, "motion": 0.0}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with_site = args.site is not None or args.site_profile is not None
    clashing = [f"--{k.replace('_', '-')}" for k in FIXED_OPTIONS if getattr(args, k) is not None]
    clashing += ["--no-fat-suppression"] if args.no_fat_suppression else []
    if with_site and args.protocols == "mixed":
        return fail("--protocols mixed cannot be combined with --site/--site-profile: the site profile draws "
                    "each case's protocol")
    if with_site and clashing:
        return fail(f"{', '.join(clashing)} cannot be combined with --site/--site-profile: the site profile "
                    "draws these per case")
    for key, default in FIXED_OPTIONS.items():
        if getattr(args, key) is None:
            setattr(args, key, default)
    # a site's jitter is known once its profile is read: simulate_dataset checks the frames against it then
    problems = early_frame_problems(args.early_frames, 0.0 if with_site else args.timing_jitter)
    if problems:
        return fail(f"--early-frames: {problems[0]}")

    def body() -> int:
        require_writable_folder(args.output, "-o")
        # heavy imports (dcmri) only once the arguments are known to be fine
        from iterdce.simulation.config import MIXED_PROTOCOLS
        from iterdce.simulation.simulate import simulate_dataset
        from iterdce.simulation.sites import load_site_profile

        start = time.perf_counter()
        site = load_site_profile(args.site_profile) if args.site_profile is not None else args.site
        summary = simulate_dataset(
            args.output, args.num_cases, shape=args.shape, spacing=args.spacing, seed=args.seed, snr=args.snr,
            timing_jitter_s=args.timing_jitter, fat_suppression=not args.no_fat_suppression,
            motion_mm=args.motion, jobs=args.num_processes, overwrite=args.overwrite, site=site,
            case_prefix=args.case_prefix, progress=not args.quiet,
            protocols=MIXED_PROTOCOLS if args.protocols == "mixed" else (), early_frames=args.early_frames,
        )
        counts = ", ".join(f"{k} {v}" for k, v in summary.curve_type_counts.items())
        print(f"wrote {len(summary.case_ids)} cases, {len(summary.lesion_rows)} lesions ({counts}) to "
              f"{summary.dataset_dir} in {time.perf_counter() - start:.1f} s")
        return 0

    return run_guarded(body)


if __name__ == "__main__":
    raise SystemExit(main())
