"""Survival: Cox partial likelihood (torchsurv, Efron ties); the output is the log hazard (risk)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torchsurv.loss.cox import neg_partial_log_likelihood

from fusion.errors import ConfigError
from fusion.heads.base import Head
from fusion.heads.evaluation import EvaluationSettings, HeadEvaluation, scored_rows
from fusion.heads.survival_evaluation import evaluate_survival
from fusion.heads.survival_probabilities import horizon_label, survival_columns
from fusion.heads.survival_reference import MIN_GROUP, SurvivalReference

# tied times are expected (follow-up is recorded in days or months); Efron's method handles them
__all__ = ["SurvivalHead", "horizon_label"]

warnings.filterwarnings("ignore", message="Ties in `time` detected", category=UserWarning)


class SurvivalHead(Head):
    """Args:
    time_column / event_column: follow-up time (> 0) and event indicator (1 = event, 0 = censored).
    min_group: the fewest training patients behind any number of the stored training reference
        (`SurvivalReference`; config: ``privacy.min_group``).
    time_unit: the unit of `time_column` ("months", "days", ...), written to provenance and shown with the
        survival probabilities; "unspecified" when not given (fusion cannot tell it from the numbers).

    Its prediction column is ``risk`` (log hazard, higher = worse) for the head named ``survival`` (the
    documented contract) and ``<name>_risk`` for any other, so a model may predict overall and
    progression-free survival side by side (``survival`` and ``pfs``). With the training reference stored
    in the checkpoint, predictions*.csv also get ``<name>_prob_<h>`` and ``<name>_median``
    (`reference_columns`, `fusion.heads.survival_probabilities`).
    """

    def __init__(
        self,
        in_dim: int,
        name: str = "survival",
        time_column: str = "survival_time",
        event_column: str = "survival_event",
        loss_weight: float = 1.0,
        weight: float | None = None,
        min_group: int = MIN_GROUP,
        time_unit: str | None = "unspecified",
    ):
        super().__init__(name, in_dim, loss_weight, weight=weight)
        if isinstance(min_group, bool) or int(min_group) != min_group or min_group < 1:
            raise ConfigError(
                f"head '{name}': min_group must be a positive integer (patients), got {min_group!r}"
            )
        self.min_group = int(min_group)
        self.time_unit = str(time_unit or "unspecified")
        self.columns = (time_column, event_column)
        self.layer = nn.Linear(in_dim, 1)

    # ------------------------------------------------------------- labels
    def parse_cells(self, cells: dict[str, Any]) -> tuple[float, float]:
        time_col, event_col = self.columns
        time, event = cells[time_col], cells[event_col]
        if time is None or event is None:
            missing = time_col if time is None else event_col
            raise ValueError(f"'{missing}' is empty while the other survival column is set")
        try:
            time, event = float(time), float(event)
        except (TypeError, ValueError):
            raise ValueError(f"survival time/event must be numbers, got {time!r} / {event!r}") from None
        if not math.isfinite(time) or time <= 0:
            raise ValueError(f"survival time must be a finite number > 0, got {time}")
        if event not in (0.0, 1.0):
            raise ValueError(f"survival event must be 0 (censored) or 1 (event), got {event}")
        return time, event

    def label_tensor(self, labels: list[Any]) -> torch.Tensor:
        return torch.tensor(
            [(math.nan, math.nan) if v is None else v for v in labels], dtype=torch.float
        ).reshape(-1, 2)

    @staticmethod
    def known(labels: torch.Tensor) -> torch.Tensor:
        return ~labels[:, 0].isnan()

    def label_columns(self, label: Any) -> dict[str, Any]:
        time, event = (None, None) if label is None else label
        return {f"{self.name}_time": time, f"{self.name}_event": event}

    def stratum(self, label: Any) -> str:
        return "" if label is None else str(int(label[1]))

    def class_counts(self, labels: Sequence[Any]) -> dict[str, int]:
        return {"events": sum(v is not None and v[1] == 1 for v in labels)}

    # ------------------------------------------------------------- model
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layer(z).squeeze(-1)

    def loss(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        known = self.known(labels)
        event = labels[known, 1].bool()
        # no term without an event; one patient is its own whole risk set (log 1 = 0, no gradient)
        if not event.any() or int(known.sum()) < 2:
            return None
        return neg_partial_log_likelihood(out[known].float(), event, labels[known, 0], reduction="mean")

    # ------------------------------------------------------------- predictions and evaluation
    @property
    def risk_column(self) -> str:
        return "risk" if self.name == "survival" else f"{self.name}_risk"

    @property
    def prediction_columns(self) -> list[str]:
        return [self.risk_column]

    @property
    def primary_metric(self) -> str:
        return f"{self.name}_cindex"

    def predictions(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return {self.risk_column: out.float()}

    def explain_targets(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """The log-hazard (the `risk` column): contributions add on the Cox scale."""
        return {self.primary_target: out.float()}

    @property
    def primary_target(self) -> str:
        return f"{self.name}_log_hazard"

    def evaluate(
        self,
        predictions: dict[str, np.ndarray],
        labels: torch.Tensor,
        settings: EvaluationSettings,
        reference: dict[str, Any] | None = None,
        full: bool = True,
    ) -> HeadEvaluation:
        rows, risk, time, event = self._scored(predictions, labels)
        fitted = None if reference is None else SurvivalReference.from_dict(reference)
        return evaluate_survival(self.name, rows, risk, time, event, settings, fitted, full)

    def fit_reference(self, predictions: dict[str, np.ndarray], labels: torch.Tensor) -> dict[str, Any]:
        """Breslow baseline, censoring distribution and quantiles of the training split's predictions,
        pooled over groups of at least `min_group` patients."""
        _, risk, time, event = self._scored(predictions, labels)
        return SurvivalReference.fit(risk, time, event, self.min_group).to_dict()

    def reference_columns(
        self, risk: np.ndarray, reference: dict[str, Any], horizons: Sequence[float] | None = None
    ) -> dict[str, np.ndarray]:
        """``<name>_prob_<h>`` (S(h | x) per horizon, `horizon_label`) and ``<name>_median`` for `risk`, from
        the training reference's Breslow baseline (`fusion.heads.survival_probabilities`)."""
        return survival_columns(self.name, reference, risk, horizons)

    def _scored(
        self, predictions: dict[str, np.ndarray], labels: torch.Tensor
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(rows, risk, time, event) of the patients with a label and a finite risk."""
        rows = scored_rows(self.known(labels).numpy(), predictions)
        pairs = labels.numpy()[rows].astype(float).reshape(-1, 2)
        risk = np.asarray(predictions[self.risk_column], float)[rows]
        return rows, risk, pairs[:, 0], pairs[:, 1].astype(bool)
