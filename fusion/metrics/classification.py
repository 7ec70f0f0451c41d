"""Classification metrics on whole-epoch predictions (torchmetrics), NaN when undefined."""

from __future__ import annotations

import math

import torch
from torchmetrics.functional.classification import binary_auroc as _binary_auroc
from torchmetrics.functional.classification import multiclass_auroc


def binary_auroc(prob: torch.Tensor, target: torch.Tensor) -> float:
    """AUROC of probabilities against 0/1 targets; NaN when only one class is present."""
    target = target.long()
    if target.numel() == 0 or target.unique().numel() < 2:
        return math.nan
    return float(_binary_auroc(prob.float(), target))


def _present_classes(target: torch.Tensor) -> torch.Tensor:
    return target.unique()


def macro_auroc(prob: torch.Tensor, target: torch.Tensor) -> float:
    """Macro one-vs-rest AUROC over the classes present in `target` (NaN if fewer than two)."""
    target = target.long()
    classes = _present_classes(target)
    if classes.numel() < 2:
        return math.nan
    if classes.numel() == prob.shape[1]:
        return float(multiclass_auroc(prob.float(), target, num_classes=prob.shape[1], average="macro"))
    # a class absent from this split has no defined one-vs-rest AUROC: average over the others
    return float(sum(binary_auroc(prob[:, k], (target == k).long()) for k in classes.tolist()) / len(classes))


def balanced_accuracy(prob: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-class recall over the classes present in `target` (scikit-learn's definition)."""
    target = target.long()
    if target.numel() == 0:
        return math.nan
    pred = prob.argmax(dim=1)
    recalls = [float((pred[target == k] == k).float().mean()) for k in _present_classes(target).tolist()]
    return sum(recalls) / len(recalls)
