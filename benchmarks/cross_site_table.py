"""The cross-site benchmark's table: each run's rows read from its evaluation summary, mean and spread over
seeds per variant, and the markdown table of results.md."""
from __future__ import annotations

from benchmarks.common import markdown_table, mean_std

COLUMNS = ("PSNR last", "SSIM last", "sharpness last", "EE last", "SCC", "type acc.")


def row_values(summary: dict) -> dict[str, dict[str, float | None]]:
    """Per method: PSNR, SSIM, sharpness and enhancement error at the last phase, SCC, curve-type accuracy."""
    out = {}
    for method, entry in summary["methods"].items():
        last = entry["per_phase"][max(entry["per_phase"], key=int)]
        kinetics = entry.get("kinetics", {})
        out[method] = {"psnr_last": last["psnr"]["mean"], "ssim_last": last["ssim"]["mean"],
                       "sharpness_last": last.get("sharpness", {}).get("mean"),
                       "ee_last": kinetics.get("last_phase_enhancement_error", {}).get("mean"),
                       "scc": kinetics.get("scc", {}).get("mean"),
                       "type_acc": kinetics.get("curve_type_accuracy")}
    return out


def aggregate(records: list[dict]) -> dict:
    """Mean and std over seeds per variant (the baselines, which do not depend on the seed, once).
    Confusion matrices are summed over seeds."""
    done = [r for r in records if "summary" in r]
    table: dict[str, dict] = {}
    for record in done:
        for method, values in row_values(record["summary"]).items():
            entry = table.setdefault(record["variant"] if method == "iterdce" else method,
                                     {**{k: [] for k in values}, "confusion": {}})
            for key, value in values.items():
                entry[key].append(value)
            matrix = record["summary"]["methods"][method].get("kinetics", {}).get("confusion_matrix", {})
            for true, row in matrix.get("rows_true_cols_predicted", {}).items():
                for predicted, count in row.items():
                    key = f"{true}->{predicted}"
                    entry["confusion"][key] = entry["confusion"].get(key, 0) + int(count)
    return {name: {k: v if k == "confusion" else mean_std(v) for k, v in entry.items()}
            for name, entry in table.items()}


def fmt(stats: dict | None, scale: float = 1.0, digits: int = 3) -> str:
    """``mean ± std`` to ``digits`` significant digits (the spread one fewer); n/a for no value."""
    if not stats:
        return "n/a"
    return f"{stats['mean'] * scale:.{digits}g} ± {stats['std'] * scale:.{digits - 1}g}"


def markdown(aggregated: dict) -> str:
    """One row per model and baseline: the last phase's scores, the kinetics, and the number of seeds."""
    rows = [(name, fmt(e["psnr_last"]), fmt(e.get("ssim_last")), fmt(e.get("sharpness_last")), fmt(e["ee_last"]),
             fmt(e["scc"]), f"{fmt(e['type_acc'], 100)} %", e["psnr_last"]["n"] if e["psnr_last"] else 0)
            for name, e in aggregated.items()]
    return markdown_table(("model", *COLUMNS, "n"), rows)
