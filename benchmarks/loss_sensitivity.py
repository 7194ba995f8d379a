"""How much does each loss term reward getting the lesion enhancement right?

For lesion-centred training patches of a preprocessed dataset, start from the copy-last prediction (what a
zero-initialised residual network outputs) and compare three predictions per target phase:

- copy-last (the starting point),
- copy-last with each lesion's mean intensity corrected to the true mean (exactly what the enhancement
  error measures, nothing else),
- the true phase (everything right).

For each loss term the "lesion share" is (L(copy) - L(lesion corrected)) / (L(copy) - L(true)): the part of
what the term can gain that comes from the lesion enhancement. A term with a small share gives the network
little reason to learn the kinetics that the benchmark scores.

    python -m benchmarks.loss_sensitivity PREPROCESSED_DATASET [--plans plans] [--patches 64]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from iterdce.losses.synthesis import DEFAULT_LOSS_WEIGHTS, SynthesisLoss
from iterdce.preprocessing.pipeline import data_folder
from iterdce.preprocessing.plans_io import load_plans
from iterdce.training.data_loader import PatchSampler

TERMS = ("l1", "ssim", "gradient_difference", "lesion_l1")


def lesion_corrected(copy: torch.Tensor, target: torch.Tensor, lesion: torch.Tensor) -> torch.Tensor:
    """``copy`` with the lesion voxels shifted so their mean equals the target's (per patch)."""
    voxels = lesion.sum(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1)
    shift = ((target - copy) * lesion).sum(dim=(1, 2, 3, 4), keepdim=True) / voxels
    return copy + shift * lesion


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", type=Path, help="preprocessed dataset folder (holds plans.json)")
    parser.add_argument("--plans", default="plans")
    parser.add_argument("--patches", type=int, default=64, help="lesion-centred patches (even)")
    parser.add_argument("--out", type=Path, help="write the table as JSON here")
    args = parser.parse_args()
    plans = load_plans(args.dataset / f"{args.plans}.json")
    splits = json.loads((args.dataset / "splits_final.json").read_text())[0]
    cases = sorted(splits["train"] + splits["val"])
    sampler = PatchSampler(data_folder(args.dataset, args.plans), cases, plans["patch_size"], 2, None, seed=0)
    low, high = plans["intensity_range"]
    weights = {**DEFAULT_LOSS_WEIGHTS, "perceptual": 0.0, "lesion_l1": 1.0}
    loss = SynthesisLoss(weights, high - low)
    n_in = len(plans["input_phases"])
    gains: dict[str, list[list[float]]] = {term: [] for term in TERMS}
    for index in range(args.patches // 2):
        batch = {k: torch.from_numpy(v) for k, v in sampler.batch(index).items() if k != "lesion_centred"}
        keep = batch["lesion"].sum(dim=(1, 2, 3, 4)) > 0
        if not keep.any():
            continue
        data, lesion = batch["data"][keep], batch["lesion"][keep]
        copy = data[:, n_in - 1:n_in]
        for t in range(n_in, data.shape[1]):
            target = data[:, t:t + 1]
            values = {name: loss(prediction, target, lesion=lesion)[1]
                      for name, prediction in (("copy", copy), ("lesion", lesion_corrected(copy, target, lesion)),
                                               ("true", target))}
            for term in TERMS:
                gains[term].append([float(values["copy"][term] - values["lesion"][term]),
                                    float(values["copy"][term] - values["true"][term])])
    rows = {}
    for term, pairs in gains.items():
        lesion_gain, total_gain = np.asarray(pairs).sum(axis=0)
        rows[term] = {"weight_in_paper_loss": DEFAULT_LOSS_WEIGHTS.get(term, 0.0),
                      "copy_minus_true": float(total_gain / len(pairs)),
                      "lesion_share": float(lesion_gain / total_gain) if total_gain > 0 else float("nan")}
    lines = ["| term | paper weight | L(copy) - L(true) per patch and phase | share gained by the lesion mean |",
             "|---|---|---|---|"]
    lines += [f"| {t} | {r['weight_in_paper_loss']} | {r['copy_minus_true']:.4f} | {100 * r['lesion_share']:.1f} % |"
              for t, r in rows.items()]
    print("\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
