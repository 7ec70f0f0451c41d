"""Survival: Cox partial likelihood (torchsurv, Efron ties); the output is the log hazard (risk)."""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import nn
from torchsurv.loss.cox import neg_partial_log_likelihood

from fusion.heads.base import Head
from fusion.metrics import harrell_cindex

# tied times are expected (follow-up is recorded in days or months); Efron's method handles them
warnings.filterwarnings("ignore", message="Ties in `time` detected", category=UserWarning)


class SurvivalHead(Head):
    """Args:
    time_column / event_column: follow-up time (> 0) and event indicator (1 = event, 0 = censored).
    """

    def __init__(
        self,
        in_dim: int,
        name: str = "survival",
        time_column: str = "survival_time",
        event_column: str = "survival_event",
        weight: float = 1.0,
    ):
        super().__init__(name, in_dim, weight)
        self.columns = (time_column, event_column)
        self.layer = nn.Linear(in_dim, 1)

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
        return torch.tensor([(math.nan, math.nan) if v is None else v for v in labels], dtype=torch.float)

    @staticmethod
    def known(labels: torch.Tensor) -> torch.Tensor:
        return ~labels[:, 0].isnan()

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layer(z).squeeze(-1)

    def loss(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        known = self.known(labels)
        event = labels[known, 1].bool()
        # no term without an event; one patient is its own whole risk set (log 1 = 0, no gradient)
        if not event.any() or int(known.sum()) < 2:
            return None
        return neg_partial_log_likelihood(out[known].float(), event, labels[known, 0], reduction="mean")

    @property
    def primary_metric(self) -> str:
        return f"{self.name}_cindex"

    def predictions(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"risk": out.float()}

    def metrics(self, out: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        known = self.known(labels)
        return {f"{self.name}_cindex": harrell_cindex(out[known], labels[known, 0], labels[known, 1])}

    def stratum(self, label: Any) -> str:
        return "" if label is None else str(int(label[1]))
