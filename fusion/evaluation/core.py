"""Evaluate a prediction table against labels: scalar metrics, bootstrap CIs and report artifacts.

Heads are dispatched on their class (grade, survival, response); each evaluator returns metric
functions of bootstrap counts, so the point estimate and every replicate use the same code.
All heads share one resample of the test patients per replicate.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fusion.data.records import PatientRecord
from fusion.evaluation.base import HeadEvaluation
from fusion.evaluation.classification import evaluate_grade, evaluate_response
from fusion.evaluation.reference import SurvivalReference
from fusion.evaluation.settings import EvaluationSettings
from fusion.evaluation.survival import evaluate_survival
from fusion.heads.base import Head
from fusion.heads.grade import GradeHead
from fusion.heads.response import ResponseHead
from fusion.heads.survival import SurvivalHead
from fusion.metrics.bootstrap import percentile_ci, point, resample_counts

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """metrics: "<stage>/<metric>" -> float or None (undefined); ci95: the same keys -> [low, high];
    heads: head name -> JSON-able artifacts (curves, confusion matrix, risk groups)."""

    metrics: dict[str, float | None]
    ci95: dict[str, list[float]] = field(default_factory=dict)
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_patients: int = 0


def labels_by_head(records: list[PatientRecord], heads: dict[str, Head]) -> dict[str, dict[str, Any]]:
    """head name -> {patient_id: parsed label or None}."""
    return {h: {r.patient_id: r.labels.get(h) for r in records} for h in heads}


def has_labels(labels: dict[str, dict[str, Any]]) -> bool:
    return any(v is not None for per_head in labels.values() for v in per_head.values())


def evaluate(
    frame: pd.DataFrame,
    labels: dict[str, dict[str, Any]],
    heads: dict[str, Head],
    settings: EvaluationSettings,
    references: dict[str, SurvivalReference] | None = None,
    stage: str = "test",
) -> Evaluation:
    """Score every head on the patients that have its label; CIs from one shared patient bootstrap."""
    references = references or {}
    frame = frame.reset_index(drop=True)
    counts = resample_counts(len(frame), settings.n_bootstrap, settings.seed)
    result = Evaluation(metrics={}, n_patients=len(frame))
    for name, head in heads.items():
        evaluation = _evaluate_head(name, head, frame, labels.get(name, {}), settings, references.get(name))
        if evaluation is None:
            continue
        result.heads[name] = evaluation.artifacts
        n = len(evaluation.rows)
        for key, metric in evaluation.metrics.items():
            value = point(metric, n) if n else math.nan
            result.metrics[f"{stage}/{key}"] = None if math.isnan(value) else value
            if settings.n_bootstrap and n and not math.isnan(value):
                ci = percentile_ci(metric, counts[:, evaluation.rows], settings.level)
                if ci is not None:
                    result.ci95[f"{stage}/{key}"] = list(ci)
    return result


def _evaluate_head(
    name: str,
    head: Head,
    frame: pd.DataFrame,
    labels: dict[str, Any],
    settings: EvaluationSettings,
    reference: SurvivalReference | None,
) -> HeadEvaluation | None:
    if isinstance(head, GradeHead):
        return evaluate_grade(name, head.classes, frame, labels)
    if isinstance(head, SurvivalHead):
        return evaluate_survival(name, frame, labels, settings, reference)
    if isinstance(head, ResponseHead):
        return evaluate_response(name, frame, labels, settings)
    log.info("head '%s' (%s): no test-time evaluation for this head type", name, type(head).__name__)
    return None


def fit_references(
    frame: pd.DataFrame, labels: dict[str, dict[str, Any]], heads: dict[str, Head]
) -> dict[str, SurvivalReference]:
    """One `SurvivalReference` per survival head, from training-split predictions and labels."""
    references = {}
    for name, head in heads.items():
        if not isinstance(head, SurvivalHead) or "risk" not in frame:
            continue
        rows = [
            (r, *labels[name][str(p)])
            for p, r in zip(frame["patient_id"], frame["risk"], strict=True)
            if labels[name].get(str(p)) is not None and np.isfinite(r)
        ]
        if not rows:
            continue
        risk, time, event = np.array(rows, dtype=float).T
        try:
            references[name] = SurvivalReference.fit(risk, time, event)
        except ValueError as err:
            log.warning("head '%s': %s; IPCW survival metrics are skipped", name, err)
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
