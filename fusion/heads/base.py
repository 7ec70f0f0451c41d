"""A head is one prediction task: labels from the manifest, a layer, a masked loss, its prediction
columns and its evaluation.

Every head computes its loss only on the patients who have its label, so each patient may
miss any label; a batch where nobody has the label contributes no loss for that head.

A head owns everything specific to its task, so a new head is one class and one YAML: the manifest
columns it reads (`parse_cells`), its loss, the columns it writes to predictions*.csv
(`prediction_columns`, `predictions`), and its evaluation (`evaluate`: metric functions, report
figures and notes; `fit_reference`: what that evaluation needs from the training split). Per-epoch
metrics (`metrics`) are the same functions as the test-time ones, computed without bootstrap.
"""

from __future__ import annotations

import math
import re
import warnings
from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from fusion.heads.evaluation import EvaluationSettings, HeadEvaluation
from fusion.io.cohort import Cohort, Problem, is_missing
from fusion.metrics.bootstrap import point

#: per-epoch metrics: the cheap metrics of `evaluate(full=False)`, no bootstrap
EPOCH_SETTINGS = EvaluationSettings(n_bootstrap=0)

#: the values a metric can take: (lowest, highest); None on a side = unbounded there
MetricRange = tuple[float | None, float | None]

#: metric names fusion knows to lie in [0, 1], matched at the end of a key such as ``test/grade_auroc``:
#: AUROC, C-index (Harrell, Uno), balanced accuracy, macro F1, AUPRC, ECE, IBS, td-AUC and Brier at a horizon
_UNIT_INTERVAL = re.compile(
    # (mv)acc@k: the retrieval metrics of fusion.retrieval.quality (test/retrieval_grade_acc@5)
    r"(?:^|[_/])(?:auroc|cindex|balanced_accuracy|f1_macro|auprc|ece|ibs|(?:td_auc|brier)_[^_/]+|(?:mv)?acc@\d+)$"
)


def known_metric_range(metric: str) -> MetricRange | None:
    """[0, 1] for a metric name fusion knows to be a proportion (see `_UNIT_INTERVAL`); None (unknown: never
    clipped) for any other name, e.g. a custom head's mean absolute error."""
    return (0.0, 1.0) if _UNIT_INTERVAL.search(metric) else None


