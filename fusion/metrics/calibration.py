"""Reliability curve of predicted probabilities: the data behind the ECE and the calibration plot."""

from __future__ import annotations

import numpy as np

from fusion.metrics.weighted_classification import bin_index


def reliability_curve(prob: np.ndarray, target: np.ndarray, n_bins: int = 10) -> dict[str, list[float]]:
    """Per non-empty equal-width bin: mean predicted probability, observed positive fraction, count."""
    prob, target = np.asarray(prob, float), np.asarray(target, float)
    idx = bin_index(prob, n_bins)
    count = np.bincount(idx, minlength=n_bins)
    keep = count > 0
    mean_pred = np.bincount(idx, weights=prob, minlength=n_bins)[keep] / count[keep]
    observed = np.bincount(idx, weights=target, minlength=n_bins)[keep] / count[keep]
    return {"predicted": mean_pred.tolist(), "observed": observed.tolist(), "count": count[keep].tolist()}
