"""Survival metrics: Harrell's C-index through torchsurv, NaN when undefined."""

from __future__ import annotations

import math

import torch
from torchsurv.metrics.cindex import ConcordanceIndex


def harrell_cindex(risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> float:
    """Harrell's concordance of a risk score (higher = worse prognosis) with censored survival.

    NaN when there is no comparable pair (no event, fewer than two patients, or every event after
    the others' follow-up).
    """
    event = event.bool()
    if risk.numel() < 2 or not bool(event.any()):
        return math.nan
    try:
        value = ConcordanceIndex()(risk.double().flatten(), event.flatten(), time.double().flatten())
    except ValueError as err:  # events, but none before another patient's time: no comparable pair
        if "comparable" not in str(err):
            raise
        return math.nan
    return float(value)
