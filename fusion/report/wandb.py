"""Send the report to W&B when a WandbLogger is among the trainer's loggers (offline mode works):
the figures as images and the metric table; the per-patient predictions table (with labels) only when
asked for (`evaluation.wandb_table`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

log = logging.getLogger(__name__)


def wandb_runs(loggers: list[Any]) -> list[Any]:
    """The live W&B runs of the given Lightning loggers (none when W&B is not used)."""
    from lightning.pytorch.loggers import WandbLogger

    return [lg.experiment for lg in loggers if isinstance(lg, WandbLogger)]


def log_report(
    loggers: list[Any],
    figures: dict[str, Path],
    predictions: pd.DataFrame | None,
    metric_rows: list[dict[str, Any]],
    stage: str = "test",
) -> int:
    """Log to every W&B run; return how many runs got it. `predictions` (None: no per-patient table) must
    hold only patient_id (as given in the manifest), prediction columns and labels — no input value."""
    runs = wandb_runs(loggers)
    if not runs:
        return 0
    import wandb

    payload: dict[str, Any] = {
        f"{stage}_report/{name}": wandb.Image(str(path)) for name, path in figures.items()
    }
    if predictions is not None:
        payload[f"{stage}_predictions"] = wandb.Table(
            dataframe=predictions.astype(object).where(predictions.notna(), None)
        )
    metrics = pd.DataFrame(metric_rows, columns=["metric", "value", "ci_low", "ci_high"])
    payload[f"{stage}_metrics"] = wandb.Table(dataframe=metrics.astype(object).where(metrics.notna(), None))
    for run in runs:
        run.log(payload)
        for row in metric_rows:
            if row["value"] is not None:
                run.summary[row["metric"]] = row["value"]
            if row["ci_low"] is not None:
                run.summary[f"{row['metric']}_ci95"] = [row["ci_low"], row["ci_high"]]
    tables = "metric and prediction tables" if predictions is not None else "metric table"
    log.info("logged %d figures and the %s %s to W&B", len(figures), stage, tables)
    return len(runs)


def log_embeddings(loggers: list[Any], embeddings: pd.DataFrame, stage: str = "test") -> int:
    """Log the patients' fused embeddings (patient_id, label columns when given, emb_0 .. emb_<d-1>) as the
    W&B table ``<stage>_embeddings`` (W&B's projector view plots it); return how many runs got it."""
    runs = wandb_runs(loggers)
    if not runs:
        return 0
    import wandb

    table = wandb.Table(dataframe=embeddings.astype(object).where(embeddings.notna(), None))
    for run in runs:
        run.log({f"{stage}_embeddings": table})
    log.info("logged the %d %s patients' fused embeddings to W&B", len(embeddings), stage)
    return len(runs)
