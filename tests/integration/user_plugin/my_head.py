"""A user's own head, living outside the fusion package: one class (+ one YAML beside it).

It regresses a tumour size (a manifest column, in cm) with a masked mean squared error, writes one
prediction column, and evaluates itself: a concordance of predicted and observed size (primary,
higher is better) and the mean absolute error, both as functions of bootstrap counts so fusion gives
them CIs, plus a scatter plot of its own for the report.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fusion.heads.base import Head
from fusion.heads.evaluation import EvaluationSettings, Figure, HeadEvaluation, scored_rows
from fusion.metrics.bootstrap import concordance, pair_ratio


class TumourSizeHead(Head):
    def __init__(
        self, in_dim: int, name: str = "size", column: str = "tumour_size", loss_weight: float = 1.0
    ):
        super().__init__(name, in_dim, loss_weight)
        self.columns = (column,)
        self.layer = nn.Linear(in_dim, 1)

    def parse_cells(self, cells: dict[str, Any]) -> float:
        value = float(next(iter(cells.values())))
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"tumour size must be a number > 0, got {value}")
        return value

    def label_tensor(self, labels: list[Any]) -> torch.Tensor:
        return torch.tensor([math.nan if v is None else v for v in labels], dtype=torch.float)

    @staticmethod
    def known(labels: torch.Tensor) -> torch.Tensor:
        return ~labels.isnan()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layer(z).squeeze(-1)

    def loss(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        known = self.known(labels)
        return F.mse_loss(out[known].float(), labels[known]) if known.any() else None

    @property
    def prediction_columns(self) -> list[str]:
        return [f"{self.name}_pred"]

    def predictions(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f"{self.name}_pred": out.float()}

    @property
    def primary_metric(self) -> str:
        return f"{self.name}_concordance"

    def evaluate(
        self,
        predictions: dict[str, np.ndarray],
        labels: torch.Tensor,
        settings: EvaluationSettings,
        reference: dict[str, Any] | None = None,
        full: bool = True,
    ) -> HeadEvaluation:
        rows = scored_rows(self.known(labels).numpy(), predictions)
        pred = np.asarray(predictions[f"{self.name}_pred"], float)[rows]
        size = labels.numpy()[rows].astype(float)
        larger = (size[:, None] > size[None, :]).astype(float)  # pairs with a true order
        metrics = {f"{self.name}_concordance": lambda c: pair_ratio(c, larger * concordance(pred), larger)}
        if not full:
            return HeadEvaluation(rows, metrics)
        error = np.abs(pred - size)
        metrics[f"{self.name}_mae"] = lambda c: (c @ error) / c.sum(axis=1)
        figure = Figure(
            f"scatter_{self.name}",
            f"{self.name}: predicted vs observed\nconcordance {{{self.name}_concordance}}, n={len(rows)}",
            "Predicted against observed tumour size, one point per test patient.",
            lambda title, path: scatter(pred, size, title, path),
        )
        return HeadEvaluation(rows, metrics, {"kind": "size", "n": len(rows)}, [figure], ["Sizes in cm."])


def scatter(pred: np.ndarray, size: np.ndarray, title: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(size, pred, s=18)
    ax.set(xlabel="observed size (cm)", ylabel="predicted", title=title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
