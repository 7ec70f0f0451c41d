"""Test-time evaluation of a survival head: Harrell's C always (and every epoch); with the training
reference also Uno's C, cumulative/dynamic AUC and Brier score at each horizon, and the integrated
Brier score. Kaplan–Meier curves of predicted risk groups with a log-rank test go to the report.

The artifacts (`report/evaluation.json`) and notes hold no patient's own time: a horizon clipped below
the longest follow-up is rounded down to two significant digits, and the risk groups are stored as
counts (the per-patient times only feed the Kaplan–Meier figure)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from fusion.heads.evaluation import EvaluationSettings, Figure, HeadEvaluation, plot
from fusion.heads.survival_probabilities import horizon_label
from fusion.heads.survival_reference import SurvivalReference
from fusion.metrics import weighted_survival as ws

GROUP_NAMES = {2: ["low risk", "high risk"], 3: ["low risk", "intermediate risk", "high risk"]}


def horizons(
    settings: EvaluationSettings, reference: SurvivalReference, test_time: np.ndarray
) -> dict[str, float]:
    """Key label -> horizon; each clipped below the test set's longest follow-up (so patients remain
    at risk there: the Brier/AUC at the last observed time has no controls), to a round number below
    the next-longest one rather than that patient's time."""
    chosen = (
        {horizon_label(h): h for h in settings.horizons}
        if settings.horizons
        else dict(reference.event_quantiles)
    )
    below_max = test_time[test_time < test_time.max()] if len(test_time) else test_time
    if len(below_max) == 0:
        return {}
    ceiling = _round_down(float(below_max.max()))
    return {label: min(h, ceiling) for label, h in chosen.items()}


def _round_down(x: float) -> float:
    """`x` (> 0) rounded down to two significant digits."""
    scale = 10.0 ** (math.floor(math.log10(x)) - 1)
    return math.floor(x / scale + 1e-9) * scale


def evaluate_survival(
    name: str,
    rows: np.ndarray,
    risk: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    settings: EvaluationSettings,
    reference: SurvivalReference | None,
    full: bool = True,
) -> HeadEvaluation:
    """`risk`, `time`, `event`: the scored rows' values (see `SurvivalHead.evaluate`)."""
    metrics = {f"{name}_cindex": lambda c: ws.harrell_cindex(c, risk, time, event)}
    if not full:
        return HeadEvaluation(rows, metrics)
    artifacts: dict[str, Any] = {"kind": "survival", "n": len(rows), "n_events": int(event.sum())}
    if reference is None:
        artifacts["note"] = (
            "no training reference (checkpoint without it): Uno's C, td-AUC and Brier scores skipped"
        )
    elif len(rows):
        metrics.update(_ipcw_metrics(name, risk, time, event, settings, reference, artifacts))
    groups = _risk_groups(risk, time, event, settings, reference)
    figures = []
    if groups:
        artifacts["risk_groups"] = _group_counts(groups)
        p = groups["logrank_p"]
        title = (
            f"{name}: KM by predicted risk ({groups['cutoff_source']} cut-offs)\n"
            f"log-rank p={'n/a' if p is None else f'{p:.3g}'}, C-index {{{name}_cindex}}, n={len(rows)}"
        )
        figures.append(
            Figure(
                f"km_{name}",
                title,
                "Kaplan–Meier curves of the predicted risk groups "
                "(shaded: 95% CI; ticks: censored patients).",
                plot("km_plot", groups),  # the figure alone sees the per-patient times
            )
        )
    return HeadEvaluation(rows, metrics, artifacts, figures, notes=[_notes(artifacts)])


def _ipcw_metrics(name, risk, time, event, settings, reference, artifacts) -> dict:
    chosen = horizons(settings, reference, time)
    artifacts["horizons"] = chosen
    if not chosen:
        return {}
    censoring = reference.censoring
    metrics: dict[str, Callable[..., Any]] = {
        f"{name}_uno_cindex": lambda c: ws.uno_cindex(c, risk, time, event, censoring, max(chosen.values()))
    }
    for label, h in chosen.items():
        brier = ws.brier_contributions(reference.baseline.survival(risk, [h]), time, event, censoring, [h])[
            :, 0
        ]
        metrics[f"{name}_td_auc_{label}"] = lambda c, h=h: ws.cumulative_dynamic_auc(
            c, risk, time, event, censoring, h
        )
        metrics[f"{name}_brier_{label}"] = lambda c, b=brier: ws.weighted_mean(c, b)
    low, high = min(chosen.values()), max(chosen.values())
    if high > low:
        grid = np.linspace(low, high, settings.ibs_points)
        terms = ws.brier_contributions(reference.baseline.survival(risk, grid), time, event, censoring, grid)
        per_patient = ws.integrate(terms, grid)
        metrics[f"{name}_ibs"] = lambda c: ws.weighted_mean(c, per_patient)
        artifacts["ibs_range"] = [float(low), float(high)]
    return metrics


def _risk_groups(risk, time, event, settings, reference) -> dict[str, Any] | None:
    """Groups cut at quantiles of the training risk (default) or of the test risk; log-rank p-value."""
    from lifelines.statistics import multivariate_logrank_test

    if len(risk) < settings.risk_groups:
        return None
    source = settings.risk_cutoff if reference is not None else "test"
    if source == "train":
        cutoffs = reference.risk_cutoffs[settings.risk_groups]
    else:
        cutoffs = np.quantile(risk, np.linspace(0, 1, settings.risk_groups + 1)[1:-1]).tolist()
    group = np.searchsorted(np.asarray(cutoffs), risk, side="right")
    p_value = None
    if len(np.unique(group)) > 1 and event.any():
        p_value = float(multivariate_logrank_test(time, group, event).p_value)
    return {
        "cutoffs": [float(c) for c in cutoffs],
        "cutoff_source": source,
        "names": GROUP_NAMES[settings.risk_groups],
        "group": group.tolist(),
        "time": time.tolist(),
        "event": event.astype(int).tolist(),
        "logrank_p": p_value,
    }


def _group_counts(groups: dict[str, Any]) -> dict[str, Any]:
    """The risk groups without per-patient values: patients and events per group."""
    group, event = np.asarray(groups["group"]), np.asarray(groups["event"])
    summary = {k: v for k, v in groups.items() if k not in ("group", "time", "event")}
    summary["n"] = [int((group == k).sum()) for k in range(len(groups["names"]))]
    summary["events"] = [int(event[group == k].sum()) for k in range(len(groups["names"]))]
    return summary


def _notes(art: dict[str, Any]) -> str:
    """The report's sentences about this head: events, the reference, horizons, risk groups."""
    notes = [f"Events: {art.get('n_events', 0)}."]
    if art.get("note"):
        notes.append(art["note"] + ".")
    if art.get("horizons"):
        horizons = ", ".join(f"{k} = {v:.4g}" for k, v in art["horizons"].items())
        notes.append(f"Horizons (cohort time unit): {horizons}; Uno's C is truncated at the last one.")
    if art.get("ibs_range"):
        notes.append(f"Integrated Brier score over [{art['ibs_range'][0]:.4g}, {art['ibs_range'][1]:.4g}].")
    groups = art.get("risk_groups")
    if groups:
        p = groups["logrank_p"]
        notes.append(
            f"Risk groups cut at {', '.join(f'{c:.3g}' for c in groups['cutoffs'])} "
            f"({groups['cutoff_source']} risk quantiles); log-rank p = {'n/a' if p is None else f'{p:.3g}'}."
        )
    return " ".join(notes)
