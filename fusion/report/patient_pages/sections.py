"""The page's other sections: modalities present and missing, the explanations of fusion-explain, the
similar patients, and the provenance footer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fusion.report.patient_pages.explanations import Explanations
from fusion.report.patient_pages.figures import Curve, km_png
from fusion.report.patient_pages.heads import HeadInfo
from fusion.report.patient_pages.html import (
    Markup,
    cell,
    esc,
    is_missing,
    png_img,
    signed_bar,
    table,
    text,
)
from fusion.retrieval.summaries import neighbour_km

#: features shown per head and target
TOP_FEATURES = 8
#: how to read the signed bars
SIGNS = (
    '<p class="small">Red bars raise the target (a probability, the log hazard or the logit), blue bars '
    "lower it; the longest bar of each table is full length.</p>"
)
#: neighbours.csv columns that are not the neighbour's outcomes
NEIGHBOUR_KEYS = ("patient_id", "rank", "neighbour_id", "similarity")


def modalities_section(presence: Mapping[str, bool]) -> str:
    if not presence:
        return '<p class="note">Which modalities this patient has was not recorded.</p>'
    chips = "".join(
        f'<span class="chip {state}">{esc(name)}: {state}</span>'
        for name, state in ((n, "present" if has else "missing") for n, has in presence.items())
    )
    missing = [name for name, has in presence.items() if not has]
    if len(missing) == len(presence):
        return f'<div>{chips}</div><p class="small">None of the model\'s modalities: no prediction.</p>'
    note = (
        f'<p class="small">The model predicted without {esc(", ".join(missing))}, as it does for any '
        "missing input.</p>"
        if missing
        else ""
    )
    return f"<div>{chips}</div>{note}"


def explanations_section(explanations: Explanations, patient_id: str, head_names: Sequence[str]) -> str:
    contributions = explanations.of(explanations.contributions, patient_id)
    features = explanations.of(explanations.features, patient_id)
    maps = explanations.maps.get(patient_id, [])
    if not len(contributions) and not len(features) and not maps:
        return (
            f'<p class="note">The explanations folder ({esc(explanations.folder.name)}) holds nothing on '
            "this patient (fusion-explain explains the patients given with patients=[…]).</p>"
        )
    parts = []
    if len(contributions):
        parts.append("<h3>Modality contributions</h3>" + SIGNS + _contributions(contributions))
    if len(features):
        parts.append(
            f"<h3>Top features (the {TOP_FEATURES} largest |attribution| per target)</h3>"
            + _features(features)
        )
    if maps:
        parts.append("<h3>Maps</h3>" + _maps(maps, head_names))
    return "".join(parts)


def _maps(maps: list[Path], head_names: Sequence[str]) -> str:
    """The map PNGs grouped by what they show: a head's primary target (`<id>_..._<head>.png`) or the
    MIL attention (`tiles/<id>.png`)."""
    groups: dict[str, list[Path]] = {}
    for png in maps:
        head = png.stem.rsplit("_", 1)[-1]
        groups.setdefault(f"head {head}" if head in head_names else "attention", []).append(png)
    blocks = []
    for title, pngs in groups.items():
        figures = "".join(
            f"<figure>{png_img(png.read_bytes(), f'map {png.name}', 'map')}"
            f"<figcaption>{esc(png.parent.name)}/{esc(png.name)}</figcaption></figure>"
            for png in pngs
        )
        blocks.append(f'<h4>{esc(title)}</h4><div class="maps">{figures}</div>')
    return "".join(blocks)


def _contributions(rows: pd.DataFrame) -> str:
    blocks = []
    for (head, target), group in rows.groupby(["head", "target"], sort=False):
        scale = float(np.nanmax(np.abs(group["contribution"].to_numpy(float)))) if len(group) else 0.0
        table_rows = [
            (r["modality"], Markup(signed_bar(r["contribution"], scale, text(r["contribution"]))))
            for _, r in group.iterrows()
        ]
        caption = ""
        if {"base_value", "prediction"} <= set(group.columns):
            first = group.iloc[0]
            caption = (
                f'<p class="small">base value {cell(first["base_value"])} + the contributions = prediction '
                f"{cell(first['prediction'])}</p>"
            )
        blocks.append(
            f'<div class="card"><h4>{esc(head)}: {esc(target)}</h4>'
            f"{table(['modality', 'contribution'], table_rows, 'contrib')}{caption}</div>"
        )
    return f'<div class="grid">{"".join(blocks)}</div>'


def _features(rows: pd.DataFrame) -> str:
    blocks = []
    for (head, target), group in rows.groupby(["head", "target"], sort=False):
        attribution = group["attribution"].to_numpy(float)
        top = group.iloc[np.argsort(-np.abs(np.nan_to_num(attribution)), kind="stable")[:TOP_FEATURES]]
        scale = float(np.nanmax(np.abs(top["attribution"].to_numpy(float)))) if len(top) else 0.0
        table_rows = [
            (
                r["modality"],
                r["feature"],
                r.get("value"),
                Markup(signed_bar(r["attribution"], scale, text(r["attribution"]))),
            )
            for _, r in top.iterrows()
        ]
        blocks.append(
            f'<div class="card"><h4>{esc(head)}: {esc(target)}</h4>'
            f"{table(['modality', 'feature', 'value', 'attribution'], table_rows, 'contrib')}</div>"
        )
    return f'<div class="grid wide">{"".join(blocks)}</div>'


def neighbours_section(
    neighbours: pd.DataFrame | None,
    summary: pd.DataFrame | None,
    patient_id: str,
    survival: HeadInfo | None,
    predicted: Curve | None,
) -> str:
    if neighbours is None:
        return '<p class="note">Similar patients were not searched (no neighbours table).</p>'
    rows = neighbours[neighbours["patient_id"] == patient_id]
    found = rows[~rows["neighbour_id"].map(is_missing)] if len(rows) else rows
    if not len(found):
        return (
            '<p class="note">No similar patients for this patient (none of the model\'s modalities is '
            "present, or the patient was not searched).</p>"
        )
    found = found.sort_values("rank") if "rank" in found.columns else found
    outcome_columns = [c for c in found.columns if c not in NEIGHBOUR_KEYS]
    columns = ["rank", "neighbour", "similarity", *outcome_columns]
    table_rows = [
        (r.get("rank"), r["neighbour_id"], r.get("similarity"), *(r[c] for c in outcome_columns))
        for _, r in found.iterrows()
    ]
    parts = [table(columns, table_rows, "neighbours")]
    parts.append(_neighbour_km(found, survival, predicted))
    if summary is not None and len(summary):
        own = summary[summary["patient_id"] == patient_id]
        if len(own):
            values = own.iloc[0].drop(labels=["patient_id"])
            parts.append(
                "<h4>Summary of the similar patients</h4>"
                + table(["", "value"], list(values.items()), "summary")
            )
    return "".join(parts)


def _neighbour_km(rows: pd.DataFrame, survival: HeadInfo | None, predicted: Curve | None) -> str:
    if survival is None or not {survival.time_column, survival.event_column} <= set(rows.columns):
        return ""
    times, values = neighbour_km(rows, survival.time_column, survival.event_column)
    if not len(times):
        return '<p class="note">No similar patient has a known survival outcome: no Kaplan–Meier curve.</p>'
    known = pd.to_numeric(rows[survival.time_column], errors="coerce").notna()
    png = km_png((times, values), int(known.sum()), predicted, survival.time_label)
    return png_img(png, "Kaplan–Meier curve of the similar patients", "plot")
