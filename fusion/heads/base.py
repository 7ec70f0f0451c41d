"""A head is one prediction task: labels from the manifest, a layer, a masked loss, metrics.

Every head computes its loss only on the patients who have its label, so each patient may
miss any label; a batch where nobody has the label contributes no loss for that head.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

import torch
from torch import nn

from fusion.io.cohort import Cohort, Problem, is_missing


class Head(nn.Module):
    """Args:
    name: key in outputs, metrics and configs (``grade``, ``survival``, ``response``).
    in_dim: size of the fused patient embedding.
    weight: this head's weight in the total loss.
    """

    #: manifest columns this head reads
    columns: tuple[str, ...] = ()

    def __init__(self, name: str, in_dim: int, weight: float = 1.0):
        super().__init__()
        self.name = name
        self.in_dim = in_dim
        self.weight = weight

    # ------------------------------------------------------------- labels
    def parse(self, cohort: Cohort) -> tuple[dict[str, Any], list[Problem]]:
        """patient_id -> parsed label (None when unknown), and every malformed cell as a Problem."""
        raw = {c: cohort.column(c) for c in self.columns}
        labels, problems = {}, []
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

    # ------------------------------------------------------------- model
    @abstractmethod
    def forward(self, z: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def loss(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """Loss over the rows with a known label; None when there are none."""

    # ------------------------------------------------------------- evaluation
    @abstractmethod
    def predictions(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """Columns of predictions*.csv (DESIGN §4), each (B,)."""

    @property
    def primary_metric(self) -> str:
        """The metric (a key of `metrics`) that `val/score` averages over heads; higher is better."""
        return f"{self.name}_auroc"

    @abstractmethod
    def metrics(self, out: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Metric name (without split prefix) -> value, over the rows with a known label."""

    def stratum(self, label: Any) -> str:
        """A short string for stratified splitting ('' for unknown)."""
        return "" if label is None else str(label)
