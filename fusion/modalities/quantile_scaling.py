"""Quantile-normal scaling of clinical numbers, fitted on the training patients only.

Why it is the EHR default: lab values and counts in oncology (LDH, PSA, CA-125, positive lymph nodes,
receptor levels) are right-skewed with long tails. After a z-score a handful of extreme patients sit at
+10 sd and dominate a linear token embedding, and a small cohort cannot learn the saturating effect
that a clinician would expect. Mapping each value through the training patients' empirical CDF to a
standard normal score keeps the order, bounds the tails, and needs no per-column choice of log or clip
(the transform of scikit-learn's ``QuantileTransformer(output_distribution="normal")``).

What is stored holds no patient's value (`fusion.modalities.privacy`): the quantiles sit at a FIXED grid
of probabilities (the centres of 100 equal bins, never 0 or 1, so never the minimum or maximum), and each
is the mean of the interpolated empirical quantile function over a window of ``min_group / n`` in
probability, i.e. an average over about ``min_group`` neighbouring patients. A column with fewer than
``QUANTILE_GROUPS * min_group`` training values gets no quantiles (NaN): the caller scales it otherwise.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

N_QUANTILES = 100
#: quantiles need this many groups of `min_group` values in a column: each tail window then holds at most
#: half of the patients, so the scores still have a shape (below it: z-score, or nothing at all)
QUANTILE_GROUPS = 2
_WINDOW_POINTS = 65  # points per window at which the interpolated quantile function is averaged


def quantile_grid(n_quantiles: int = N_QUANTILES) -> np.ndarray:
    """The fixed probabilities of the stored quantiles: bin centres (k + 0.5) / n_quantiles."""
    return (np.arange(n_quantiles) + 0.5) / n_quantiles


def smoothed_quantiles(values: np.ndarray, probs: np.ndarray, min_group: int) -> np.ndarray:
    """The mean of the linearly interpolated quantile function of `values` over a window of width
    ``min_group / n`` around each probability (shifted to lie inside [0, 1]). Monotone in `probs`."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    width = min(1.0, min_group / len(values))
    centres = np.clip(probs, width / 2, 1.0 - width / 2)
    offsets = np.linspace(-width / 2, width / 2, _WINDOW_POINTS)
    points = np.clip(centres[:, None] + offsets[None, :], 0.0, 1.0)
    return np.quantile(values, points.reshape(-1)).reshape(points.shape).mean(axis=1)


def fit_quantiles(
    matrix: np.ndarray, min_group: int, n_quantiles: int = N_QUANTILES
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column smoothed quantiles of an (n, p) training matrix with NaN for missing.

    Returns ``(quantiles, counts)``: (n_quantiles, p) values at `quantile_grid` (a column of NaN where
    the column has fewer than ``QUANTILE_GROUPS * min_group`` training values) and the (p,) number of
    training values per column.
    """
    matrix = np.asarray(matrix, dtype=np.float64).reshape(len(matrix), -1)
    counts = (~np.isnan(matrix)).sum(axis=0)
    probs = quantile_grid(n_quantiles)
    quantiles = np.full((n_quantiles, matrix.shape[1]), np.nan)
    for j in np.flatnonzero(counts >= QUANTILE_GROUPS * min_group):
        quantiles[:, j] = smoothed_quantiles(matrix[~np.isnan(matrix[:, j]), j], probs, min_group)
    return quantiles, counts


def has_quantiles(quantiles: np.ndarray) -> np.ndarray:
    """(p,) bool: the columns that were fitted (the others are NaN)."""
    return ~np.isnan(quantiles).any(axis=0)


def quantile_normal(
    values: np.ndarray, quantiles: np.ndarray, counts: np.ndarray, probs: np.ndarray | None = None
) -> np.ndarray:
    """Normal scores of (p,) or (n, p) values; NaN stays NaN, a column without quantiles or training
    values gives 0. `probs`: the probabilities of the rows of `quantiles` (default `quantile_grid`).

    Ties are handled as scikit-learn does: the mean of the forward and backward interpolation, so a
    value shared by many training patients lands in the middle of its block of ranks. Values outside
    the stored range take the extreme score, bounded by the grid and the training size (about ±2.6),
    so a new extreme patient cannot produce an arbitrarily large input.
    """
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(-1, quantiles.shape[1])
    out = np.full(flat.shape, np.nan)
    probs = quantile_grid(quantiles.shape[0]) if probs is None else np.asarray(probs, dtype=np.float64)
    fitted = has_quantiles(quantiles)
    for j in range(quantiles.shape[1]):
        seen = ~np.isnan(flat[:, j])
        if counts[j] == 0 or not fitted[j]:
            out[seen, j] = 0.0
            continue
        x, qs = flat[seen, j], quantiles[:, j]
        forward = np.interp(x, qs, probs)
        backward = -np.interp(-x, -qs[::-1], -probs[::-1])
        u = 0.5 * (forward + backward)
        margin = 0.5 / counts[j]
        out[seen, j] = ndtri(np.clip(u, margin, 1.0 - margin))
    return out.reshape(values.shape)
