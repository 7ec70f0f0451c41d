"""What a patient's neighbours went on to have, one row per query patient (``neighbour_summary.csv``): the
Kaplan–Meier curve of their survival (median, and survival at the evaluation horizons), their events,
their response rate and their grade distribution, and how similar they are on average.

Computed from the neighbour table alone (`fusion.retrieval.neighbours`), so any of its rows can be
summarised again: `neighbour_km` gives a patient page its Kaplan–Meier plot.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fusion.heads.base import Head
from fusion.heads.grade import GradeHead, column_label
from fusion.heads.response import ResponseHead
from fusion.heads.survival import SurvivalHead
from fusion.heads.survival_probabilities import horizon_label, prediction_horizons
from fusion.metrics.survival_curves import kaplan_meier


def summary_horizons(
    heads: dict[str, Head], references: dict[str, dict[str, Any]], horizons: Sequence[float] | None = None
) -> dict[str, list[float]]:
    """Survival head -> the horizons its ``km_..._<h>`` columns are read at: `horizons`
    (``evaluation.horizons``) when given, else the 25/50/75% quantiles of training event times stored in the
    checkpoint's evaluation reference, rounded as the predictions' ``survival_prob_<h>`` columns round them
    (`prediction_horizons`), so both tables name the same horizons; none when neither is known."""
    out: dict[str, list[float]] = {}
    for name, head in heads.items():
        if not isinstance(head, SurvivalHead):
            continue
        reference = references.get(name)
        if horizons or reference:
            out[name] = prediction_horizons(reference or {}, horizons)
        else:
            out[name] = []
    return out


def neighbour_km(
    neighbours_rows: pd.DataFrame, time_column: str = "survival_time", event_column: str = "survival_event"
) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan–Meier survival of the neighbours in `neighbours_rows` (rows of neighbours.csv) with a known
    survival label: (times, survival), starting at (0, 1), one step per distinct time; empty arrays when no
    neighbour has one."""
    if time_column not in neighbours_rows or event_column not in neighbours_rows:
        return np.zeros(0), np.zeros(0)
    time = pd.to_numeric(neighbours_rows[time_column], errors="coerce").to_numpy(float)
    event = pd.to_numeric(neighbours_rows[event_column], errors="coerce").to_numpy(float)
    known = ~(np.isnan(time) | np.isnan(event))
    if not known.any():
        return np.zeros(0), np.zeros(0)
    curve = kaplan_meier(time[known], event[known] == 1)
    return np.concatenate([[0.0], curve.times]), np.concatenate([[1.0], curve.values])


def km_median(times: np.ndarray, survival: np.ndarray) -> float:
    """The first time the curve reaches 0.5 or below; NaN when it stays above."""
    reached = np.flatnonzero(survival <= 0.5)
    return float(times[reached[0]]) if len(reached) else math.nan


def km_at(times: np.ndarray, survival: np.ndarray, horizon: float) -> float:
    """S(horizon) of a step curve; NaN past the last neighbour's time unless the curve already reached 0
    (beyond the follow-up the estimate says nothing)."""
    if not len(times) or (horizon > times[-1] and survival[-1] > 0):
        return math.nan
    return float(survival[np.searchsorted(times, horizon, side="right") - 1])


def neighbour_summary(
    neighbours: pd.DataFrame, heads: dict[str, Head], horizons: dict[str, list[float]]
) -> pd.DataFrame:
    """One row per query patient of `neighbours` (in their order): patient_id, n_neighbours, each survival
    head's km_median / km_<h> / n_events, each response head's rate and known count, each grade head's
    fraction per class, and mean_similarity. A patient without neighbours: n_neighbours 0, the rest empty."""
    rows = []
    for patient_id, found in neighbours.groupby("patient_id", sort=False):
        found = found[found["neighbour_id"].notna()]
        row: dict[str, Any] = {"patient_id": patient_id, "n_neighbours": len(found)}
        for name, head in sorted(heads.items(), key=lambda item: _kind_order(item[1])):
            row.update(_head_summary(name, head, found, horizons.get(name, [])))
        row["mean_similarity"] = float(found["similarity"].mean()) if len(found) else math.nan
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in [c for c in frame.columns if c.startswith("n_")]:  # counts: 3, not 3.0, beside empty cells
        frame[column] = frame[column].astype("Int64")
    return frame


def _kind_order(head: Head) -> int:
    """Survival first, then response, then grade: the order of neighbour_summary.csv's columns."""
    kinds = (SurvivalHead, ResponseHead, GradeHead)
    return next((i for i, kind in enumerate(kinds) if isinstance(head, kind)), len(kinds))


def _head_summary(name: str, head: Head, found: pd.DataFrame, horizons: list[float]) -> dict[str, Any]:
    empty = found.empty
    if isinstance(head, SurvivalHead):
        stem = "survival" if name == "survival" else name
        times, survival = neighbour_km(found, *head.columns)
        out = {f"km_median_{stem}": math.nan if empty else km_median(times, survival)}
        for h in horizons:
            out[f"km_{stem}_{horizon_label(h)}"] = math.nan if empty else km_at(times, survival, h)
        events = _numbers(found, head.columns[1])
        out["n_events" if name == "survival" else f"n_events_{name}"] = (
            math.nan if empty else int((events == 1).sum())
        )
        return out
    if isinstance(head, ResponseHead):
        values = _numbers(found, head.columns[0]).dropna()
        rate, known = (
            ("response_rate", "n_response_known")
            if name == "response"
            else (f"{name}_rate", f"n_{name}_known")
        )
        return {
            rate: float((values == 1).mean()) if len(values) else math.nan,
            known: math.nan if empty else len(values),
        }
    if isinstance(head, GradeHead):
        column = head.columns[0]
        values = found[column].dropna().map(_class_text) if column in found else pd.Series(dtype=str)
        return {
            f"{name}_{column_label(c)}": float((values == c).mean()) if len(values) else math.nan
            for c in head.classes
        }
    return {}


def _numbers(found: pd.DataFrame, column: str) -> pd.Series:
    """A label column as numbers (NaN where unknown); empty when the neighbour table lacks it."""
    if column not in found:
        return pd.Series(dtype=float)
    return pd.to_numeric(found[column], errors="coerce")


def _class_text(value: Any) -> str:
    """A grade cell as the head's class label ('2', 2 and 2.0 name the same class)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip()
