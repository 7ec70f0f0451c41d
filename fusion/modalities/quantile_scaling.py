"""Quantile-normal scaling of clinical numbers, fitted on the training patients only.

Why it is the EHR default: lab values and counts in oncology (LDH, PSA, CA-125, positive lymph nodes,
receptor levels) are right-skewed with long tails. After a z-score a handful of extreme patients sit at
+10 sd and dominate a linear token embedding, and a small cohort cannot learn the saturating effect
that a clinician would expect. Mapping each value through the training patients' empirical CDF to a
standard normal score keeps the order, bounds the tails, and needs no per-column choice of log or clip
(the same transform as scikit-learn's ``QuantileTransformer(output_distribution="normal")``).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

MAX_QUANTILES = 100


def fit_quantiles(matrix: np.ndarray, n_quantiles: int = MAX_QUANTILES) -> tuple[np.ndarray, np.ndarray]:
    """Per-column quantiles of an (n, p) training matrix with NaN for missing.

    Returns ``(quantiles, counts)``: (q, p) values at evenly spaced probabilities (NaN for a column with
    no training value) and the (p,) number of training values per column, which bounds the tails.
    """
    matrix = np.asarray(matrix, dtype=np.float64).reshape(len(matrix), -1)
    counts = (~np.isnan(matrix)).sum(axis=0)
    q = int(max(2, min(n_quantiles, matrix.shape[0])))
    quantiles = np.full((q, matrix.shape[1]), np.nan)
    probs = np.linspace(0.0, 1.0, q)
    for j in np.flatnonzero(counts):
        quantiles[:, j] = np.quantile(matrix[~np.isnan(matrix[:, j]), j], probs)
    return quantiles, counts


def quantile_normal(values: np.ndarray, quantiles: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Normal scores of (p,) or (n, p) values; NaN stays NaN, a column never seen in training gives 0.

    Ties are handled as scikit-learn does: the mean of the forward and backward interpolation, so a
    value shared by many training patients lands in the middle of its block of ranks. Values outside
    the training range take the extreme score, which is bounded by the training size (about ±2.6 for
    200 patients) so a new extreme patient cannot produce an arbitrarily large input.
    """
    values = np.asarray(values, dtype=np.float64)
    flat = values.reshape(-1, quantiles.shape[1])
    out = np.full(flat.shape, np.nan)
    probs = np.linspace(0.0, 1.0, quantiles.shape[0])
    for j in range(quantiles.shape[1]):
        seen = ~np.isnan(flat[:, j])
        if counts[j] == 0:
            out[seen, j] = 0.0
            continue
        x, qs = flat[seen, j], quantiles[:, j]
        forward = np.interp(x, qs, probs)
        backward = -np.interp(-x, -qs[::-1], -probs[::-1])
        u = 0.5 * (forward + backward)
        margin = 0.5 / counts[j]
        out[seen, j] = ndtri(np.clip(u, margin, 1.0 - margin))
    return out.reshape(values.shape)
