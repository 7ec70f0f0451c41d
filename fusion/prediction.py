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

from fusion.checkpoint import (
    PROVENANCE_KEY,
    load_checkpoint,
    load_model,
    seen_in_training,
    stored_references,
)
from fusion.data.cohort import Cohort
from fusion.errors import ConfigError
from fusion.evaluation import EvaluationSettings, has_labels, labels_by_head
from fusion.pipeline import build_datamodule
from fusion.prediction_table import add_survival_columns, predict_frame, write_predictions
from fusion.provenance import file_sha256
from fusion.report.patient_pages.from_prediction import check_report_options, write_prediction_pages
from fusion.retrieval.neighbours import check_k, neighbour_tables, write_neighbour_tables
from fusion.retrieval.reference_set import ReferenceSet, stored_reference_set
from fusion.retrieval.summaries import summary_horizons
from fusion.scoring import evaluate_and_report, records_provenance, write_metrics

log = logging.getLogger(__name__)
#: the metric-key prefix and records key of a scored manifest: "predict/grade_auroc", ...
STAGE = "predict"
#: the similar patients a patient page shows when retrieval.k is not set
PAGE_NEIGHBOURS = 10


def predict_manifest(
    ckpt_path: str | Path,
    manifest: str | Path,
    output: str | Path | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    accelerator: str = "auto",
    evaluation: Any | None = None,
    report_dir: str | Path | None = None,
    retrieval_k: int | None = None,
    report: str | None = None,
    explanations: str | Path | None = None,
) -> pd.DataFrame:
    """Predict every patient of `manifest`; write `output` (CSV) if given and return the table.

    The table: patient_id, every head's prediction columns, `seen_in_training` (True when the
    patient was in the checkpoint's training split; empty for a checkpoint without that record), each
    survival head's ``<name>_prob_<h>`` and ``<name>_median`` (from the checkpoint's training reference)
    and `model_id` (the checkpoint file's SHA-256); `output` gets a ``.provenance.json`` sidecar.
    With `evaluation` settings (the `evaluation:` config block) and labels in the manifest, also
    score the predictions: `metrics.json` (predict/ keys + ci95; info.n_seen_in_training) and
    `report/` in `report_dir` (default: beside `output`). Survival metrics that need the training split
    (Uno's C, td-AUC, Brier) use the reference stored in the checkpoint that training evaluated.
    `retrieval_k`: also write each patient's `retrieval_k` most similar training patients beside `output`
    (``neighbours.csv``, ``neighbour_summary.csv``; `fusion.retrieval`), from the reference set fusion-train
    stored beside the checkpoint.
    `report="patients"`: one HTML page per patient in `report/patients/` beside `output`, with the
    fusion-explain folder `explanations` when given (`fusion.report.patient_pages`).
    """
    check_report_options(report, explanations, output)
    settings = None if evaluation is None else EvaluationSettings.from_config(evaluation)
    checkpoint = load_checkpoint(ckpt_path)
    cfg, modalities, heads, lit = load_model(checkpoint)
    retrieval_k, reference_set = _retrieval(ckpt_path, checkpoint, retrieval_k, report)

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
    frame = add_survival_columns(frame, heads, stored_references(checkpoint), _horizons(settings, cfg))
    provenance = _provenance(checkpoint, ckpt_path, Path(manifest), datamodule.records, modalities)
    frame["model_id"] = provenance["model_id"]
    if output is not None:
        write_predictions(output, frame, provenance)
    neighbours = summary = None
    if reference_set is not None and retrieval_k:
        neighbours, summary = neighbour_tables(
            lit.model,
            heads,
            datamodule.predict_dataloader(),
            reference_set,
            retrieval_k,
            summary_horizons(heads, stored_references(checkpoint), _horizons(settings, cfg)),
            patient_ids=cohort.patient_ids,
        )
        write_neighbour_tables(Path(output or ".").parent, neighbours, summary)
    scored = datamodule.records.get(STAGE, [])
    if report is not None and output is not None:  # report=patients (checked above)
        pages = write_prediction_pages(
            output,
            frame,
            heads,
            list(modalities),
            scored,
            stored_references(checkpoint),
            provenance,
            explanations,
            neighbours,
            summary,
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
        write_metrics(folder / "metrics.json", result.metrics, result.ci95, info, provenance)
        log.info("labelled manifest: metrics (%s/ keys) and report written to %s", STAGE, folder)
    return frame


def _retrieval(
    ckpt_path: str | Path, checkpoint: dict, k: int | None, report: str | None
) -> tuple[int | None, ReferenceSet | None]:
    """The neighbours to find and the reference set to find them in, checked before anything is predicted.

    `k` given: the stored reference set must exist and hold more than k patients. `k` unset with
    ``report=patients``: the pages show the `PAGE_NEIGHBOURS` nearest training patients when the checkpoint
    has a reference set (fewer when it is smaller), and say so when it has none.
    """
    if k:
        reference_set = stored_reference_set(ckpt_path, checkpoint)
        check_k(k, reference_set)
        return k, reference_set
    if k is None and report is not None:
        try:
            reference_set = stored_reference_set(ckpt_path, checkpoint)
        except ConfigError as error:
            log.warning("patient pages without similar patients: %s", error)
            return None, None
        return min(PAGE_NEIGHBOURS, len(reference_set.patient_ids) - 1), reference_set
    return None, None


def _horizons(settings: EvaluationSettings | None, cfg: Any) -> list[float] | None:
    """The survival probabilities' horizons: this run's ``evaluation.horizons``, else the training run's."""
    if settings is not None and settings.horizons:
        return settings.horizons
    stored = (cfg.get("evaluation") or {}).get("horizons")
    return [float(h) for h in stored] if stored else None


def _provenance(
    checkpoint: dict, ckpt_path: str | Path, manifest: Path, records: Any, modalities: Any
) -> dict[str, Any]:
    """This run's provenance (the model's config, this manifest and its input files), the checkpoint's
    SHA-256 as `model_id` and the provenance the checkpoint was trained with (``model``; None for a
    checkpoint written before fusion stored it)."""
    return records_provenance(
        checkpoint["fusion"]["config"],
        manifest,
        records,
        modalities,
        model_id=file_sha256(Path(ckpt_path).expanduser()),
        model=checkpoint["fusion"].get(PROVENANCE_KEY),
    )


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