class Head(nn.Module):
    """Args:
    name: key in outputs, metrics and configs (``grade``, ``survival``, ``response``).
    in_dim: size of the fused patient embedding.
    loss_weight: this head's weight in the total training loss.
    weight: the old name of ``loss_weight`` (still read, e.g. from the config stored in older checkpoints).
    """

    #: manifest columns this head reads
    columns: tuple[str, ...] = ()

    def __init__(self, name: str, in_dim: int, loss_weight: float = 1.0, weight: float | None = None):
        super().__init__()
        if weight is not None:
            warnings.warn(
                f"head '{name}': 'weight' is now called 'loss_weight'", DeprecationWarning, stacklevel=3
            )
            loss_weight = weight
        self.name = name
        self.in_dim = in_dim
        self.loss_weight = float(loss_weight)

    # ------------------------------------------------------------- labels
    def parse(self, cohort: Cohort) -> tuple[dict[str, Any], list[Problem]]:
        """patient_id -> parsed label (None when unknown), and every malformed cell as a Problem."""
        raw = {c: cohort.column(c) for c in self.columns}
        labels: dict[str, Any] = {}
        problems: list[Problem] = []
        for pid in cohort.patient_ids:
            cells = {c: raw[c][pid] for c in self.columns}
            if all(is_missing(v) for v in cells.values()):
                labels[pid] = None
                continue
            try:
                labels[pid] = self.parse_cells(cells)
            except ValueError as err:
                labels[pid] = None
                problems.append(Problem(pid, ", ".join(self.columns), str(err)))
        return labels, problems

    @abstractmethod
    def parse_cells(self, cells: dict[str, Any]) -> Any:
        """One patient's label from its raw cells (at least one non-empty); ValueError if malformed."""

    @abstractmethod
    def label_tensor(self, labels: list[Any]) -> torch.Tensor:
        """Batch labels (None = unknown) into a tensor with a sentinel for unknown."""

    @staticmethod
    @abstractmethod
    def known(labels: torch.Tensor) -> torch.Tensor:
        """(B,) bool: which rows of a label tensor are known."""

    def label_columns(self, label: Any) -> dict[str, Any]:
        """One patient's label in readable form, as table columns (the W&B predictions table)."""
        return {f"{self.name}_label": label}

    def stratum(self, label: Any) -> str:
        """A short string for stratified splitting ('' for unknown)."""
        return "" if label is None else str(label)

    def class_counts(self, labels: Sequence[Any]) -> dict[str, int]:
        """Patients per class among known `labels`, for every class this head's metrics need in a val or
        test split (zero counts included), e.g. each class of a classification head, the events of a
        survival head. Checked against ``data.split.min_per_class`` before training. Default: {} (no
        class needed, e.g. a regression head)."""
        return {}

    # ------------------------------------------------------------- model
    @abstractmethod
    def forward(self, z: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def loss(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """Loss over the rows with a known label; None when there are none."""

    # ------------------------------------------------------------- predictions and evaluation
    @property
    @abstractmethod
    def prediction_columns(self) -> list[str]:
        """The columns this head writes to predictions*.csv, named after the head."""

    @abstractmethod
    def predictions(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """`prediction_columns` -> (B,) values, from the head's output."""

    def explain_targets(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """The scalars an explanation attributes (`fusion.explanations`), name -> (B,), from the output.

        Each is on a scale where contributions add up: a logit, a log-hazard or a probability. Default:
        the output itself, ``<name>_output`` (``<name>_output_<k>`` per column of a 2-d output).
        """
        if out.dim() == 1:
            return {f"{self.name}_output": out}
        return {f"{self.name}_output_{k}": out[:, k] for k in range(out.shape[1])}

    @property
    def primary_target(self) -> str:
        """The one target of `explain_targets` that single-map explanations (imaging saliency) show."""
        return f"{self.name}_output"

    def metric_range(self, metric: str) -> MetricRange | None:
        """The values `metric` (a key of `evaluate`'s metrics) can take, to which confidence intervals are
        clipped; None = unbounded or unknown (never clipped). Default: `known_metric_range`; a head with
        metrics of its own names overrides it, e.g. ``(0.0, None)`` for a mean absolute error."""
        return known_metric_range(metric)

    @property
    def primary_metric(self) -> str:
        """The metric (a key of `metrics`) that `val/score` averages over heads; higher is better."""
        return f"{self.name}_auroc"

    @abstractmethod
    def evaluate(
        self,
        predictions: dict[str, np.ndarray],
        labels: torch.Tensor,
        settings: EvaluationSettings,
        reference: dict[str, Any] | None = None,
        full: bool = True,
    ) -> HeadEvaluation:
        """Score the prediction columns against a label tensor (rows aligned; `label_tensor` form).

        Returns the scored rows and each metric as a function of bootstrap counts. ``full=False`` (every
        epoch): only the metrics logged per epoch, which must include `primary_metric`; no figures.
        ``full=True`` (test time): every metric, plus artifacts, figures and notes for the report.
        `reference` is what `fit_reference` returned on the training split (None when unavailable).
        """

    def fit_reference(
        self, predictions: dict[str, np.ndarray], labels: torch.Tensor
    ) -> dict[str, Any] | None:
        """What `evaluate` needs from the training split's predictions (plain JSON-able values, stored in
        the evaluated checkpoint); None when nothing. Raise ValueError when it cannot be fitted."""
        return None

    def metrics(self, out: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Per-epoch metric name (without split prefix) -> value: `evaluate(full=False)` without bootstrap."""
        columns = {k: v.detach().float().cpu().numpy() for k, v in self.predictions(out).items()}
        evaluation = self.evaluate(columns, labels.detach().cpu(), EPOCH_SETTINGS, full=False)
        n = len(evaluation.rows)
        return {k: point(metric, n) if n else math.nan for k, metric in evaluation.metrics.items()}
