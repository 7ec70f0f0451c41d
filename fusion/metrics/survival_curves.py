"""Step-function estimates behind the survival metrics: Kaplan–Meier (of survival or of censoring)
and Breslow's baseline hazard, which turns a Cox risk score into a survival function.

Plain numpy: they are fitted once on the training split and then evaluated many times (every
bootstrap replicate), so they stay small fixed arrays. Checked against scikit-survival and
lifelines in tests/unit/metrics.

The exact estimates jump at the training patients' own times. What is stored in a checkpoint is
their `pooled` form: a `PiecewiseLinear` curve through the exact values at `pooled_knots`, points of a
regular grid (not the data's times) chosen so that every interval between two knots holds at least
`min_group` training patients. No stored number is then a patient's time, and each step between two
stored values aggregates at least `min_group` patients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: the regular grid `pooled_knots` picks its knots from: this many steps up to the rounded-up maximum
GRID_STEPS = 100

#: mantissas of `round_up`: 1, 1.2, 1.5 ... 8 times a power of ten
_NICE = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)


@dataclass
class StepFunction:
    """A right-continuous step function: `values[k]` holds on [times[k], times[k+1]); `start` before."""

    times: np.ndarray
    values: np.ndarray
    start: float = 1.0

    def __call__(self, t: np.ndarray | float) -> np.ndarray:
        t = np.asarray(t, dtype=float)
        values = np.concatenate([[self.start], self.values])
        return values[np.searchsorted(self.times, t, side="right")]

    def to_dict(self) -> dict[str, list[float] | float]:
        return {"times": self.times.tolist(), "values": self.values.tolist(), "start": float(self.start)}

    @classmethod
    def from_dict(cls, data: dict) -> StepFunction:
        return cls(np.asarray(data["times"], float), np.asarray(data["values"], float), float(data["start"]))


@dataclass
class PiecewiseLinear:
    """Linear interpolation through (`knots[k]`, `values[k]`), constant beyond the last knot: the pooled
    form of a step function (see the module docstring)."""

    knots: np.ndarray
    values: np.ndarray

    def __call__(self, t: np.ndarray | float) -> np.ndarray:
        return np.interp(np.asarray(t, dtype=float), self.knots, self.values)

    def to_dict(self) -> dict[str, list[float]]:
        return {"knots": self.knots.tolist(), "values": self.values.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> PiecewiseLinear:
        return cls(np.asarray(data["knots"], float), np.asarray(data["values"], float))


#: a curve of time: exact (fitted in memory) or pooled (stored)
Curve = StepFunction | PiecewiseLinear


def curve_from_dict(data: dict) -> Curve:
    """A stored curve: pooled (``knots``) or, from checkpoints written before pooling, exact (``times``)."""
    return PiecewiseLinear.from_dict(data) if "knots" in data else StepFunction.from_dict(data)


def round_up(x: float) -> float:
    """The smallest 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten strictly above `x` (> 0):
    a ceiling that is a round number, not the largest value itself."""
    if not x > 0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(x))
    return next(m * scale for m in _NICE if m * scale > x)


def pooled_knots(time: np.ndarray, min_group: int, steps: int = GRID_STEPS) -> np.ndarray:
    """0, then points of the regular grid of `steps` steps from 0 to `round_up(max(time))`, each placed as
    soon as the interval since the previous knot holds `min_group` of `time`; a shorter remainder joins
    the last interval, which then ends at the grid point after the longest time. Fewer than `min_group`
    times: 0 and that grid point."""
    time = np.asarray(time, float)
    top = round_up(float(time.max())) if time.size else 1.0
    edges = top * np.arange(steps + 1) / steps
    counts, _ = np.histogram(time, edges)
    knots, pending = [0.0], 0
    for k, count in enumerate(counts):
        pending += int(count)
        if pending >= min_group:
            knots.append(float(edges[k + 1]))
            pending = 0
    if pending:  # the times after the last knot: too few for an interval of their own
        last = float(edges[np.flatnonzero(counts)[-1] + 1])
        knots = [*knots[:-1], last] if len(knots) > 1 else [0.0, last]
    return np.asarray(knots)


def pooled(curve: Curve, knots: np.ndarray) -> PiecewiseLinear:
    """`curve` through its values at `knots` (see `pooled_knots`), linear in between."""
    return PiecewiseLinear(np.asarray(knots, float), np.asarray(curve(knots), float))


def kaplan_meier(time: np.ndarray, event: np.ndarray, reverse: bool = False) -> StepFunction:
    """Kaplan–Meier estimate of P(T > t); `reverse=True` estimates the censoring survival G(t).

    For the censoring distribution, events at a time are taken to happen before censorings at that
    time (so they leave the risk set first), as scikit-survival and torchsurv do.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    uniq, inverse = np.unique(time, return_inverse=True)
    n_events = np.bincount(inverse, weights=event, minlength=len(uniq))
    n_total = np.bincount(inverse, minlength=len(uniq)).astype(float)
    at_risk = n_total[::-1].cumsum()[::-1]
    if reverse:
        at_risk, n_events = at_risk - n_events, n_total - n_events
    ratio = np.divide(n_events, at_risk, out=np.zeros_like(n_events), where=n_events > 0)
    return StepFunction(uniq, np.cumprod(1.0 - ratio))


@dataclass
class Breslow:
    """Breslow's estimate of the baseline cumulative hazard H0 for risk scores r (log hazards),
    so that S(t | r) = exp(-H0(t) * exp(r)). Scores are centred on `offset` against overflow."""

    cumhaz: Curve
    offset: float

    @classmethod
    def fit(cls, risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> Breslow:
        """`offset`: the mean training risk (an aggregate, not one patient's prediction), raised where
        needed so that exp(risk - offset) stays finite."""
        risk, time, event = np.asarray(risk, float), np.asarray(time, float), np.asarray(event, bool)
        offset = max(float(risk.mean()), float(risk.max()) - 500.0) if risk.size else 0.0
        hazard = np.exp(risk - offset)
        uniq, inverse = np.unique(time, return_inverse=True)
        deaths = np.bincount(inverse, weights=event, minlength=len(uniq))
        risk_sum = np.bincount(inverse, weights=hazard, minlength=len(uniq))[::-1].cumsum()[::-1]
        keep = deaths > 0
        return cls(StepFunction(uniq[keep], np.cumsum(deaths[keep] / risk_sum[keep]), start=0.0), offset)

    def survival(self, risk: np.ndarray, times: np.ndarray) -> np.ndarray:
        """(n_patients, n_times) survival probabilities S(t | r)."""
        risk = np.asarray(risk, float)[:, None]
        return np.exp(-self.cumhaz(np.asarray(times, float))[None, :] * np.exp(risk - self.offset))

    def pooled(self, knots: np.ndarray) -> Breslow:
        """The same baseline with its cumulative hazard pooled at `knots` (see `pooled`)."""
        return Breslow(pooled(self.cumhaz, knots), self.offset)

    def to_dict(self) -> dict:
        return {"cumhaz": self.cumhaz.to_dict(), "offset": self.offset}

    @classmethod
    def from_dict(cls, data: dict) -> Breslow:
        return cls(curve_from_dict(data["cumhaz"]), float(data["offset"]))
