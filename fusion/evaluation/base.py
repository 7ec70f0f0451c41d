"""What a per-head evaluator hands back, and the row selection they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fusion.metrics.bootstrap import Metric


@dataclass
class HeadEvaluation:
    """rows: positions (in the prediction table) of the patients this head is scored on.
    metrics: metric name (without split prefix) -> function of (B, len(rows)) bootstrap counts.
    artifacts: JSON-able curves and tables for the report (confusion matrix, ROC, KM groups ...).
    """

    rows: np.ndarray
    metrics: dict[str, Metric]
    artifacts: dict[str, Any] = field(default_factory=dict)


def labelled_rows(frame: pd.DataFrame, labels: dict[str, Any], columns: list[str]) -> np.ndarray:
    """Positions of patients with a known label and every prediction column filled."""
    known = frame["patient_id"].astype(str).map(lambda p: labels.get(p) is not None).to_numpy(bool)
    filled = frame[columns].notna().all(axis=1).to_numpy(bool)
    return np.flatnonzero(known & filled)


def roc_points(score: np.ndarray, target: np.ndarray) -> dict[str, list[float]] | None:
    """The ROC curve (scikit-learn's thresholds), None when one class is absent."""
    from sklearn.metrics import roc_curve

    if len(np.unique(target)) < 2:
        return None
    fpr, tpr, _ = roc_curve(target, score)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
