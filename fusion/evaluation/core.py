"""Evaluate a prediction table against labels: scalar metrics, bootstrap CIs and report artifacts.

Each head evaluates itself (`Head.evaluate`: its rows, metric functions, figures and notes); this
module only aligns the table with the labels, draws one shared patient resample per replicate for
all heads, and turns each metric function into a point estimate and a percentile CI.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fusion.data.records import PatientRecord
from fusion.heads.base import Head
from fusion.heads.evaluation import EvaluationSettings, Figure
from fusion.metrics.bootstrap import percentile_ci, point, resample_counts

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """metrics: "<stage>/<metric>" -> float or None (undefined); ci95: the same keys -> [low, high];
    heads: head name -> JSON-able artifacts (curves, confusion matrix, risk groups);
    figures, notes, tables: per head, what the report draws, says and writes (see `HeadEvaluation`)."""

    metrics: dict[str, float | None]
    ci95: dict[str, list[float]] = field(default_factory=dict)
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_patients: int = 0
    figures: dict[str, list[Figure]] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    tables: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)


def labels_by_head(records: list[PatientRecord], heads: dict[str, Head]) -> dict[str, dict[str, Any]]:
    """head name -> {patient_id: parsed label or None}."""
    return {h: {r.patient_id: r.labels.get(h) for r in records} for h in heads}


def has_labels(labels: dict[str, dict[str, Any]]) -> bool:
    return any(v is not None for per_head in labels.values() for v in per_head.values())


def head_inputs(frame: pd.DataFrame, labels: dict[str, Any], head: Head) -> tuple[dict[str, np.ndarray], Any]:
    """The head's prediction columns of `frame` and its label tensor, row-aligned with `frame`
    (a patient without a label, or absent from `labels`, gets the head's unknown sentinel)."""
    predictions = {c: frame[c].to_numpy(float) for c in head.prediction_columns}
    tensor = head.label_tensor([labels.get(str(p)) for p in frame["patient_id"]])
    return predictions, tensor


def evaluate(
    frame: pd.DataFrame,
    labels: dict[str, dict[str, Any]],
    heads: dict[str, Head],
    settings: EvaluationSettings,
    references: dict[str, dict[str, Any]] | None = None,
    stage: str = "test",
) -> Evaluation:
    """Score every head on the patients that have its label; CIs from one shared patient bootstrap.

    `references`: head name -> what `Head.fit_reference` returned on the training split.
    """
    references = references or {}
    frame = frame.reset_index(drop=True)
    counts = resample_counts(len(frame), settings.n_bootstrap, settings.seed)
    result = Evaluation(metrics={}, n_patients=len(frame))
    for name, head in heads.items():
        missing = [c for c in head.prediction_columns if c not in frame.columns]
        if missing:
            log.warning("head '%s': no prediction column(s) %s in the table; not evaluated", name, missing)
            continue
        predictions, tensor = head_inputs(frame, labels.get(name, {}), head)
        evaluation = head.evaluate(predictions, tensor, settings, references.get(name), full=True)
        result.heads[name] = evaluation.artifacts
        result.figures[name] = evaluation.figures
        result.notes[name] = evaluation.notes
        result.tables[name] = evaluation.tables
        n = len(evaluation.rows)
        for key, metric in evaluation.metrics.items():
            value = point(metric, n) if n else math.nan
            result.metrics[f"{stage}/{key}"] = None if math.isnan(value) else value
            if settings.n_bootstrap and n and not math.isnan(value):
                ci = percentile_ci(metric, counts[:, evaluation.rows], settings.level)
                if ci is not None:
                    result.ci95[f"{stage}/{key}"] = list(ci)
    return result


def fit_references(
    frame: pd.DataFrame, labels: dict[str, dict[str, Any]], heads: dict[str, Head]
) -> dict[str, dict[str, Any]]:
    """head name -> `Head.fit_reference` on training-split predictions and labels (heads that need none,
    or whose reference cannot be fitted, are left out with a warning naming why)."""
    references = {}
    for name, head in heads.items():
        if any(c not in frame.columns for c in head.prediction_columns):
            continue
        predictions, tensor = head_inputs(frame, labels.get(name, {}), head)
        try:
            reference = head.fit_reference(predictions, tensor)
        except ValueError as err:
            log.warning("head '%s': %s; the metrics that need the training split are skipped", name, err)
            continue
        if reference is not None:
            references[name] = reference
    return references


def missingness(records: dict[str, list[PatientRecord]]) -> dict[str, dict[str, float]]:
    """ "split (n=N)" -> modality -> fraction of the split's patients that have it."""
    table: dict[str, dict[str, float]] = {}
    for split, recs in records.items():
        if recs:
            modalities = list(recs[0].refs)
            table[f"{split} (n={len(recs)})"] = {
                m: float(np.mean([r.refs.get(m) is not None for r in recs])) for m in modalities
            }
    return table
