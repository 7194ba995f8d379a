"""How much of a real phase's gradient energy its acquisition noise alone accounts for.

The sharpness metric (evaluation/metrics.py) is the gradient-energy ratio of a synthesized phase to the real
one. The real phase carries its own noise, which no prediction of the expected image can reproduce; this script
estimates that share from the image background (Rayleigh noise of a magnitude image, sigma = std /
sqrt(2 - pi/2); central differences of white noise add 3 x sigma^2 / 2 of gradient energy per voxel), so a
sharpness below 1 can be told apart from blur.

    python -m benchmarks.noise_share DATASET/imagesTr --cases 6 --phase 5
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import ndimage

from iterdce.core.file_names import phase_file_name
from iterdce.dataset.masks import derive_foreground_mask
from iterdce.dataset.nifti_io import read_image


def noise_share(inputs: list[Path], phase: Path) -> tuple[float, float]:
    """(noise sigma, share of the phase's body gradient energy that this noise accounts for)."""
    early = np.stack([read_image(p)[0] for p in inputs])
    image = read_image(phase)[0].astype(np.float64)
    body = derive_foreground_mask(early)
    air = ndimage.binary_erosion(~body, iterations=3)
    sigma = float(image[air].std() / np.sqrt(2 - np.pi / 2))
    energy = float(sum(g[body] ** 2 for g in np.gradient(image)).mean())
    return sigma, 1.5 * sigma ** 2 / energy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", type=Path, help="a flat imagesTr folder of <case>_<pppp>.nii.gz")
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--phase", type=int, default=5, help="the phase whose gradient energy is split")
    args = parser.parse_args()
    first = phase_file_name("", 0)  # _0000.nii.gz
    cases = sorted({p.name.removesuffix(first) for p in args.images.glob(phase_file_name("*", 0))})[:args.cases]
    shares = []
    for case in cases:
        sigma, share = noise_share([args.images / phase_file_name(case, p) for p in (0, 1)],
                                   args.images / phase_file_name(case, args.phase))
        shares.append(share)
        print(f"{case}: noise sigma {sigma:.4g}, share of phase {args.phase}'s gradient energy {share:.3f}")
    print(f"mean share over {len(shares)} cases: {np.mean(shares):.3f} (a noise-free prediction of the expected "
          f"image would score about {1 - np.mean(shares):.2f} sharpness)")


if __name__ == "__main__":
    main()
