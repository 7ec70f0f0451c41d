"""Score a run's predictions: metrics with CIs, `metrics.json`, the report folder and its W&B copy.

Shared by `fusion-train` (its test split) and `fusion-predict` (a labelled manifest), so both write
the same files the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd

from fusion.checkpoint import store_references
from fusion.data.records import PatientRecord
from fusion.evaluation import (
    Evaluation,
    EvaluationSettings,
    evaluate,
    fit_references,
    labels_by_head,
    missingness,
)
from fusion.fail_soft import optional_step
from fusion.heads.base import Head
from fusion.prediction_table import predict_frame
from fusion.provenance import referenced_files, run_provenance
from fusion.report import metric_rows, write_report
from fusion.report.wandb import log_report

log = logging.getLogger(__name__)


def labels_frame(records: list[PatientRecord], heads: dict[str, Head]) -> pd.DataFrame:
    """patient_id and each head's label in readable form (`Head.label_columns`)."""
    rows = []
    for record in records:
        row: dict[str, Any] = {"patient_id": record.patient_id}
        for name, head in heads.items():
            row.update(head.label_columns(record.labels.get(name)))
        rows.append(row)
    return pd.DataFrame(rows)


def evaluate_and_report(
    frame: pd.DataFrame,
    records: dict[str, list[PatientRecord]],
    stage_split: str,
    heads: dict[str, Head],
    settings: EvaluationSettings,
    references: dict[str, dict[str, Any]],
    output_dir: Path,
    loggers: Sequence[Any] = (),
    notes: Sequence[str] = (),
) -> Evaluation:
    """Metrics + CIs of `frame` against the labels of `records[stage_split]`, keyed
    ``"<stage_split>/<metric>"`` (``test/`` for fusion-train, ``predict/`` for fusion-predict); the report
    folder (unless settings.report is off; `notes`: lines report.md shows under its first paragraph)
    and W&B figures and metric table when a WandbLogger is present (the per-patient predictions table
    with labels only with `settings.wandb_table`)."""
    labels = labels_by_head(records[stage_split], heads)
    evaluation = evaluate(frame, labels, heads, settings, references, stage=stage_split)
    if settings.report:
        with optional_step("report"):  # the metrics are the run's result; the report is optional
            report = write_report(
                output_dir / "report",
                evaluation,
                missingness(records),
                settings.n_bootstrap,
                settings.level,
                stage=stage_split,
                notes=notes,
            )
            log.info("report written to %s", report.markdown)
            with optional_step("W&B report tables"):
                table = None  # per-patient labels are patient values: only on request
                if settings.wandb_table:
                    table = frame.merge(
                        labels_frame(records[stage_split], heads), on="patient_id", how="left"
                    )
                log_report(list(loggers), report.figures, table, metric_rows(evaluation), stage=stage_split)
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
    """Fit the heads' references on the training split's predictions (the evaluated checkpoint, no
    shuffling, no augmentation), store them in that checkpoint, then evaluate the test split.
    Every rank must call it under DDP (predicting is collective); None on ranks other than 0."""
    references: dict[str, dict[str, Any]] = {}
    train = datamodule.records.get("train")
    # predicting the training split costs a pass over it: only when some head fits a reference from it
    if train and any(type(h).fit_reference is not Head.fit_reference for h in heads.values()):
        train_frame = predict_frame(trainer, lit, datamodule.loader("train"), ckpt)
        references = fit_references(train_frame, labels_by_head(train, heads), heads)
        if ckpt and references and trainer.is_global_zero:
            store_references(ckpt, references)
    if not trainer.is_global_zero:  # one report per run: rank 0 writes it (every rank holds all rows)
        return None
    return evaluate_and_report(
        test_frame, datamodule.records, "test", heads, settings, references, output_dir, trainer.loggers
    )


def write_metrics(
    path: Path,
    metrics: dict[str, Any],
    ci95: dict[str, list[float]],
    info: dict,
    provenance: dict[str, Any] | None = None,
) -> None:
    """metrics.json: scalar "<stage>/<metric>" keys, then "ci95", "info" and "provenance" (when given)."""
    extra = {} if provenance is None else {"provenance": provenance}
    path.write_text(json.dumps({**metrics, "ci95": ci95, "info": info, **extra}, indent=2, default=str))


def records_provenance(
    cfg_resolved: dict[str, Any],
    manifest: Path,
    records: Mapping[str, Sequence[PatientRecord]],
    modalities: Mapping[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """`fusion.provenance.run_provenance` of a run over `records` (split -> patients): its input files are
    every file the patients' modality references name plus the modalities' tables (``table_path``)."""
    refs: list[Any] = [r.refs for recs in records.values() for r in recs]
    tables = [getattr(m, "table_path", None) for m in modalities.values()]
    files = referenced_files([*refs, *(Path(t) for t in tables if t is not None)])
    n_patients = {split: len(recs) for split, recs in records.items()}
    return run_provenance(cfg_resolved, manifest, files, n_patients, **extra)
