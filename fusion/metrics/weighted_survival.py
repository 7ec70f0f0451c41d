"""Survival metrics on bootstrap counts (see `fusion.metrics.bootstrap`): (B, n) counts -> B values.

Definitions are scikit-survival's, which torchsurv shares for Harrell's C:
- comparable pair (i, j): i had the event and T_i < T_j, or T_i == T_j with j censored;
  risk ties (|r_i - r_j| <= 1e-8) count 1/2.
- Uno's C: the same pairs weighted by 1/G(T_i)^2, only events before `tau`; G is the Kaplan–Meier
  estimate of the censoring distribution on the TRAINING split (IPCW).
- cumulative/dynamic AUC at t: cases T_i <= t with an event (weight 1/G(T_i)), controls T_j > t.
- Brier score at t with IPCW (Graf et al.), and its integral over a time grid divided by its length.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fusion.metrics.bootstrap import concordance, pair_ratio
from fusion.metrics.survival_curves import Curve

TIED_TOL = 1e-8


def comparable(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """(n, n) bool: pair (i, j) usable for concordance with i the earlier event."""
    time, event = np.asarray(time, float), np.asarray(event, bool)
    earlier = time[:, None] < time[None, :]
    tied_censored = (time[:, None] == time[None, :]) & ~event[None, :]
    return event[:, None] & (earlier | tied_censored)


def _inverse(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(values > 0, 1.0 / np.where(values > 0, values, 1.0), np.inf)


def harrell_cindex(counts: np.ndarray, risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> np.ndarray:
    pairs = comparable(time, event).astype(float)
    return pair_ratio(counts, pairs * concordance(np.asarray(risk, float), TIED_TOL), pairs)


def uno_cindex(
    counts: np.ndarray,
    risk: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    censoring: Curve,
    tau: float | None = None,
) -> np.ndarray:
    """Uno's IPCW concordance, truncated at `tau` (events at or after tau carry no weight)."""
    time = np.asarray(time, float)
    weight = _inverse(censoring(time)) ** 2
    if tau is not None:
        weight = np.where(time < tau, weight, 0.0)
    usable = comparable(time, event) & (weight > 0)[:, None]
    if not np.isfinite(weight[usable.any(axis=1)]).all():  # G reached 0 before an event: undefined
        return np.full(len(counts), np.nan)
    pairs = np.where(usable, weight[:, None], 0.0)
    return pair_ratio(counts, pairs * concordance(np.asarray(risk, float), TIED_TOL), pairs)


def cumulative_dynamic_auc(
    counts: np.ndarray,
    risk: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    censoring: Curve,
    horizon: float,
) -> np.ndarray:
    """AUC at `horizon`: P(risk of an event before horizon > risk of a patient still followed after)."""
    time, event = np.asarray(time, float), np.asarray(event, bool)
    case = (time <= horizon) & event
    weight = np.where(case, _inverse(censoring(time)), 0.0)
    if not np.isfinite(weight).all():
        return np.full(len(counts), np.nan)
    pairs = weight[:, None] * (time > horizon)[None, :]
    return pair_ratio(counts, pairs * concordance(np.asarray(risk, float), TIED_TOL), pairs)


def brier_contributions(
    surv: np.ndarray, time: npt.ArrayLike, event: npt.ArrayLike, censoring: Curve, times: npt.ArrayLike
) -> np.ndarray:
    """(n, n_times) per-patient IPCW Brier terms; the Brier score at t is their (weighted) mean."""
    time, event, times = np.asarray(time, float), np.asarray(event, bool), np.asarray(times, float)
    case = (time[:, None] <= times[None, :]) & event[:, None]
    control = time[:, None] > times[None, :]
    g_obs = _inverse(censoring(time))[:, None]
    g_t = _inverse(censoring(times))[None, :]
    return np.where(case, surv**2 * g_obs, 0.0) + np.where(control, (1.0 - surv) ** 2 * g_t, 0.0)


def weighted_mean(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per replicate mean of per-patient `values` (n,)."""
    total = counts.sum(axis=1)
    return np.where(total > 0, counts @ values / np.where(total > 0, total, 1.0), np.nan)


def integrate(contributions: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Per-patient trapezoid integral over `times` divided by its span: the IBS is their mean."""
    times = np.asarray(times, float)
    areas = (contributions[:, 1:] + contributions[:, :-1]) / 2 * np.diff(times)[None, :]
    return areas.sum(axis=1) / (times[-1] - times[0])
