"""Glue for `fusion-train` and `fusion-predict`: evaluate a prediction table, write the report,
send it to W&B. Kept here so training.py and prediction.py stay short."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd

from fusion.data.records import PatientRecord
from fusion.evaluation.core import Evaluation, evaluate, fit_references, labels_by_head, missingness
from fusion.evaluation.reference import SurvivalReference, store_in_checkpoint
from fusion.evaluation.settings import EvaluationSettings
from fusion.heads.base import Head
from fusion.heads.grade import GradeHead
from fusion.heads.survival import SurvivalHead
from fusion.predictions import predict_frame

log = logging.getLogger(__name__)


def labels_frame(records: list[PatientRecord], heads: dict[str, Head]) -> pd.DataFrame:
    """patient_id and each head's label in readable form (grade class, survival time/event, response)."""
    rows = []
    for record in records:
        row: dict[str, Any] = {"patient_id": record.patient_id}
        for name, head in heads.items():
            label = record.labels.get(name)
            if isinstance(head, SurvivalHead):
                row[f"{name}_time"], row[f"{name}_event"] = (None, None) if label is None else label
            elif isinstance(head, GradeHead):
                row[f"{name}_label"] = None if label is None else head.classes[label]
            else:
                row[f"{name}_label"] = label
        rows.append(row)
    return pd.DataFrame(rows)


def evaluate_and_report(
    frame: pd.DataFrame,
    records: dict[str, list[PatientRecord]],
    stage_split: str,
    heads: dict[str, Head],
    settings: EvaluationSettings,
    references: dict[str, SurvivalReference],
    output_dir: Path,
    loggers: list[Any] = (),
) -> Evaluation:
    """Metrics + CIs of `frame` against the labels of `records[stage_split]`; the report folder
    (unless settings.report is off) and W&B figures/tables when a WandbLogger is present."""
    from fusion.report import metric_rows, write_report
    from fusion.report.wandb import log_report

    evaluation = evaluate(frame, labels_by_head(records[stage_split], heads), heads, settings, references)
    if settings.report:
        report = write_report(
            output_dir / "report", evaluation, missingness(records), settings.n_bootstrap, settings.level
        )
        table = frame.merge(labels_frame(records[stage_split], heads), on="patient_id", how="left")
        log_report(list(loggers), report.figures, table, metric_rows(evaluation))
        log.info("report written to %s", report.markdown)
    return evaluation


def evaluate_training_run(
    trainer: L.Trainer,
    lit: L.LightningModule,
    datamodule: Any,
    heads: dict[str, Head],
    settings: EvaluationSettings,
    test_frame: pd.DataFrame,
    ckpt: str | None,
    output_dir: Path,
) -> Evaluation | None:
    """Fit the survival references on the training split's predictions (the evaluated checkpoint,
    no shuffling, no augmentation), store them in that checkpoint, then evaluate the test split.
    Every rank must call it under DDP (predicting is collective); None on ranks other than 0."""
    references: dict[str, SurvivalReference] = {}
    train = datamodule.records.get("train")
    if train and any(isinstance(h, SurvivalHead) for h in heads.values()):
        train_frame = predict_frame(trainer, lit, datamodule.loader("train"), ckpt)
        references = fit_references(train_frame, labels_by_head(train, heads), heads)
        if ckpt and references and trainer.is_global_zero:
            store_in_checkpoint(ckpt, references)
    if not trainer.is_global_zero:  # one report per run: rank 0 writes it (every rank holds all rows)
        return None
    return evaluate_and_report(
        test_frame, datamodule.records, "test", heads, settings, references, output_dir, trainer.loggers
    )


def write_metrics(path: Path, metrics: dict[str, Any], ci95: dict[str, list[float]], info: dict) -> None:
    """metrics.json: scalar "<stage>/<metric>" keys, then "ci95" and "info"."""
    path.write_text(json.dumps({**metrics, "ci95": ci95, "info": info}, indent=2))
