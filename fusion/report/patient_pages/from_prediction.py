"""fusion-predict's `report=patients`: gather the page inputs of a prediction run (which modalities each
patient has, the heads, the survival curves from the checkpoint's stored baseline, neighbours.csv and the
provenance sidecar when they were written beside predictions.csv) and write the pages."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fusion.data.records import PatientRecord
from fusion.errors import ConfigError
from fusion.heads.survival_reference import SurvivalReference
from fusion.report.patient_pages.figures import Curve
from fusion.report.patient_pages.heads import HeadInfo, from_heads
from fusion.report.patient_pages.html import is_missing
from fusion.report.patient_pages.writer import write_patient_pages
from fusion.version import __version__

#: where the pages go, under the folder of predictions.csv: report/patients/
REPORT = "report"
#: the values of fusion-predict's `report=`
REPORT_KINDS = ("patients",)
#: points of each predicted survival curve
CURVE_POINTS = 200


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
    explanations_dir: str | Path | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Pages of a prediction run in `report/patients/` beside `predictions_csv`.

    records: the data module's records of the predicted patients (a patient without any model modality
    has none: all its modalities are shown missing). references: the checkpoint's stored evaluation
    references (head -> `SurvivalReference` dict). provenance: None reads `<predictions>.provenance.json`
    beside the table when it exists."""
    predictions_csv = Path(predictions_csv)
    folder = predictions_csv.parent
    infos = from_heads(heads)
    return write_patient_pages(
        folder / REPORT,
        frame,
        presence_table(frame["patient_id"], records, modalities),
        dict(provenance) if provenance is not None else _sidecar_provenance(predictions_csv),
        infos,
        survival_curves=predicted_curves(frame, infos, references),
        neighbours=_table(folder / "neighbours.csv"),
        neighbour_summary=_table(folder / "neighbour_summary.csv"),
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


def survival_curve(reference: Mapping[str, Any], risk: float) -> Curve:
    """S(t | x) = S0(t)^exp(risk) on a grid over the baseline's time range (Breslow, as stored).
    (The audit slice's `survival_curve(reference_dict, risk)` replaces this one when merged.)"""
    baseline = SurvivalReference.from_dict(dict(reference)).baseline
    cumhaz = baseline.cumhaz
    end = float(cumhaz.knots[-1]) if hasattr(cumhaz, "knots") else float(cumhaz.times[-1])
    times = np.linspace(0.0, end, CURVE_POINTS)
    return times, baseline.survival(np.array([risk]), times)[0]


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
                curves.setdefault(str(pid), {})[head.name] = survival_curve(reference, float(risk))
    return curves


def _sidecar_provenance(predictions_csv: Path) -> dict[str, Any]:
    sidecar = predictions_csv.with_suffix(".provenance.json")
    if sidecar.is_file():
        return dict(json.loads(sidecar.read_text()))
    return {"fusion_version": __version__}


def _table(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path, dtype={"patient_id": str, "neighbour_id": str}) if path.is_file() else None
