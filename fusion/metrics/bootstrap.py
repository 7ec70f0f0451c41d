"""Patient bootstrap as resampling weights: replicate b counts how often each patient was drawn.

Every evaluation metric in `fusion.metrics.weighted_*` takes a (B, n) matrix of such counts and
returns B values, so the point estimate (one row of ones) and all replicates run through the same
code, as a few matrix products: 1000 replicates on a few hundred patients take well under a second.
A metric computed with counts equals the metric recomputed on the resampled patient list (tests
check this against scikit-learn / scikit-survival / lifelines).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Metric = Callable[[np.ndarray], np.ndarray]


def resample_counts(n: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """(n_bootstrap, n) draw counts: n patients drawn with replacement, n_bootstrap times."""
    rng = np.random.default_rng(seed)
    if n == 0:
        return np.zeros((n_bootstrap, 0))
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_bootstrap).astype(float)


def point(metric: Metric, n: int) -> float:
    """The metric on the sample itself (every patient once)."""
    return float(metric(np.ones((1, n)))[0])


def percentile_ci(
    metric: Metric, counts: np.ndarray, level: float = 0.95, chunk: int = 250
) -> tuple[float, float] | None:
    """Percentile interval of the metric over bootstrap replicates; replicates where it is undefined
    (NaN: e.g. no event or a single class drawn) are skipped; None when fewer than 10 are defined."""
    values = np.concatenate([metric(counts[i : i + chunk]) for i in range(0, len(counts), chunk)])
    values = values[np.isfinite(values)]
    if len(values) < 10:
        return None
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)


def pair_ratio(counts: np.ndarray, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """sum_ij c_i c_j N_ij / sum_ij c_i c_j D_ij per replicate: the form of every pairwise metric
    (AUROC, concordance, time-dependent AUC); NaN where no pair is usable."""
    num = ((counts @ numerator) * counts).sum(axis=1)
    den = ((counts @ denominator) * counts).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def concordance(score: np.ndarray, tol: float = 0.0) -> np.ndarray:
    """(n, n): 1 where score_i > score_j, 0.5 for ties (|difference| <= tol), else 0."""
    diff = score[:, None] - score[None, :]
    return np.where(np.abs(diff) <= tol, 0.5, (diff > 0).astype(float))
