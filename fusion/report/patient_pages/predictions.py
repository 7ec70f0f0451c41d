"""The page's predictions: each head's values in readable form, its uncertainty columns, and the
survival curve S(t | x)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fusion.report.patient_pages.figures import Curve, survival_png
from fusion.report.patient_pages.heads import UNKNOWN_UNIT, HeadInfo
from fusion.report.patient_pages.html import (
    EMPTY,
    Markup,
    bar,
    cell,
    esc,
    is_missing,
    number,
    png_img,
    table,
    text,
)

#: predictions columns shown in the page's header or footer, not with the predictions
RUN_COLUMNS = ("patient_id", "model_id", "seen_in_training")
NO_UNCERTAINTY = (
    "No per-patient uncertainty was computed for these predictions (the table has no interval or "
    "prediction-set columns): read each value as a point estimate."
)


def predictions_section(
    row: Mapping[str, Any], heads: list[HeadInfo], curves: Mapping[str, Curve], columns: list[str]
) -> str:
    """Every head's block for one patient (`row`: the patient's predictions, column -> value)."""
    if all(is_missing(row.get(c)) for head in heads for c in head.columns):
        return (
            '<p class="note">No prediction for this patient: none of the model\'s modalities is present '
            "in the manifest.</p>"
        )
    blocks = [_head_block(row, head, curves.get(head.name), columns) for head in heads]
    owned = set(RUN_COLUMNS).union(*(head.owned_columns(columns) for head in heads))
    others = [c for c in columns if c not in owned]
    if others:  # columns no head claims (a later release's, a custom table's): shown as they are
        rows = [(c, row.get(c)) for c in others]
        blocks.append(f'<div class="card"><h3>Other columns</h3>{table(["column", "value"], rows)}</div>')
    if not any(head.uncertainty_columns(columns) for head in heads):
        blocks.append(f'<p class="note">{esc(NO_UNCERTAINTY)}</p>')
    return "".join(blocks)


def _head_block(row: Mapping[str, Any], head: HeadInfo, curve: Curve | None, columns: list[str]) -> str:
    if head.kind == "classes":
        body = _classes(row, head)
    elif head.kind == "probability":
        body = (
            f'<div class="barrow">{bar(row.get(head.columns[0]), _percent(row.get(head.columns[0])))}</div>'
        )
        body += f'<p class="small">probability of {esc(head.name)} ({esc(head.columns[0])})</p>'
    elif head.kind == "survival":
        body = _survival(row, head, curve, columns)
    else:
        body = table(["column", "value"], [(c, row.get(c)) for c in head.columns])
    uncertainty = head.uncertainty_columns(columns)
    if uncertainty:
        body += "<h4>Uncertainty</h4>" + table(["column", "value"], [(c, row.get(c)) for c in uncertainty])
    return f'<div class="card"><h3>{esc(head.name)}</h3>{body}</div>'


def _percent(value: Any) -> str:
    known = number(value)
    return EMPTY if known is None else f"{100 * known:.1f}%"


def _classes(row: Mapping[str, Any], head: HeadInfo) -> str:
    probs = [number(row.get(c)) for c in head.columns]
    known = [p for p in probs if p is not None]
    top = max(known) if known else None
    labels = head.classes or head.columns
    rows = []
    for label, prob in zip(labels, probs, strict=True):
        best = top is not None and prob == top
        css = "best" if best else ""
        rows.append(
            f'<div class="barrow"><span class="cls">{esc(label)}</span>{bar(prob, _percent(prob), css)}'
            + (' <span class="tag">most likely</span>' if best else "")
            + "</div>"
        )
    return "".join(rows) + f'<p class="small">class probabilities ({esc(", ".join(head.columns))})</p>'


def _survival(row: Mapping[str, Any], head: HeadInfo, curve: Curve | None, columns: list[str]) -> str:
    unit = head.time_unit or "time units"
    risk = row.get(head.columns[0])
    parts = [
        f"<p>Risk score (log hazard, <code>{esc(head.columns[0])}</code>): <b>{cell(risk)}</b> "
        '<span class="small">(higher = worse; relative to the training patients)</span></p>'
    ]
    horizon_columns, median_column = head.survival_columns(columns)
    if horizon_columns:
        rows = [
            (Markup(f"{esc(h)} {esc(unit)}"), Markup(bar(row.get(c), text(row.get(c)))))
            for h, c in horizon_columns.items()
        ]
        parts.append(table(["horizon", "probability of survival beyond it"], rows, "horizons"))
    median_value = None if median_column is None else number(row.get(median_column))
    if median_column is not None:
        median = row.get(median_column)
        shown = (
            "not reached: the predicted curve stays above 0.5 over the time range of the training patients"
            if is_missing(median)
            else f"{text(median)} {unit}"
        )
        parts.append(f"<p>Predicted median survival: <b>{esc(shown)}</b></p>")
    if not horizon_columns and median_column is None:
        parts.append('<p class="note">The predictions table has no survival probabilities or median.</p>')
    if not head.time_unit:
        parts.append(f'<p class="small">Times: {esc(UNKNOWN_UNIT)}.</p>')
    if curve is not None and len(curve[0]):
        marks = {}
        for h, c in horizon_columns.items():
            at, prob = number(h), number(row.get(c))
            if at is not None and prob is not None and np.isfinite(prob):
                marks[at] = prob
        title = f"Predicted survival S(t) = S0(t)^exp(risk), {head.name}"
        parts.append(
            png_img(
                survival_png(curve, marks, median_value, head.time_label, title),
                f"predicted survival curve of head {head.name}",
                "plot",
            )
        )
    else:
        parts.append(
            '<p class="note">No survival curve: the checkpoint holds no survival baseline for this head.</p>'
        )
    return "".join(parts)
