"""Treatment response: binary classification with BCE; the output is a logit."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.heads.base import Head
from fusion.heads.evaluation import EvaluationSettings, Figure, HeadEvaluation, plot, roc_points, scored_rows
from fusion.metrics import weighted_classification as wc
from fusion.metrics.calibration import reliability_curve


class ResponseHead(Head):
    """Args:
    column: manifest column with 0/1 response.
    pos_weight: optional BCE weight of the positive class (for rare responders).
    """

    def __init__(
        self,
        in_dim: int,
        name: str = "response",
        column: str = "response",
        loss_weight: float = 1.0,
        pos_weight: float | None = None,
        weight: float | None = None,
    ):
        super().__init__(name, in_dim, loss_weight, weight=weight)
        self.columns = (column,)
        self.pos_weight = pos_weight
        self.layer = nn.Linear(in_dim, 1)

    # ------------------------------------------------------------- labels
    def parse_cells(self, cells: dict[str, Any]) -> float:
        value = next(iter(cells.values()))
        try:
            value = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"response must be 0 or 1, got {value!r}") from None
        if value not in (0.0, 1.0):
            raise ValueError(f"response must be 0 or 1, got {value}")
        return value

    def label_tensor(self, labels: list[Any]) -> torch.Tensor:
        return torch.tensor([math.nan if v is None else v for v in labels], dtype=torch.float)

    @staticmethod
    def known(labels: torch.Tensor) -> torch.Tensor:
        return ~labels.isnan()

    def class_counts(self, labels: Sequence[Any]) -> dict[str, int]:
        return {"responders": sum(v == 1 for v in labels), "non-responders": sum(v == 0 for v in labels)}

    # ------------------------------------------------------------- model
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layer(z).squeeze(-1)

    def loss(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        known = self.known(labels)
        if not known.any():
            return None
        pos_weight = None if self.pos_weight is None else out.new_tensor(self.pos_weight)
        return F.binary_cross_entropy_with_logits(out[known].float(), labels[known], pos_weight=pos_weight)

    # ------------------------------------------------------------- predictions and evaluation
    @property
    def prediction_columns(self) -> list[str]:
        return [f"{self.name}_prob"]

    def predictions(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f"{self.name}_prob": out.float().sigmoid()}

    def explain_targets(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """The response logit (the log-odds of response): contributions add on that scale."""
        return {self.primary_target: out.float()}

    @property
    def primary_target(self) -> str:
        return f"{self.name}_logit"

    def evaluate(
        self,
        predictions: dict[str, np.ndarray],
        labels: torch.Tensor,
        settings: EvaluationSettings,
        reference: dict[str, Any] | None = None,
        full: bool = True,
    ) -> HeadEvaluation:
        """AUROC (every epoch), AUPRC (average precision) and ECE; ROC and reliability curves."""
        name = self.name
        rows = scored_rows(self.known(labels).numpy(), predictions)
        prob = np.asarray(predictions[f"{name}_prob"], float)[rows]
        target = labels.numpy()[rows].astype(int)
        metrics = {f"{name}_auroc": lambda c: wc.auroc(c, prob, target)}
        if not full:
            return HeadEvaluation(rows, metrics)
        bins = settings.calibration_bins
        metrics[f"{name}_auprc"] = lambda c: wc.average_precision(c, prob, target)
        metrics[f"{name}_ece"] = lambda c: wc.expected_calibration_error(c, prob, target, bins)
        artifacts = {
            "kind": "response",
            "roc": roc_points(prob, target),
            "reliability": reliability_curve(prob, target, bins),
            "prevalence": float(target.mean()) if len(rows) else None,
            "n": len(rows),
        }
        figures = []
        if len(rows) and artifacts["roc"]:
            figures.append(
                Figure(
                    f"roc_{name}",
                    f"{name}: ROC\nAUROC {{{name}_auroc}}, n={len(rows)}",
                    "ROC curve(s) on the test patients with this label.",
                    plot("roc_plot", {name: artifacts["roc"]}),
                )
            )
        if len(rows):
            figures.append(
                Figure(
                    f"calibration_{name}",
                    f"{name}: calibration\nECE {{{name}_ece}}, n={len(rows)}",
                    "Reliability curve: observed responder fraction vs mean predicted probability per bin.",
                    plot("calibration_plot", artifacts["reliability"]),
                )
            )
        return HeadEvaluation(rows, metrics, artifacts, figures)
