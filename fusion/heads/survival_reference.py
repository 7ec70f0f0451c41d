"""What survival evaluation needs from the TRAINING split, fitted once on its predicted risk.

- Breslow baseline hazard -> S(t | x) for the Brier score;
- Kaplan–Meier of the censoring distribution -> IPCW weights of Uno's C, td-AUC and Brier;
- quantiles of training event times -> default horizons; quantiles of training risk -> risk groups.

`SurvivalHead.fit_reference` fits it, and it travels as plain values inside the evaluated checkpoint
(`checkpoint["fusion"]["evaluation_reference"]`), so `fusion-predict` on a labelled external cohort
scores it against the training split, as training did. A checkpoint may be shared between hospitals,
so no stored number is one training patient's value (README "Patient privacy"):

- both curves are pooled (`fusion.metrics.survival_curves.pooled_knots`): their exact values at points
  of a regular grid from 0 to a round number above the longest follow-up, chosen so that each interval
  between two points holds at least `min_group` training patients, and linear in between;
- the event-time quantiles are read off the pooled distribution of event times (linear between the
  same points), not taken from the sorted times;
- a risk cut point is the mean of the `min_group` training risks nearest the quantile, not one
  patient's predicted risk;
- fewer than `min_group` training patients with a survival label: no reference (the metrics that need
  it are skipped with a warning).

Pooling moves the IPCW metrics very little (README "Patient privacy" gives the figures;
benchmarks/survival_reference.py measures them). `min_group=None` fits the exact estimates, for that
comparison only. Checkpoints written before pooling (exact step functions) still load and score.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fusion.metrics.survival_curves import Breslow, Curve, curve_from_dict, kaplan_meier, pooled, pooled_knots

#: the fewest training patients any stored number aggregates
MIN_GROUP = 10

QUANTILES = (25, 50, 75)


@dataclass
class SurvivalReference:
    baseline: Breslow
    censoring: Curve
    event_quantiles: dict[str, float]  # "q25" -> time
    risk_cutoffs: dict[int, list[float]]  # number of groups -> cut points of training risk

    @classmethod
    def fit(
        cls, risk: np.ndarray, time: np.ndarray, event: np.ndarray, min_group: int | None = MIN_GROUP
    ) -> SurvivalReference:
        """Pooled over groups of at least `min_group` patients (None: exact, never stored by fusion)."""
        risk, time, event = np.asarray(risk, float), np.asarray(time, float), np.asarray(event, bool)
        if not event.any():
            raise ValueError("the training split has no survival event: no baseline hazard can be fitted")
        baseline = Breslow.fit(risk, time, event)
        censoring = kaplan_meier(time, event, reverse=True)
        if min_group is None:
            quantiles = np.quantile(time[event], [q / 100 for q in QUANTILES])
            cutoffs = {2: [float(np.median(risk))], 3: np.quantile(risk, [1 / 3, 2 / 3]).tolist()}
            return cls(baseline, censoring, _named(quantiles), cutoffs)
        if len(time) < min_group:
            raise ValueError(
                f"{len(time)} training patients with a survival label, fewer than {min_group}: no training "
                "reference is stored (it would describe too few patients)"
            )
        knots = pooled_knots(time, min_group)
        return cls(
            baseline.pooled(knots),
            pooled(censoring, knots),
            _named([_pooled_quantile(time[event], knots, q / 100) for q in QUANTILES]),
            {g: [_smoothed_quantile(risk, p, min_group) for p in np.arange(1, g) / g] for g in (2, 3)},
        )

    def to_dict(self) -> dict:
        return {
            "baseline": self.baseline.to_dict(),
            "censoring": self.censoring.to_dict(),
            "event_quantiles": self.event_quantiles,
            "risk_cutoffs": {str(k): v for k, v in self.risk_cutoffs.items()},
        }

    @classmethod
    def from_dict(cls, data: dict) -> SurvivalReference:
        return cls(
            Breslow.from_dict(data["baseline"]),
            curve_from_dict(data["censoring"]),
            dict(data["event_quantiles"]),
            {int(k): list(v) for k, v in data["risk_cutoffs"].items()},
        )


def _named(quantiles: Iterable[float]) -> dict[str, float]:
    return {f"q{q}": float(v) for q, v in zip(QUANTILES, quantiles, strict=True)}


def _pooled_quantile(times: np.ndarray, knots: np.ndarray, p: float) -> float:
    """The p-quantile of `times` from their distribution function at `knots`, linear in between."""
    cdf = np.searchsorted(np.sort(times), knots, side="right") / len(times)
    k = int(np.searchsorted(cdf, p, side="left"))  # cdf[0] = 0 < p <= 1 = cdf[-1]
    return float(knots[k - 1] + (p - cdf[k - 1]) / (cdf[k] - cdf[k - 1]) * (knots[k] - knots[k - 1]))


def _smoothed_quantile(values: np.ndarray, p: float, window: int) -> float:
    """The mean of the `window` sorted values centred on the p-quantile's rank."""
    ordered = np.sort(values)
    window = min(window, len(ordered))
    start = int(np.clip(round(p * (len(ordered) - 1) - (window - 1) / 2), 0, len(ordered) - window))
    return float(ordered[start : start + window].mean())
