"""What a head's test-time evaluation receives (`EvaluationSettings`) and hands back (`HeadEvaluation`).

A head owns its evaluation (`Head.evaluate`): which rows it scores, its metrics, the data behind its
figures and the notes of its report section. The generic code above it (`fusion.evaluation`) only
bootstraps the metric functions, and the report only draws the figures and prints the notes, so a
new head needs no change outside its own class.

Every metric is a function of a (B, n) matrix of bootstrap counts (`fusion.metrics.bootstrap`): the
per-epoch value, the test value and each bootstrap replicate run through the same code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.errors import ConfigError
from fusion.metrics.bootstrap import Metric


@dataclass
class EvaluationSettings:
    """The `evaluation:` config block of fusion-train / fusion-predict.

    Args:
        n_bootstrap: patient bootstrap replicates for the 95% CIs (0 = no CIs).
        seed: bootstrap seed.
        level: CI coverage.
        horizons: survival horizons in the cohort's time unit; None = 25/50/75% quantiles of the
            training event times (keys then read q25/q50/q75 so that CV folds share them).
        risk_groups: 2 (median split) or 3 (tertiles) for the Kaplan–Meier plot of predicted risk.
        risk_cutoff: "train" (cut at quantiles of the training risk, fixed before seeing the test set)
            or "test" (quantiles of the test risk: equal-sized groups, but data-dependent).
        calibration_bins: equal-width bins of the reliability curve and ECE.
        ibs_points: grid points of the integrated Brier score between the first and last horizon.
        report: write the report folder (plots + report.md); metrics are written regardless.
        wandb_table: also send W&B a per-patient table (manifest patient_id, predictions and labels:
            survival times and events are patient values); off by default, so W&B gets the figures and
            the metric table only.
    """

    n_bootstrap: int = 1000
    seed: int = 0
    level: float = 0.95
    horizons: list[float] | None = None
    risk_groups: int = 2
    risk_cutoff: str = "train"
    calibration_bins: int = 10
    ibs_points: int = 50
    report: bool = True
    wandb_table: bool = False

    def __post_init__(self) -> None:
        if self.risk_groups not in (2, 3):
            raise ConfigError(f"evaluation.risk_groups must be 2 or 3, got {self.risk_groups}")
        if self.risk_cutoff not in ("train", "test"):
            raise ConfigError(f"evaluation.risk_cutoff must be 'train' or 'test', got '{self.risk_cutoff}'")
        if self.n_bootstrap < 0 or not 0 < self.level < 1 or self.calibration_bins < 1 or self.ibs_points < 2:
            raise ConfigError(
                "evaluation: n_bootstrap >= 0, 0 < level < 1, calibration_bins >= 1 and ibs_points >= 2 "
                f"are required, got {self}"
            )
        if self.horizons is not None:
            self.horizons = sorted(float(h) for h in self.horizons)
            if not self.horizons or self.horizons[0] <= 0:
                raise ConfigError(f"evaluation.horizons must be times > 0, got {self.horizons}")

    @classmethod
    def from_config(cls, node: Any | None) -> EvaluationSettings:
        """From a config node (DictConfig or dict); unknown keys are an error naming them."""
        data = dict(node or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"evaluation: unknown setting(s) {unknown}; known: {sorted(known)}")
        if data.get("horizons") is not None:
            data["horizons"] = list(data["horizons"])
        return cls(**data)


#: draws a figure: (title with the metric values filled in, PNG path) -> the path written
Draw = Callable[[str, Path], Path]


@dataclass
class Figure:
    """One report figure of a head.

    name: file stem and W&B key (``roc_grade``); title: a template whose ``{metric}`` fields
    (metric names without the split prefix, e.g. ``{grade_auroc}``) the report fills with the value
    and its CI; caption: one sentence for report.md; draw: renders it (see `fusion.plots`).
    """

    name: str
    title: str
    caption: str
    draw: Draw


@dataclass
class HeadEvaluation:
    """rows: positions (in the evaluated table) of the patients this head is scored on.
    metrics: metric name (without split prefix) -> function of (B, len(rows)) bootstrap counts.
    artifacts: JSON-able curves and tables (`report/evaluation.json`: confusion matrix, ROC, KM groups ...).
    figures: what the report draws; notes: sentences for the head's report section;
    tables: CSV files for the report folder (file stem -> table).
    """

    rows: np.ndarray
    metrics: dict[str, Metric]
    artifacts: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def scored_rows(known: np.ndarray, predictions: dict[str, np.ndarray]) -> np.ndarray:
    """Positions of patients with a known label and every prediction column finite."""
    keep = np.asarray(known, bool).copy()
    for values in predictions.values():
        keep &= np.isfinite(np.asarray(values, float))
    return np.flatnonzero(keep)


def roc_points(score: np.ndarray, target: np.ndarray) -> dict[str, list[float]] | None:
    """The ROC curve (scikit-learn's thresholds), None when one class is absent."""
    from sklearn.metrics import roc_curve

    if len(np.unique(target)) < 2:
        return None
    fpr, tpr, _ = roc_curve(target, score)
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist()}


def plot(function: str, *data: Any) -> Draw:
    """A `Draw` that calls `fusion.plots.<function>(*data, title, path)`; matplotlib is imported only
    when a report is drawn, not when a head is built."""

    def draw(title: str, path: Path) -> Path:
        from fusion import plots

        return getattr(plots, function)(*data, title, path)

    return draw
