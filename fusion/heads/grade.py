"""Tumour grade: multi-class classification with cross-entropy."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fusion.heads.base import Head
from fusion.metrics import balanced_accuracy, macro_auroc


class GradeHead(Head):
    """Args:
    classes: the label values in class order, as written in the manifest (e.g. ``[1, 2, 3]`` or
        ``[G1, G2, G3]``); a cell that is none of them is a cohort problem.
    column: manifest column holding the grade.
    class_weights: optional cross-entropy weight per class (same order as ``classes``).
    """

    def __init__(
        self,
        in_dim: int,
        classes: list[Any],
        name: str = "grade",
        column: str = "grade",
        weight: float = 1.0,
        class_weights: list[float] | None = None,
    ):
        super().__init__(name, in_dim, weight)
        self.columns = (column,)
        self.classes = [_canonical(c) for c in classes]
        if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ValueError(f"grade head: classes must be >= 2 distinct values, got {list(classes)}")
        if class_weights is not None and len(class_weights) != len(self.classes):
            raise ValueError(
                f"grade head: {len(class_weights)} class_weights for {len(self.classes)} classes"
            )
        self.register_buffer(
            "class_weights", None if class_weights is None else torch.tensor(class_weights, dtype=torch.float)
        )
        self.layer = nn.Linear(in_dim, len(self.classes))

    def parse_cells(self, cells: dict[str, Any]) -> int:
        value = _canonical(next(iter(cells.values())))
        if value not in self.classes:
            raise ValueError(f"grade '{value}' is not one of the configured classes {self.classes}")
        return self.classes.index(value)

    def label_tensor(self, labels: list[Any]) -> torch.Tensor:
        return torch.tensor([-1 if v is None else v for v in labels], dtype=torch.long)

    @staticmethod
    def known(labels: torch.Tensor) -> torch.Tensor:
        return labels >= 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layer(z)

    def loss(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        known = self.known(labels)
        if not known.any():
            return None
        return F.cross_entropy(out[known], labels[known], weight=self.class_weights)

    def predictions(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        prob = out.float().softmax(dim=1)
        return {f"{self.name}_prob_{k}": prob[:, k] for k in range(prob.shape[1])}

    def metrics(self, out: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        known = self.known(labels)
        prob = out.float().softmax(dim=1)[known]
        return {
            f"{self.name}_auroc": macro_auroc(prob, labels[known]),
            f"{self.name}_balanced_accuracy": balanced_accuracy(prob, labels[known]),
        }


def _canonical(value: Any) -> str:
    """'2', 2 and 2.0 name the same class; strings are compared stripped."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()
