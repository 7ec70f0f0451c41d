"""fusion-predict's `report=patients`: gather the page inputs of a prediction run (which modalities each
patient has, the heads, the survival curves from the checkpoint's stored baseline, the neighbour tables of
this run and its provenance) and write the pages."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from fusion.data.records import PatientRecord
from fusion.errors import ConfigError
from fusion.heads.survival_probabilities import survival_curve
from fusion.report.patient_pages.figures import Curve
from fusion.report.patient_pages.heads import HeadInfo, from_heads
from fusion.report.patient_pages.html import is_missing
from fusion.report.patient_pages.writer import write_patient_pages

#: where the pages go, under the folder of predictions.csv: report/patients/
REPORT = "report"
#: the values of fusion-predict's `report=`
REPORT_KINDS = ("patients",)


def check_report_options(
    report: str | None, explanations: str | Path | None, output: str | Path | None
) -> None:
    """fusion-predict's `report=` and `explanations=`, checked before anything is predicted."""
    if report is None:
        if explanations is not None:
            raise ConfigError("explanations=DIR is shown on the patient pages: add report=patients")
        return
    if report not in REPORT_KINDS:
        raise ConfigError(
            f"report={report!r} is not a report fusion-predict writes (choose: {', '.join(REPORT_KINDS)})"
        )
    if output is None:
        raise ConfigError("report=patients writes report/patients/ beside predictions.csv: give output=PATH")
    if explanations is not None and not Path(explanations).is_dir():
        raise ConfigError(f"explanations={explanations}: no such folder (the out= folder of fusion-explain)")


def write_prediction_pages(
    predictions_csv: str | Path,
    frame: pd.DataFrame,
    heads: Mapping[str, Any],
    modalities: Sequence[str],
    records: Sequence[PatientRecord],
    references: Mapping[str, Mapping[str, Any]],
    provenance: Mapping[str, Any],
    explanations_dir: str | Path | None = None,
    neighbours: pd.DataFrame | None = None,
    neighbour_summary: pd.DataFrame | None = None,
) -> list[Path]:
    """Pages of a prediction run in `report/patients/` beside `predictions_csv`.

    records: the data module's records of the predicted patients (a patient without any model modality
    has none: all its modalities are shown missing). references: the checkpoint's stored evaluation
    references (head -> `SurvivalReference` dict). provenance: the run's (as in the predictions'
    sidecar). neighbours / neighbour_summary: this run's similar patients (None: not computed); tables
    of an earlier run lying in the folder are never read, so a page cannot show another model's neighbours."""
    infos = from_heads(heads)
    return write_patient_pages(
        Path(predictions_csv).parent / REPORT,
        frame,
        presence_table(frame["patient_id"], records, modalities),
        dict(provenance),
        infos,
        survival_curves=predicted_curves(frame, infos, references),
        neighbours=neighbours,
        neighbour_summary=neighbour_summary,
        explanations_dir=explanations_dir,
    )


def presence_table(
    patient_ids: Sequence[str] | pd.Series, records: Sequence[PatientRecord], modalities: Sequence[str]
) -> pd.DataFrame:
    """patient_id + one bool column per modality: whether the manifest gave the patient that input."""
    by_id = {r.patient_id: r for r in records}
    rows = []
    for pid in patient_ids:
        record = by_id.get(str(pid))
        refs = record.refs if record is not None else {}
        rows.append({"patient_id": str(pid), **{m: refs.get(m) is not None for m in modalities}})
    return pd.DataFrame(rows, columns=["patient_id", *modalities])


def predicted_curves(
    frame: pd.DataFrame, heads: Sequence[HeadInfo], references: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Curve]]:
    """patient id -> survival head -> its predicted curve, for every survival head with a stored
    reference and every patient with a risk."""
    curves: dict[str, dict[str, Curve]] = {}
    for head in heads:
        reference = references.get(head.name)
        if head.kind != "survival" or not reference:
            continue
        for pid, risk in zip(frame["patient_id"], frame[head.columns[0]], strict=True):
            if not is_missing(risk):
                curves.setdefault(str(pid), {})[head.name] = survival_curve(dict(reference), float(risk))
    return curves
