"""Classification metrics on bootstrap counts (see `fusion.metrics.bootstrap`): each takes a (B, n)
count matrix and returns B values, NaN where the metric is undefined for that replicate.

Definitions follow scikit-learn (AUROC with ties counted 1/2; macro one-vs-rest AUROC averaged over
the classes present; balanced accuracy = mean recall of present classes; macro F1 over the labels
present in truth or prediction; average precision = sum (R_k - R_{k-1}) P_k) and torchmetrics
(ECE: equal-width bins, sum of |observed - predicted| weighted by the bin's share).
"""

from __future__ import annotations

import numpy as np

from fusion.metrics.bootstrap import concordance, pair_ratio


def _safe_divide(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def auroc(counts: np.ndarray, score: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Binary AUROC: P(score of a positive > score of a negative), ties 1/2."""
    pos = np.asarray(target) == 1
    usable = (pos[:, None] & ~pos[None, :]).astype(float)
    return pair_ratio(counts, usable * concordance(np.asarray(score, float)), usable)


def macro_auroc(counts: np.ndarray, prob: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Mean one-vs-rest AUROC over the classes drawn; NaN when fewer than two classes are drawn."""
    per_class = np.stack([auroc(counts, prob[:, k], target == k) for k in range(prob.shape[1])], axis=1)
    present = counts @ np.eye(prob.shape[1])[target] > 0
    per_class = np.where(present, per_class, np.nan)
    with np.errstate(invalid="ignore"), np.testing.suppress_warnings() as sup:
        sup.filter(RuntimeWarning)
        mean = np.nanmean(per_class, axis=1)
    return np.where(present.sum(axis=1) >= 2, mean, np.nan)


def _class_counts(counts: np.ndarray, pred: np.ndarray, target: np.ndarray, n_classes: int):
    """Weighted true positives, true totals and predicted totals per class: (B, K) each."""
    truth, guess = np.eye(n_classes)[target], np.eye(n_classes)[pred]
    return counts @ (truth * guess), counts @ truth, counts @ guess


def balanced_accuracy(counts: np.ndarray, pred: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean recall over the classes present in the truth."""
    tp, true, _ = _class_counts(counts, pred, target, n_classes)
    recall = _safe_divide(tp, true)
    present = true > 0
    n_present = present.sum(axis=1)
    return _safe_divide(np.where(present, recall, 0.0).sum(axis=1), n_present)


def f1_macro(counts: np.ndarray, pred: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """Mean F1 over the classes present in truth or prediction."""
    tp, true, guessed = _class_counts(counts, pred, target, n_classes)
    den = true + guessed  # = 2TP + FP + FN
    present = den > 0
    f1 = np.where(present, _safe_divide(2 * tp, den), 0.0)
    return _safe_divide(f1.sum(axis=1), present.sum(axis=1))


def average_precision(counts: np.ndarray, score: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Area under the precision–recall curve as a step sum (scikit-learn's average_precision)."""
    score, target = np.asarray(score, float), np.asarray(target, float)
    order = np.argsort(-score, kind="stable")
    sorted_score = score[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(sorted_score) != 0), len(score) - 1]
    w = counts[:, order]
    tp = np.cumsum(w * target[order], axis=1)[:, last_of_group]
    fp = np.cumsum(w * (1 - target[order]), axis=1)[:, last_of_group]
    recall = _safe_divide(tp, tp[:, -1:])
    precision = np.nan_to_num(_safe_divide(tp, tp + fp))
    steps = np.diff(np.concatenate([np.zeros((len(w), 1)), recall], axis=1), axis=1)
    return np.where(tp[:, -1] > 0, (steps * precision).sum(axis=1), np.nan)


def bin_index(prob: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width bin of each probability: [k/n, (k+1)/n), with 1.0 in the last bin."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return np.clip(np.searchsorted(edges, prob, side="right") - 1, 0, n_bins - 1)


def expected_calibration_error(
    counts: np.ndarray, prob: np.ndarray, target: np.ndarray, n_bins: int = 10
) -> np.ndarray:
    """sum over bins of |sum_i (y_i - p_i)| / n: the share-weighted gap between observed and predicted."""
    prob, target = np.asarray(prob, float), np.asarray(target, float)
    gap = np.eye(n_bins)[bin_index(prob, n_bins)] * (target - prob)[:, None]
    return _safe_divide(np.abs(counts @ gap).sum(axis=1), counts.sum(axis=1))
