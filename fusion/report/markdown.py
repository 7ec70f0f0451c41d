"""report.md: the metric table (value and bootstrap CI) and the figures, readable on its own."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fusion.evaluation.core import Evaluation
from fusion.report.figures import MISSINGNESS_CAPTION


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
    notes: Sequence[str] = (),
) -> Path:
    lines = [
        f"# {title}",
        "",
        f"{evaluation.n_patients} patients evaluated; "
        f"{level:.0%} CIs: percentile bootstrap over patients, {n_bootstrap} replicates "
        "(replicates where a metric is undefined are skipped).",
        "",
        *(line for note in notes for line in (note, "")),
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
        lines += evaluation.notes.get(name, [])
        lines.append("")
        for figure in evaluation.figures.get(name, []):
            if figure.name in figures:
                lines += [f"![{figure.name}]({figures[figure.name].name})", "", figure.caption, ""]
    if "missingness" in figures:
        lines += [
            "## Missing modalities",
            "",
            f"![missingness]({figures['missingness'].name})",
            "",
            MISSINGNESS_CAPTION,
            "",
        ]
    path.write_text("\n".join(lines))
    return path
