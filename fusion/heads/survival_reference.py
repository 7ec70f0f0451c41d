"""What survival evaluation needs from the TRAINING split, fitted once on its predicted risk.

- Breslow baseline hazard -> S(t | x) for the Brier score;
- Kaplan–Meier of the censoring distribution -> IPCW weights of Uno's C, td-AUC and Brier;
- quantiles of training event times -> default horizons; quantiles of training risk -> risk groups.

It holds step functions and quantiles only (no patient rows). `SurvivalHead.fit_reference` fits it,
and it travels as plain values inside the evaluated checkpoint
(`checkpoint["fusion"]["evaluation_reference"]`), so `fusion-predict` on a labelled external cohort
scores it against the training split, as training did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fusion.metrics.survival_curves import Breslow, StepFunction, kaplan_meier


@dataclass
class SurvivalReference:
    baseline: Breslow
    censoring: StepFunction
    event_quantiles: dict[str, float]  # "q25" -> time
    risk_cutoffs: dict[int, list[float]]  # number of groups -> cut points of training risk

    @classmethod
    def fit(cls, risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> SurvivalReference:
        risk, time, event = np.asarray(risk, float), np.asarray(time, float), np.asarray(event, bool)
        if not event.any():
            raise ValueError("the training split has no survival event: no baseline hazard can be fitted")
        quantiles = np.quantile(time[event], [0.25, 0.5, 0.75])
        return cls(
            baseline=Breslow.fit(risk, time, event),
            censoring=kaplan_meier(time, event, reverse=True),
            event_quantiles={f"q{q}": float(v) for q, v in zip((25, 50, 75), quantiles, strict=True)},
            risk_cutoffs={2: [float(np.median(risk))], 3: np.quantile(risk, [1 / 3, 2 / 3]).tolist()},
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
            StepFunction.from_dict(data["censoring"]),
            dict(data["event_quantiles"]),
            {int(k): list(v) for k, v in data["risk_cutoffs"].items()},
        )
