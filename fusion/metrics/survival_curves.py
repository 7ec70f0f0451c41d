"""Step-function estimates behind the survival metrics: Kaplan–Meier (of survival or of censoring)
and Breslow's baseline hazard, which turns a Cox risk score into a survival function.

Plain numpy: they are fitted once on the training split and then evaluated many times (every
bootstrap replicate), so they stay small fixed arrays. Checked against scikit-survival and
lifelines in tests/unit/metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

    cumhaz: StepFunction
    offset: float

    @classmethod
    def fit(cls, risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> Breslow:
        risk, time, event = np.asarray(risk, float), np.asarray(time, float), np.asarray(event, bool)
        offset = float(risk.max()) if risk.size else 0.0
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

    def to_dict(self) -> dict:
        return {"cumhaz": self.cumhaz.to_dict(), "offset": self.offset}

    @classmethod
    def from_dict(cls, data: dict) -> Breslow:
        return cls(StepFunction.from_dict(data["cumhaz"]), float(data["offset"]))
