"""Treatment response: binary classification with BCE; the output is a logit."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusion.heads.base import Head
from fusion.metrics import binary_auroc


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
        weight: float = 1.0,
        pos_weight: float | None = None,
    ):
        super().__init__(name, in_dim, weight)
        self.columns = (column,)
        self.pos_weight = pos_weight
        self.layer = nn.Linear(in_dim, 1)

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

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layer(z).squeeze(-1)

    def loss(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        known = self.known(labels)
        if not known.any():
            return None
        pos_weight = None if self.pos_weight is None else out.new_tensor(self.pos_weight)
        return F.binary_cross_entropy_with_logits(out[known].float(), labels[known], pos_weight=pos_weight)

    def predictions(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        return {f"{self.name}_prob": out.float().sigmoid()}

    def metrics(self, out: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        known = self.known(labels)
        return {f"{self.name}_auroc": binary_auroc(out[known].float().sigmoid(), labels[known])}
