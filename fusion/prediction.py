"""Predict a manifest with a trained checkpoint: the checkpoint alone rebuilds the pipeline.

A checkpoint holds, beside the weights, the resolved training config and every modality's fitted
state (normalisers, vocabularies; see `fusion.checkpoint`), so prediction needs no access to the
training cohort. Any modality may be missing for any patient; labels are not needed, but when the
manifest has them the predictions are scored and reported as in training, under ``predict/`` keys (not
``test/``: the manifest is whatever the user gave, not the run's held-out split).

A manifest may hold patients the model was trained on; their metrics are optimistic. The checkpoint
keeps salted hashes of its training patients' ids (`fusion.checkpoint.training_patient_hashes`), so
each patient is flagged (`seen_in_training` column), the count is logged as a warning and written to
metrics.json (`info.n_seen_in_training`) and the report. A checkpoint written before those hashes
still predicts; the flag is then empty and the count unknown (None).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd

from fusion.checkpoint import load_checkpoint, load_model, seen_in_training, stored_references
from fusion.data.cohort import Cohort
from fusion.evaluation import EvaluationSettings, has_labels, labels_by_head
from fusion.pipeline import build_datamodule
from fusion.prediction_table import predict_frame
from fusion.report.patient_pages.from_prediction import check_report_options, write_prediction_pages
from fusion.scoring import evaluate_and_report, write_metrics

log = logging.getLogger(__name__)
#: the metric-key prefix and records key of a scored manifest: "predict/grade_auroc", ...
STAGE = "predict"


def predict_manifest(
    ckpt_path: str | Path,
    manifest: str | Path,
    output: str | Path | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    accelerator: str = "auto",
    evaluation: Any | None = None,
    report_dir: str | Path | None = None,
    report: str | None = None,
    explanations: str | Path | None = None,
) -> pd.DataFrame:
    """Predict every patient of `manifest`; write `output` (CSV) if given and return the table.

    The table: patient_id, every head's prediction columns, and `seen_in_training` (True when the
    patient was in the checkpoint's training split; empty for a checkpoint without that record).
    With `evaluation` settings (the `evaluation:` config block) and labels in the manifest, also
    score the predictions: `metrics.json` (predict/ keys + ci95; info.n_seen_in_training) and
    `report/` in `report_dir` (default: beside `output`). Survival metrics that need the training split
    (Uno's C, td-AUC, Brier) use the reference stored in the checkpoint that training evaluated.
    `report="patients"`: one HTML page per patient in `report/patients/` beside `output`, with the
    fusion-explain folder `explanations` when given (`fusion.report.patient_pages`).
    """
    check_report_options(report, explanations, output)
    settings = None if evaluation is None else EvaluationSettings.from_config(evaluation)
    checkpoint = load_checkpoint(ckpt_path)
    cfg, modalities, heads, lit = load_model(checkpoint)

    cohort = Cohort.load(manifest)
    cfg.data.batch_size, cfg.data.num_workers = batch_size, num_workers
    datamodule = build_datamodule(
        cfg, cohort, modalities, heads, splits={STAGE: cohort.patient_ids}, fit_modalities=False
    )
    datamodule.setup("predict")
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    frame = predict_frame(trainer, lit, datamodule.predict_dataloader(), None)
    # patients with none of the model's modalities keep their row, with empty predictions
    frame = frame.set_index("patient_id").reindex(cohort.patient_ids).rename_axis("patient_id").reset_index()
    seen = seen_in_training(checkpoint, cohort.patient_ids)
    frame["seen_in_training"] = seen  # None: an empty column
    warn_seen_in_training(ckpt_path, seen)
    if output is not None:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(output, index=False)
    scored = datamodule.records.get(STAGE, [])
    if report is not None and output is not None:  # report=patients (checked above)
        pages = write_prediction_pages(
            output,
            frame,
            heads,
            list(modalities),
            scored,
            stored_references(checkpoint),
            explanations,
        )
        log.info("patient pages: %d written to %s", len(pages) - 1, pages[-1].parent)
    if settings is not None and has_labels(labels_by_head(scored, heads)):
        folder = Path(report_dir) if report_dir is not None else Path(output or ".").parent
        folder.mkdir(parents=True, exist_ok=True)
        n_seen = None
        if seen is not None:
            by_id = dict(zip(cohort.patient_ids, seen, strict=True))
            n_seen = sum(by_id[r.patient_id] for r in scored)
        result = evaluate_and_report(
            frame,
            datamodule.records,
            STAGE,
            heads,
            settings,
            stored_references(checkpoint),
            folder,
            notes=[seen_note(n_seen, len(scored))],
        )
        info = {
            "checkpoint": str(ckpt_path),
            "manifest": str(manifest),
            "n_patients": {STAGE: len(scored)},
            "n_seen_in_training": n_seen,
        }
        write_metrics(folder / "metrics.json", result.metrics, result.ci95, info)
        log.info("labelled manifest: metrics (%s/ keys) and report written to %s", STAGE, folder)
    return frame


def warn_seen_in_training(ckpt_path: str | Path, seen: list[bool] | None) -> None:
    """A warning when the manifest holds training patients, or when the checkpoint cannot tell."""
    if seen is None:
        log.warning(
            "%s has no record of its training patients (written before fusion kept one): whether any of "
            "these patients were in its training split is unknown (seen_in_training is left empty)",
            ckpt_path,
        )
    elif any(seen):
        log.warning(
            "%d of the %d manifest patients were in the checkpoint's training split (column "
            "seen_in_training): metrics over them are optimistic, not an estimate for new patients",
            sum(seen),
            len(seen),
        )


def seen_note(n_seen: int | None, n_scored: int) -> str:
    """The report's line on how many of the scored patients the model was trained on."""
    if n_seen is None:
        return (
            "**Training patients: unknown.** The checkpoint predates fusion's record of its training "
            "patients, so whether any of these patients were seen in training cannot be told; if some "
            "were, these metrics are optimistic."
        )
    if n_seen == 0:
        return f"None of these {n_scored} patients were in the checkpoint's training split."
    return (
        f"**{n_seen} of these {n_scored} patients were in the checkpoint's training split** "
        "(`seen_in_training` in predictions.csv): metrics over a set containing training patients are "
        "optimistic, not an estimate of performance on new patients. Score held-out patients only for that."
    )
