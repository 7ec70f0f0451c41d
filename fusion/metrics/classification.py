"""Classification metrics of one whole set of predictions (an epoch's validation split, an oracle).

These are the point estimates of the count-weighted metrics in `weighted_classification` (every
patient counted once), so a metric has one implementation whether it is logged per epoch, reported
at test time or bootstrapped for its CI. NaN when undefined (one class only, no patient).
Accepts numpy arrays or torch tensors.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fusion.metrics import weighted_classification as wc
from fusion.metrics.bootstrap import point


def as_array(values: Any) -> np.ndarray:
    """A numpy array of a tensor (detached, on the CPU) or any array-like."""
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def binary_auroc(prob: Any, target: Any) -> float:
    """AUROC of scores against 0/1 targets (ties count 1/2); NaN when only one class is present."""
    prob, target = as_array(prob).astype(float), as_array(target).astype(int)
    if len(prob) == 0:
        return math.nan
    return point(lambda c: wc.auroc(c, prob, target), len(prob))


def macro_auroc(prob: Any, target: Any) -> float:
    """Macro one-vs-rest AUROC over the classes present in `target` (NaN if fewer than two)."""
    prob, target = as_array(prob).astype(float), as_array(target).astype(int)
    if len(prob) == 0:
        return math.nan
    return point(lambda c: wc.macro_auroc(c, prob, target), len(prob))


def balanced_accuracy(prob: Any, target: Any) -> float:
    """Mean per-class recall of the arg-max class over the classes present in `target` (scikit-learn's)."""
    prob, target = as_array(prob).astype(float), as_array(target).astype(int)
    if len(prob) == 0:
        return math.nan
    pred = prob.argmax(axis=1)
    return point(lambda c: wc.balanced_accuracy(c, pred, target, prob.shape[1]), len(prob))
