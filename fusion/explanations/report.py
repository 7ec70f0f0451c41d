"""report.md of an explanation run, its contribution figure, and the same tables in W&B.

Only cohort-level numbers go here (names, means, counts): no patient's input value, so the report and the
W&B run may be shared. The per-patient files sit beside it and are listed, not copied.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

log = logging.getLogger(__name__)
#: features shown per head and modality in report.md (top_features.csv has them all)
REPORT_TOP = 10


def contribution_figure(summary: pd.DataFrame, path: Path) -> Path | None:
    """Grouped bars: mean |contribution| of each modality, one group per head."""
    if summary.empty:
        return None
    table = summary.pivot(index="modality", columns="head", values="mean_abs_contribution").fillna(0.0)
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(table.index) * max(1, len(table.columns)) / 2, 4.2))
    table.plot.bar(ax=ax, rot=0)
    ax.set_ylabel("mean |contribution|")
    ax.set_xlabel("")
    ax.set_title(f"Modality contributions (n = {int(summary['n_patients'].max())} patients)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _markdown(frame: pd.DataFrame) -> str:
    rows = [list(frame.columns)] + [[_cell(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(str(c) for c in rows[0]) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4g}"
    return str(value)


def write_report(
    folder: Path,
    info: dict[str, Any],
    base: pd.DataFrame,
    summary: pd.DataFrame,
    top: pd.DataFrame,
    notes: list[str],
) -> Path:
    """report.md (and summary.png) in `folder`; `info`: checkpoint, manifest, n_patients, files."""
    figure = contribution_figure(summary, folder / "summary.png")
    parts = [
        "# Explanations",
        "",
        f"Checkpoint `{info['checkpoint']}`, manifest `{info['manifest']}`: {info['n_patients']} patients, "
        f"heads {', '.join(info['heads'])}.",
        "",
        *[f"- {note}" for note in notes],
        "",
        "## Base value",
        "",
        "Each modality's contribution is its Shapley value: base value + the contributions of a patient's "
        "modalities = the patient's prediction. The base value is the value of no modality at all: "
        f"{info['base_source']}.",
        "",
        _markdown(base),
        "",
        "## Modality contributions (mean |contribution| over the patients who have the modality)",
        "",
    ]
    if figure is not None:
        parts += [f"![modality contributions]({figure.name})", ""]
    parts += [_markdown(summary) if not summary.empty else "No patient had a modality to explain.", ""]
    if not top.empty:
        parts += [f"## Top features (top {REPORT_TOP} per head and modality; all in top_features.csv)", ""]
        parts += [
            "`mean_attribution`: the signed mean of the head's primary target (grade: the highest grade's "
            "probability; survival: the log-hazard; response: the logit), i.e. which way the feature pushes.",
            "",
        ]
        shown = top[top["rank"] <= REPORT_TOP]
        for (head, modality), rows in shown.groupby(["head", "modality"], sort=False):
            parts += [f"### {head}: {modality}", "", _markdown(rows.drop(columns=["head", "modality"])), ""]
    parts += ["## Files", "", *[f"- `{name}`: {what}" for name, what in info["files"].items()], ""]
    path = folder / "report.md"
    path.write_text("\n".join(parts))
    return path


def log_to_wandb(
    settings: Any, folder: Path, summary: pd.DataFrame, top: pd.DataFrame, info: dict[str, Any]
) -> bool:
    """The summary and top-feature tables (and the figure) to a new W&B run when ``wandb.enabled``; offline
    unless ``wandb.offline=false``. Returns whether a run was logged."""
    if not settings or not settings.get("enabled", False):
        return False
    import wandb

    run = wandb.init(
        project=settings.get("project", "fusion"),
        name=settings.get("name", "explain"),
        dir=str(folder),
        mode="offline" if settings.get("offline", True) else "online",
        job_type="explain",
        config={
            "checkpoint": str(info["checkpoint"]),
            "heads": info["heads"],
            "n_patients": info["n_patients"],
        },
        settings=wandb.Settings(silent=True),
    )
    payload: dict[str, Any] = {
        "explain/summary": wandb.Table(dataframe=summary.astype(object).where(summary.notna(), None)),
        "explain/top_features": wandb.Table(dataframe=top.astype(object).where(top.notna(), None)),
    }
    if (folder / "summary.png").exists():
        payload["explain/contributions"] = wandb.Image(str(folder / "summary.png"))
    run.log(payload)
    run.finish()
    log.info(
        "logged the explanation tables to W&B (%s)", "offline" if settings.get("offline", True) else "online"
    )
    return True
