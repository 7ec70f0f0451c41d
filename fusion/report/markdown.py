"""report.md: the metric table (value and bootstrap CI) and the figures, readable on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fusion.evaluation.core import Evaluation

CAPTIONS = {
    "roc": "ROC curve(s) on the test patients with this label.",
    "confusion": "Confusion matrix: rows are the true class, columns the predicted (arg-max) class.",
    "calibration": "Reliability curve: observed responder fraction vs mean predicted probability per bin.",
    "km": "Kaplan–Meier curves of the predicted risk groups (shaded: 95% CI; ticks: censored patients).",
    "missingness": "Fraction of each split's patients that have each modality.",
}


def metric_rows(evaluation: Evaluation) -> list[dict[str, Any]]:
    """One row per metric: key, value, CI low, CI high (None when undefined)."""
    rows = []
    for key, value in evaluation.metrics.items():
        ci = evaluation.ci95.get(key)
        rows.append(
            {"metric": key, "value": value, "ci_low": ci[0] if ci else None, "ci_high": ci[1] if ci else None}
        )
    return rows


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def write_markdown(
    path: Path,
    evaluation: Evaluation,
    figures: dict[str, Path],
    n_bootstrap: int,
    level: float,
    title: str = "Evaluation report",
) -> Path:
    lines = [
        f"# {title}",
        "",
        f"{evaluation.n_patients} patients evaluated; "
        f"{level:.0%} CIs: percentile bootstrap over patients, {n_bootstrap} replicates "
        "(replicates where a metric is undefined are skipped).",
        "",
        "## Metrics",
        "",
        "| metric | value | 95% CI |",
        "|---|---|---|",
    ]
    for row in metric_rows(evaluation):
        ci = "" if row["ci_low"] is None else f"[{_num(row['ci_low'])}, {_num(row['ci_high'])}]"
        lines.append(f"| `{row['metric']}` | {_num(row['value'])} | {ci} |")
    lines.append("")
    for name, art in evaluation.heads.items():
        lines += [f"## {name}", "", f"Patients with a label: {art.get('n', 0)}."]
        lines += _survival_notes(art) if art["kind"] == "survival" else []
        lines.append("")
        for fig, path_ in figures.items():
            if fig.endswith(f"_{name}"):
                lines += [f"![{fig}]({path_.name})", "", CAPTIONS[fig.split("_")[0]], ""]
    if "missingness" in figures:
        lines += [
            "## Missing modalities",
            "",
            f"![missingness]({figures['missingness'].name})",
            "",
            CAPTIONS["missingness"],
            "",
        ]
    path.write_text("\n".join(lines))
    return path


def _survival_notes(art: dict[str, Any]) -> list[str]:
    notes = [f"Events: {art.get('n_events', 0)}."]
    if art.get("note"):
        notes.append(art["note"] + ".")
    if art.get("horizons"):
        horizons = ", ".join(f"{k} = {v:.4g}" for k, v in art["horizons"].items())
        notes.append(f"Horizons (cohort time unit): {horizons}; Uno's C is truncated at the last one.")
    if art.get("ibs_range"):
        notes.append(f"Integrated Brier score over [{art['ibs_range'][0]:.4g}, {art['ibs_range'][1]:.4g}].")
    groups = art.get("risk_groups")
    if groups:
        p = groups["logrank_p"]
        notes.append(
            f"Risk groups cut at {', '.join(f'{c:.3g}' for c in groups['cutoffs'])} "
            f"({groups['cutoff_source']} risk quantiles); log-rank p = {'n/a' if p is None else f'{p:.3g}'}."
        )
    return [" ".join(notes)]
