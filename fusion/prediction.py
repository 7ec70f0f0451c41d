"""Predict a manifest with a trained checkpoint: the checkpoint alone rebuilds the pipeline.

A checkpoint holds, beside the weights, the resolved training config and every modality's fitted
state (normalisers, vocabularies; see `fusion.checkpoint`), so prediction needs no access to the
training cohort. Any modality may be missing for any patient; labels are not needed, but when the
manifest has them the predictions are scored and reported as in training.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd

from fusion.checkpoint import load_checkpoint, load_model, stored_references
from fusion.data.cohort import Cohort
from fusion.evaluation import EvaluationSettings, has_labels, labels_by_head
from fusion.pipeline import build_datamodule
from fusion.prediction_table import predict_frame
from fusion.scoring import evaluate_and_report, write_metrics

log = logging.getLogger(__name__)


def predict_manifest(
    ckpt_path: str | Path,
    manifest: str | Path,
    output: str | Path | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    accelerator: str = "auto",
    evaluation: Any | None = None,
    report_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Predict every patient of `manifest`; write `output` (CSV) if given and return the table.

    With `evaluation` settings (the `evaluation:` config block) and labels in the manifest, also
    score the predictions: `metrics.json` (test/ keys + ci95) and `report/` in `report_dir`
    (default: beside `output`). Survival metrics that need the training split (Uno's C, td-AUC,
    Brier) use the reference stored in the checkpoint that training evaluated (the best one).
    """
    settings = None if evaluation is None else EvaluationSettings.from_config(evaluation)
    checkpoint = load_checkpoint(ckpt_path)
    cfg, modalities, heads, lit = load_model(checkpoint)

    cohort = Cohort.load(manifest)
    cfg.data.batch_size, cfg.data.num_workers = batch_size, num_workers
    datamodule = build_datamodule(
        cfg, cohort, modalities, heads, splits={"predict": cohort.patient_ids}, fit_modalities=False
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
    if output is not None:
        output = Path(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(output, index=False)
    test_records = datamodule.records.get("predict", [])
    if settings is not None and has_labels(labels_by_head(test_records, heads)):
        folder = Path(report_dir) if report_dir is not None else Path(output or ".").parent
        folder.mkdir(parents=True, exist_ok=True)
        result = evaluate_and_report(
            frame, datamodule.records, "predict", heads, settings, stored_references(checkpoint), folder
        )
        info = {"checkpoint": str(ckpt_path), "n_patients": {"test": len(test_records)}}
        write_metrics(folder / "metrics.json", result.metrics, result.ci95, info)
        log.info("labelled manifest: metrics and report written to %s", folder)
    return frame
