"""Survival metrics of one whole set of predictions: the point estimate of the count-weighted
Harrell's C in `weighted_survival` (one implementation for epochs, test time and bootstrap CIs)."""

from __future__ import annotations

import math
from typing import Any

from fusion.metrics import weighted_survival as ws
from fusion.metrics.bootstrap import point
from fusion.metrics.classification import as_array


def harrell_cindex(risk: Any, time: Any, event: Any) -> float:
    """Harrell's concordance of a risk score (higher = worse prognosis) with censored survival.

    NaN when there is no comparable pair (no event, fewer than two patients, or every event after
    the others' follow-up).
    """
    risk, time = as_array(risk).astype(float).ravel(), as_array(time).astype(float).ravel()
    event = as_array(event).astype(bool).ravel()
    if len(risk) < 2:
        return math.nan
    return point(lambda c: ws.harrell_cindex(c, risk, time, event), len(risk))
