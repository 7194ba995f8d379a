"""Pictures of a raw dataset: a phase montage with lesion outlines and the lesions' kinetic curves by type."""
from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from iterdce.core.atomic import write_atomic  # noqa: E402
from iterdce.core.kinetics_rule import classify_curve  # noqa: E402
from iterdce.dataset.case import load_case  # noqa: E402
from iterdce.dataset.layout import discover_cases  # noqa: E402
from iterdce.dataset.schema import load_dataset_json  # noqa: E402

TYPE_COLORS = {"persistent": "tab:blue", "plateau": "tab:orange", "washout": "tab:red", "none": "gray"}


def _declared_types(dataset_dir: Path) -> dict[tuple[str, int], str]:
    path = dataset_dir / "cases.csv"
    if not path.is_file():
        return {}
    with path.open(newline="") as handle:
        return {(row["case"], int(row["lesion"])): row["curve_type"] for row in csv.DictReader(handle)}


def dataset_figures(dataset_dir: Path, out_dir: Path, max_cases: int = 4) -> list[Path]:
    """``montage.png`` (pre and every post-contrast phase through each lesion, outlined) and
    ``kinetic_curves.png`` (every lesion's mean-intensity curve, coloured by its type)."""
    info = load_dataset_json(dataset_dir)
    cases = list(discover_cases(dataset_dir).cases.values())
    declared = _declared_types(dataset_dir)
    shown = [load_case(files, info.phase_times_s) for files in cases[:max_cases]]
    n_phases = max(case.num_phases for case in shown)  # cases of shorter protocols leave their last cells empty
    fig, axes = plt.subplots(len(shown), n_phases, figsize=(1.9 * n_phases, 2.0 * len(shown)), squeeze=False)
    for row, case in enumerate(shown):
        lesion = case.lesion if case.lesion is not None else np.zeros(case.spatial_shape, np.int16)
        z = int(np.argwhere(lesion > 0)[:, 2].mean()) if lesion.any() else case.spatial_shape[2] // 2
        vmin, vmax = np.percentile(case.image[:, :, :, z], [1, 99.5])
        for col in range(n_phases):
            axis = axes[row][col]
            if col >= case.num_phases:
                axis.axis("off")
                continue
            axis.imshow(case.image[col, :, :, z].T, cmap="gray", vmin=vmin, vmax=vmax, origin="lower")
            if lesion[:, :, z].any():
                axis.contour((lesion[:, :, z] > 0).T, levels=[0.5], colors="red", linewidths=0.6)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0 or not np.array_equal(case.times_s, shown[0].times_s):
                axis.set_title("pre" if col == 0 else f"{case.times_s[col]:.0f} s", fontsize=8)
            if col == 0:
                axis.set_ylabel(case.case_id, fontsize=7)
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    montage = out_dir / "montage.png"
    write_atomic(montage, lambda tmp: fig.savefig(tmp, format="png", dpi=80), suffix=".png")
    plt.close(fig)

    fig, axis = plt.subplots(figsize=(6, 4))
    for files in cases:
        case = load_case(files, info.phase_times_s)
        if case.lesion is None:
            continue
        for label in [int(v) for v in np.unique(case.lesion) if v > 0]:
            curve = case.image[:, case.lesion == label].mean(axis=1)
            kind = declared.get((case.case_id, label), classify_curve(curve, case.times_s))
            axis.plot(case.times_s, curve / curve[0], color=TYPE_COLORS[kind], alpha=0.6, linewidth=1)
    for kind, color in TYPE_COLORS.items():
        if kind != "none":
            axis.plot([], [], color=color, label=kind)
    axis.set(xlabel="time after injection (s)", ylabel="lesion mean / pre-contrast", title="lesion kinetic curves")
    axis.legend()
    axis.grid(alpha=0.3)
    fig.tight_layout()
    curves = out_dir / "kinetic_curves.png"
    write_atomic(curves, lambda tmp: fig.savefig(tmp, format="png", dpi=90), suffix=".png")
    plt.close(fig)
    return [montage, curves]
