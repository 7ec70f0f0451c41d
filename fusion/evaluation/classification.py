"""Test-time evaluation of the classification heads: grade (multi-class) and response (binary)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from fusion.evaluation.base import HeadEvaluation, labelled_rows, roc_points
from fusion.evaluation.settings import EvaluationSettings
from fusion.metrics import weighted_classification as wc
from fusion.metrics.calibration import reliability_curve


def evaluate_grade(
    name: str, classes: list[str], frame: pd.DataFrame, labels: dict[str, Any]
) -> HeadEvaluation:
    """Macro AUROC, balanced accuracy and macro F1; confusion matrix and one-vs-rest ROC curves."""
    columns = [f"{name}_prob_{k}" for k in range(len(classes))]
    rows = labelled_rows(frame, labels, columns)
    prob = frame[columns].to_numpy(float)[rows]
    target = np.array([labels[str(p)] for p in frame["patient_id"].iloc[rows]], dtype=int)
    pred = prob.argmax(axis=1) if len(rows) else np.zeros(0, dtype=int)
    k = len(classes)
    metrics = {
        f"{name}_auroc": lambda c: wc.macro_auroc(c, prob, target),
        f"{name}_balanced_accuracy": lambda c: wc.balanced_accuracy(c, pred, target, k),
        f"{name}_f1_macro": lambda c: wc.f1_macro(c, pred, target, k),
    }
    roc = {str(cls): roc_points(prob[:, i], target == i) for i, cls in enumerate(classes)}
    artifacts = {
        "kind": "grade",
        "classes": [str(c) for c in classes],
        "confusion_matrix": confusion_matrix(target, pred, labels=list(range(k))).tolist(),
        "roc": {c: r for c, r in roc.items() if r is not None},
        "n": len(rows),
    }
    return HeadEvaluation(rows, metrics, artifacts)


def evaluate_response(
    name: str, frame: pd.DataFrame, labels: dict[str, Any], settings: EvaluationSettings
) -> HeadEvaluation:
    """AUROC, AUPRC (average precision) and ECE; ROC and reliability curves."""
    column = f"{name}_prob"
    rows = labelled_rows(frame, labels, [column])
    prob = frame[column].to_numpy(float)[rows]
    target = np.array([labels[str(p)] for p in frame["patient_id"].iloc[rows]], dtype=int)
    bins = settings.calibration_bins
    metrics = {
        f"{name}_auroc": lambda c: wc.auroc(c, prob, target),
        f"{name}_auprc": lambda c: wc.average_precision(c, prob, target),
        f"{name}_ece": lambda c: wc.expected_calibration_error(c, prob, target, bins),
    }
    artifacts = {
        "kind": "response",
        "roc": roc_points(prob, target),
        "reliability": reliability_curve(prob, target, bins),
        "prevalence": float(target.mean()) if len(rows) else None,
        "n": len(rows),
    }
    return HeadEvaluation(rows, metrics, artifacts)
