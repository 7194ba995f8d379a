"""The manual's figure of ``iterdce_predict --uncertainty`` outputs: for one case, the real and the synthesized
last phase through its lesion, the interval's width, where the real value falls outside the interval, and the
lesion's predicted curve with its band, the real curve and the curve-type probabilities.

    python -m benchmarks.uncertainty_figure --pred unc_check/preset_bf16_seed0/pred_D \
        --raw cs_eval_D/raw/Dataset903_SiteD --case phantom_001 --out documentation/figures/uncertainty_outputs.png
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from iterdce.core.file_names import bound_file_name, case_file_name, kinetics_json_name, phase_file_name  # noqa: E402
from iterdce.core.folder_names import IMAGES_TR, LABELS_TR  # noqa: E402
from iterdce.dataset.layout import discover_cases  # noqa: E402
from iterdce.dataset.nifti_io import read_image  # noqa: E402


def draw(pred: Path, raw: Path, case_id: str, out: Path) -> None:
    """Write the figure of ``case_id`` to ``out`` (PNG)."""
    kinetics = json.loads((pred / kinetics_json_name(case_id)).read_text())
    last = max(kinetics["synthesized_phases"])
    real = read_image(raw / IMAGES_TR / phase_file_name(case_id, last))[0]
    synthesized = read_image(pred / phase_file_name(case_id, last))[0]
    lower = read_image(pred / bound_file_name(case_id, last, upper=False))[0]
    upper = read_image(pred / bound_file_name(case_id, last, upper=True))[0]
    labels = read_image(raw / LABELS_TR / case_file_name(case_id))[0]
    lesion = kinetics["lesions"][0]
    mask = labels == lesion["label"]
    z = int(np.argwhere(mask)[:, 2].mean())
    files = discover_cases(raw).cases[case_id]
    times = kinetics["phase_times_s"]
    real_curve = [float(read_image(files.phase_files[p])[0][mask].mean()) for p in range(len(times))]
    low, high = np.percentile(real[..., z], [1, 99])
    fig, axes = plt.subplots(1, 5, figsize=(17, 3.6))
    panels = [(real, "real last phase", "gray", (low, high)), (synthesized, "synthesized", "gray", (low, high)),
              (upper - lower, "interval width (upper - lower)", "magma", None),
              (((real < lower) | (real > upper)).astype(float), "real value outside the interval", "Reds", (0, 1))]
    for axis, (image, title, cmap, limits) in zip(axes, panels):
        shown = axis.imshow(np.flipud(np.rot90(image[..., z])), cmap=cmap, vmin=limits[0] if limits else None,
                            vmax=limits[1] if limits else None)
        axis.contour(np.flipud(np.rot90(mask[..., z])), levels=[0.5], colors="cyan", linewidths=0.6)
        axis.set_title(title, fontsize=9)
        axis.axis("off")
        if cmap == "magma":
            fig.colorbar(shown, ax=axis, fraction=0.046)
    axis = axes[4]
    first = len(times) - len(lesion["lower"])
    axis.plot(times, real_curve, "k-o", markersize=3, label="real lesion mean")
    axis.plot(times, lesion["curve"], "r--o", markersize=3, label="predicted")
    axis.fill_between(times[first:], lesion["lower"], lesion["upper"], color="red", alpha=0.2,
                      label=f"{kinetics['coverage']:.0%} band")
    probabilities = lesion["probabilities"] or {}
    axis.set_title("P: " + ", ".join(f"{k} {v:.2f}" for k, v in probabilities.items()), fontsize=8)
    axis.set_xlabel("time after injection (s)", fontsize=8)
    axis.legend(fontsize=7)
    fig.suptitle(f"{case_id}: iterdce_predict --uncertainty --lesion-masks (slice {z}, lesion outlined)", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pred", type=Path, required=True, help="an iterdce_predict --uncertainty output folder")
    parser.add_argument("--raw", type=Path, required=True, help="the raw dataset with the real phases and labels")
    parser.add_argument("--case", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    draw(args.pred, args.raw, args.case, args.out)


if __name__ == "__main__":
    main()
