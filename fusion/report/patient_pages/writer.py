"""`write_patient_pages`: tables in, one HTML page per patient and an index out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fusion.report.patient_pages.explanations import Explanations
from fusion.report.patient_pages.figures import Curve
from fusion.report.patient_pages.heads import HeadInfo
from fusion.report.patient_pages.html import Markup, bar, esc, is_missing, number, table, text
from fusion.report.patient_pages.ids import INDEX_STEM, page_stems
from fusion.report.patient_pages.page import document, footer, section
from fusion.report.patient_pages.predictions import predictions_section
from fusion.report.patient_pages.sections import explanations_section, modalities_section, neighbours_section

#: the folder of the pages inside `folder`
PAGES = "patients"


def write_patient_pages(
    folder: str | Path,
    predictions: pd.DataFrame,
    presence: pd.DataFrame,
    provenance: Mapping[str, Any],
    heads: Sequence[HeadInfo],
    survival_curves: Mapping[str, Mapping[str, Curve]] | None = None,
    neighbours: pd.DataFrame | None = None,
    neighbour_summary: pd.DataFrame | None = None,
    explanations_dir: str | Path | None = None,
) -> list[Path]:
    """Write `<folder>/patients/<patient_id>.html` for every row of `predictions` and
    `<folder>/patients/index.html`; return the pages written (the index last).

    predictions: predictions.csv as a table (patient_id + the heads' columns; uncertainty columns such
    as `<column>_lower` / `_upper` / `_set` are shown when present). presence: patient_id + one bool
    column per model modality. provenance: any JSON-like dict (shown as nested lists). heads: what each
    head's columns mean (`HeadInfo`; `from_heads` builds them). survival_curves: patient id -> head name
    -> (times, S(t | x)). neighbours / neighbour_summary: neighbours.csv / neighbour_summary.csv as
    tables. explanations_dir: a fusion-explain output folder. Any of the optional inputs may be absent:
    its section then says so. Every value is HTML-escaped; a patient id with a path separator is refused
    (`PatientIdError`) before anything is written.
    """
    ids = [str(p) for p in predictions["patient_id"]]
    stems = page_stems(ids)
    out = Path(folder) / PAGES
    out.mkdir(parents=True, exist_ok=True)
    heads = list(heads)
    columns = [str(c) for c in predictions.columns]
    present = _presence(presence)
    explanations = None if explanations_dir is None else Explanations.load(explanations_dir, ids)
    neighbours = _ids_as_text(neighbours)
    neighbour_summary = _ids_as_text(neighbour_summary)
    survival = next((h for h in heads if h.kind == "survival"), None)
    curves = survival_curves or {}
    written = []
    for pid, row in zip(ids, predictions.to_dict("records"), strict=True):
        own_curves = curves.get(pid, {})
        body = "".join(
            [
                _header(pid, row),
                section("Predictions", predictions_section(row, heads, own_curves, columns), "predictions"),
                section("Modalities", modalities_section(present.get(pid, {})), "modalities"),
                section("Why the model predicts this", _explained(explanations, pid, heads), "explanations"),
                section(
                    "Similar patients",
                    neighbours_section(
                        neighbours,
                        neighbour_summary,
                        pid,
                        survival,
                        None if survival is None else own_curves.get(survival.name),
                    ),
                    "similar",
                ),
                footer(dict(provenance)),
                '<p class="small"><a href="index.html">All patients</a></p>',
            ]
        )
        path = out / f"{stems[pid]}.html"
        path.write_text(document(f"Patient {pid}", body), encoding="utf-8")
        written.append(path)
    index = out / f"{INDEX_STEM}.html"
    index.write_text(_index(ids, stems, predictions, heads, present, provenance), encoding="utf-8")
    return [*written, index]


def _header(pid: str, row: Mapping[str, Any]) -> str:
    lines = []
    if not is_missing(row.get("model_id")):
        lines.append(f"model {esc(str(row['model_id'])[:12])}…")
    seen = row.get("seen_in_training")
    if not is_missing(seen):
        lines.append(
            "<b>this patient was in the model's training split</b>: its predictions are optimistic"
            if str(seen).lower() in {"true", "1", "1.0"}
            else "not in the model's training split"
        )
    sub = f'<p class="sub">{" · ".join(lines)}</p>' if lines else ""
    return f"<h1>Patient {esc(pid)}</h1>{sub}"


def _explained(explanations: Explanations | None, pid: str, heads: list[HeadInfo]) -> str:
    if explanations is None:
        return (
            '<p class="note">No explanations were given (run fusion-explain, then fusion-predict with '
            "explanations=DIR).</p>"
        )
    return explanations_section(explanations, pid, [h.name for h in heads])


def _presence(presence: pd.DataFrame) -> dict[str, dict[str, bool]]:
    """patient id -> modality -> present, from a patient_id + one bool column per modality table."""
    if presence is None or not len(presence):
        return {}
    modalities = [c for c in presence.columns if c != "patient_id"]
    return {
        str(r["patient_id"]): {m: bool(r[m]) and not is_missing(r[m]) for m in modalities}
        for r in presence.to_dict("records")
    }


def _ids_as_text(frame: pd.DataFrame | None) -> pd.DataFrame | None:
    """Patient and neighbour ids compared as text (a CSV read without dtype gives numbers)."""
    if frame is None:
        return None
    frame = frame.copy()
    for column in ("patient_id", "neighbour_id"):
        if column in frame.columns:
            frame[column] = frame[column].map(lambda v: v if is_missing(v) else str(v))
    return frame


def _index(
    ids: list[str],
    stems: dict[str, str],
    predictions: pd.DataFrame,
    heads: list[HeadInfo],
    present: dict[str, dict[str, bool]],
    provenance: Mapping[str, Any],
) -> str:
    columns = ["patient", "modalities present"] + [h.name for h in heads]
    rows = []
    for pid, row in zip(ids, predictions.to_dict("records"), strict=True):
        has = present.get(pid, {})
        link = Markup(f'<a href="{esc(stems[pid])}.html">{esc(pid)}</a>')
        shown = ", ".join(m for m, h in has.items() if h) or "none"
        rows.append([link, shown, *(Markup(_headline(row, h)) for h in heads)])
    body = (
        f'<h1>Patient pages</h1><p class="sub">{len(ids)} patients: one page each.</p>'
        + section("Patients", table(columns, rows, "index"), "patients")
        + footer(dict(provenance))
    )
    return document("Patient pages", body)


def _headline(row: Mapping[str, Any], head: HeadInfo) -> str:
    """A head's prediction in one cell: the most likely class, the probability, the median survival."""
    values = [row.get(c) for c in head.columns]
    if all(is_missing(v) for v in values):
        return esc("no prediction")
    if head.kind == "classes":
        labels = head.classes or head.columns
        known = [(p, label) for v, label in zip(values, labels, strict=True) if (p := number(v)) is not None]
        prob, label = max(known)
        return esc(f"{label} ({100 * prob:.0f}%)")
    if head.kind == "probability":
        return bar(values[0], f"{100 * (number(values[0]) or 0.0):.0f}%")
    if head.kind == "survival":
        median = row.get(f"{head.name}_median")
        risk = f"risk {text(values[0])}"
        if f"{head.name}_median" not in row:
            return esc(risk)
        shown = (
            "median not reached" if is_missing(median) else f"median {text(median)} {head.time_unit or ''}"
        )
        return esc(f"{risk}; {shown.strip()}")
    return esc(", ".join(text(v) for v in values))
