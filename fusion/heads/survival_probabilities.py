"""Survival a clinician can read: each patient's S(t | x) from the Breslow baseline of the training
reference (`SurvivalReference`, stored in the evaluated checkpoint) and their predicted risk.

S(t | x) = exp(-H0(t) * exp(risk - offset)). The stored baseline H0 is pooled (linear between its knots;
`fusion.metrics.survival_curves`), so S is read off the same interpolation:

- ``<head>_prob_<h>``: S(h | x) at each horizon h (`horizon_label` names it); empty beyond the baseline's
  range (its last knot), where the training follow-up says nothing;
- ``<head>_median``: the first time S(t | x) <= 0.5, on the baseline's interpolated curve; empty when the
  curve stays above 0.5 over the baseline's range ("not reached").

Times are in the cohort's unit: the head option ``time_unit``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fusion.heads.survival_reference import SurvivalReference
from fusion.metrics.survival_curves import Breslow, PiecewiseLinear

#: significant digits of the default horizons (the training event-time quartiles, rounded down), so the
#: columns read ``survival_prob_14``, not ``survival_prob_14.2857``
HORIZON_DIGITS = 2


def horizon_label(h: float) -> str:
    """How a horizon is written in column and metric names: 12.0 -> "12", 7.5 -> "7.5"."""
    return f"{float(h):g}"


def prediction_horizons(reference: dict[str, Any], horizons: Sequence[float] | None = None) -> list[float]:
    """`horizons` (``evaluation.horizons``) when set, else the reference's 25/50/75% event-time quantiles
    rounded down to `HORIZON_DIGITS` significant digits."""
    if horizons:
        return sorted(float(h) for h in horizons)
    quantiles = dict(reference["event_quantiles"]).values()
    return sorted({_round_down(float(q), HORIZON_DIGITS) for q in quantiles})


def _round_down(x: float, digits: int) -> float:
    """`x` rounded DOWN to `digits` significant digits (so a quartile stays within the baseline's range)."""
    if not x > 0:
        return x
    scale = 10.0 ** (math.floor(math.log10(x)) - digits + 1)
    return float(f"{math.floor(x / scale + 1e-9) * scale:.{digits}g}")


def _baseline(reference: dict[str, Any]) -> Breslow:
    return SurvivalReference.from_dict(reference).baseline


def baseline_range(baseline: Breslow) -> float:
    """The last time the baseline knows (its last knot, or last event time for an exact curve)."""
    curve = baseline.cumhaz
    times = curve.knots if isinstance(curve, PiecewiseLinear) else curve.times
    return float(times[-1]) if len(times) else 0.0


def survival_curve(
    reference: dict[str, Any], risk: float | np.ndarray, times: Sequence[float] | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(times, probabilities) of S(t | risk): `times` default to 0 and the baseline's own points (its
    knots: the curve is linear in H0 between them). `risk` a number -> probabilities (T,); an array of
    N risks -> (N, T). `reference`: a survival head's stored reference (`SurvivalReference.to_dict`)."""
    baseline = _baseline(reference)
    if times is None:
        curve = baseline.cumhaz
        own = curve.knots if isinstance(curve, PiecewiseLinear) else curve.times
        times = np.unique(np.concatenate([[0.0], own]))
    grid = np.asarray(times, float)
    probs = baseline.survival(np.atleast_1d(np.asarray(risk, float)), grid)
    return grid, (probs[0] if np.ndim(risk) == 0 else probs)


def median_survival(reference: dict[str, Any], risk: np.ndarray) -> np.ndarray:
    """Per risk, the first time S(t | risk) <= 0.5 (NaN when not reached over the baseline's range)."""
    return _median(_baseline(reference), np.asarray(risk, float))


def _median(baseline: Breslow, risk: np.ndarray) -> np.ndarray:
    # S <= 0.5  <=>  H0(t) >= log 2 * exp(offset - risk); H0 is non-decreasing
    target = math.log(2.0) * np.exp(baseline.offset - risk)
    curve = baseline.cumhaz
    result = np.full(risk.shape, np.nan)
    if isinstance(curve, PiecewiseLinear):
        times, values = curve.knots, curve.values
    else:  # an exact step function (checkpoints written before pooling): the step's own time
        times, values = curve.times, curve.values
    k = np.searchsorted(values, target, side="left")  # first index with values[k] >= target
    reached = (k < len(values)) & np.isfinite(target)
    if isinstance(curve, PiecewiseLinear):
        at = k[reached]
        before = np.maximum(at - 1, 0)
        span = values[at] - values[before]
        fraction = np.divide(target[reached] - values[before], span, out=np.zeros_like(span), where=span > 0)
        result[reached] = times[before] + fraction * (times[at] - times[before])
    else:
        result[reached] = times[k[reached]]
    return result


def survival_columns(
    name: str, reference: dict[str, Any], risk: np.ndarray, horizons: Sequence[float] | None = None
) -> dict[str, np.ndarray]:
    """``<name>_prob_<h>`` per horizon and ``<name>_median`` for the risks of one survival head (NaN
    where the risk is missing, past the baseline's range, or the median is not reached)."""
    baseline = _baseline(reference)
    risk = np.asarray(risk, float)
    finite = np.isfinite(risk)
    last = baseline_range(baseline)
    columns: dict[str, np.ndarray] = {}
    for h in prediction_horizons(reference, horizons):
        values = np.full(risk.shape, np.nan)
        if h <= last:
            values[finite] = baseline.survival(risk[finite], np.asarray([h]))[:, 0]
        columns[f"{name}_prob_{horizon_label(h)}"] = values
    median = np.full(risk.shape, np.nan)
    median[finite] = _median(baseline, risk[finite])
    columns[f"{name}_median"] = median
    return columns
