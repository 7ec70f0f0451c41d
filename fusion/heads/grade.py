"""Tumour grade: multi-class classification with cross-entropy."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix
from torch import nn

from fusion.errors import ConfigError
from fusion.heads.base import Head
from fusion.heads.evaluation import EvaluationSettings, Figure, HeadEvaluation, plot, roc_points, scored_rows
from fusion.metrics import weighted_classification as wc


class GradeHead(Head):
    """Args:
    classes: the label values in class order, as written in the manifest (e.g. ``[1, 2, 3]`` or
        ``[G1, G2, G3]``); a cell that is none of them is a cohort problem. Each class names its
        prediction column, ``<name>_prob_<class>`` (`column_label`: ``grade_prob_1``, ``grade_prob_G1``).
    column: manifest column holding the grade.
    class_weights: optional cross-entropy weight per class (same order as ``classes``).
    """

    #: a buffer (`register_buffer`; None without class weights), declared for type checkers (nn.Module
    #: types it Tensor | Module)
    class_weights: torch.Tensor | None

    def __init__(
        self,
        in_dim: int,
        classes: list[Any],
        name: str = "grade",
        column: str = "grade",
        loss_weight: float = 1.0,
        class_weights: list[float] | None = None,
        weight: float | None = None,
    ):
        super().__init__(name, in_dim, loss_weight, weight=weight)
        self.columns = (column,)
        self.classes = [_canonical(c) for c in classes]
        if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2 or "" in self.classes:
            raise ConfigError(
                f"grade head: classes must be >= 2 distinct, non-empty values, got {list(classes)}"
            )
        self.column_labels = [column_label(c) for c in self.classes]
        clashes = [c for c in self.classes if self.column_labels.count(column_label(c)) > 1]
        if clashes:
            columns = sorted({f"{name}_prob_{column_label(c)}" for c in clashes})
            raise ConfigError(
                f"grade head: classes {clashes} give the same prediction column ({', '.join(columns)}; "
                "characters other than letters, digits and _ become _): rename them in head.grade.classes "
                "and the manifest"
            )
        if class_weights is not None and len(class_weights) != len(self.classes):
            raise ConfigError(
                f"grade head: {len(class_weights)} class_weights for {len(self.classes)} classes"
            )
        self.register_buffer(
            "class_weights", None if class_weights is None else torch.tensor(class_weights, dtype=torch.float)
        )
        self.layer = nn.Linear(in_dim, len(self.classes))

    # ------------------------------------------------------------- labels
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

    def label_columns(self, label: Any) -> dict[str, Any]:
        return {f"{self.name}_label": None if label is None else self.classes[label]}

    def class_counts(self, labels: Sequence[Any]) -> dict[str, int]:
        return {f"class {c}": sum(v == i for v in labels) for i, c in enumerate(self.classes)}

    # ------------------------------------------------------------- model
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layer(z)

    def loss(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        known = self.known(labels)
        if not known.any():
            return None
        return F.cross_entropy(out[known], labels[known], weight=self.class_weights)

    # ------------------------------------------------------------- predictions and evaluation
    @property
    def prediction_columns(self) -> list[str]:
        """``<name>_prob_<class>``, in class order: named after the labels, not their index."""
        return [f"{self.name}_prob_{label}" for label in self.column_labels]

    def predictions(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        prob = out.float().softmax(dim=1)
        return {column: prob[:, k] for k, column in enumerate(self.prediction_columns)}

    def explain_targets(self, out: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each class probability, named as its prediction column (softmax logits are not identifiable one by
        one: adding a constant to all of them changes nothing, so a class logit's attribution would not be
        either)."""
        return self.predictions(out)

    @property
    def primary_target(self) -> str:
        """The probability of the last (highest) class: what a high-grade map shows."""
        return self.prediction_columns[-1]

    def evaluate(
        self,
        predictions: dict[str, np.ndarray],
        labels: torch.Tensor,
        settings: EvaluationSettings,
        reference: dict[str, Any] | None = None,
        full: bool = True,
    ) -> HeadEvaluation:
        """Macro one-vs-rest AUROC and balanced accuracy (every epoch), macro F1; confusion matrix and
        one-vs-rest ROC curves."""
        rows = scored_rows(self.known(labels).numpy(), predictions)
        prob = np.stack([np.asarray(predictions[c], float) for c in self.prediction_columns], axis=1)[rows]
        target = labels.numpy()[rows].astype(int)
        pred = prob.argmax(axis=1) if len(rows) else np.zeros(0, dtype=int)
        k, name = len(self.classes), self.name
        metrics = {
            f"{name}_auroc": lambda c: wc.macro_auroc(c, prob, target),
            f"{name}_balanced_accuracy": lambda c: wc.balanced_accuracy(c, pred, target, k),
        }
        if not full:
            return HeadEvaluation(rows, metrics)
        metrics[f"{name}_f1_macro"] = lambda c: wc.f1_macro(c, pred, target, k)
        classes = [str(c) for c in self.classes]
        roc = {c: roc_points(prob[:, i], target == i) for i, c in enumerate(classes)}
        matrix = confusion_matrix(target, pred, labels=list(range(k))).tolist()
        artifacts = {
            "kind": "grade",
            "classes": classes,
            "confusion_matrix": matrix,
            "roc": {c: r for c, r in roc.items() if r is not None},
            "n": len(rows),
        }
        figures = []
        if len(rows) and artifacts["roc"]:
            curves = {f"class {c} vs rest": curve for c, curve in artifacts["roc"].items()}
            figures.append(
                Figure(
                    f"roc_{name}",
                    f"{name}: one-vs-rest ROC\nmacro AUROC {{{name}_auroc}}, n={len(rows)}",
                    "ROC curve(s) on the test patients with this label.",
                    plot("roc_plot", curves),
                )
            )
        if len(rows):
            figures.append(
                Figure(
                    f"confusion_{name}",
                    f"{name}: confusion matrix\n"
                    f"balanced accuracy {{{name}_balanced_accuracy}}, n={len(rows)}",
                    "Confusion matrix: rows are the true class, columns the predicted (arg-max) class.",
                    plot("confusion_plot", matrix, classes),
                )
            )
        table = pd.DataFrame(matrix, index=classes, columns=classes).rename_axis("true \\ predicted")
        return HeadEvaluation(rows, metrics, artifacts, figures, tables={f"confusion_{name}": table})


def _canonical(value: Any) -> str:
    """'2', 2 and 2.0 name the same class; strings are compared stripped."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()


def column_label(label: str) -> str:
    """A class label as it appears in a column name: every character other than an ASCII letter, a
    digit or _ becomes _ (``G1`` -> ``G1``, ``2`` -> ``2``, ``low grade`` -> ``low_grade``, ``G1/2`` ->
    ``G1_2``), so the column is one word in CSV, pandas, W&B and shell alike."""
    return re.sub(r"[^0-9A-Za-z_]", "_", label)
