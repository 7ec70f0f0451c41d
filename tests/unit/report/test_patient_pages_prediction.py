"""fusion-predict's report=patients inputs: presence from the records, S(t | x) from the stored Breslow
baseline, the heads' kinds, the files found beside predictions.csv, and report=/explanations= checked."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from fusion.data.records import PatientRecord
from fusion.errors import ConfigError
from fusion.heads.grade import GradeHead
from fusion.heads.response import ResponseHead
from fusion.heads.survival import SurvivalHead
from fusion.heads.survival_probabilities import survival_curve
from fusion.heads.survival_reference import SurvivalReference
from fusion.report.patient_pages import from_heads
from fusion.report.patient_pages.from_prediction import (
    check_report_options,
    presence_table,
    write_prediction_pages,
)
from tests.integration.patient_pages_tables import neighbours

HEADS = {
    "grade": GradeHead(4, classes=["G1", "G2"]),
    "survival": SurvivalHead(4),
    "response": ResponseHead(4),
}


def reference() -> dict:
    rng = np.random.default_rng(0)
    risk, time = rng.normal(size=60), rng.exponential(20, size=60) + 0.5
    return SurvivalReference.fit(risk, time, rng.random(60) < 0.7).to_dict()


def test_heads_are_described_by_kind():
    infos = {h.name: h for h in from_heads(HEADS)}
    assert infos["grade"].kind == "classes" and infos["grade"].classes == ("G1", "G2")
    assert infos["grade"].columns == ("grade_prob_G1", "grade_prob_G2")
    assert infos["survival"].kind == "survival" and infos["survival"].columns == ("risk",)
    assert (infos["survival"].time_column, infos["survival"].event_column) == (
        "survival_time",
        "survival_event",
    )
    assert infos["response"].kind == "probability"


def test_presence_from_records_and_all_missing_without_one():
    records = [PatientRecord("P1", refs={"ct": "ct/P1.nii.gz", "ehr": None})]
    table = presence_table(["P1", "P2"], records, ["ct", "ehr"])
    assert table.to_dict("records") == [
        {"patient_id": "P1", "ct": True, "ehr": False},
        {"patient_id": "P2", "ct": False, "ehr": False},
    ]


def test_survival_curve_is_the_baseline_raised_to_exp_risk():
    stored = reference()
    times, base = survival_curve(stored, 0.0)
    _, worse = survival_curve(stored, 1.0)
    assert times[0] == 0 and base[0] == pytest.approx(1.0) and np.all(np.diff(base) <= 1e-12)
    np.testing.assert_allclose(worse, base ** np.exp(1.0), rtol=1e-9)  # S(t | x) = S(t | 0)^exp(risk)


def test_pages_beside_predictions_with_this_runs_neighbours_and_provenance(tmp_path):
    frame = pd.DataFrame(
        {"patient_id": ["P0001", "P0003"], "grade_prob_G1": [0.3, None], "grade_prob_G2": [0.7, None],
         "risk": [0.2, None], "response_prob": [0.6, None]}
    )  # fmt: skip
    csv = tmp_path / "predictions.csv"
    frame.to_csv(csv, index=False)
    provenance = {"model_id": "feedbeef", "versions": {"torch": "2"}}
    records = [PatientRecord("P0001", refs={"ct": "x", "ehr": None})]
    stale = neighbours().assign(neighbour_id="STALE1")  # an earlier run's table in the folder: never read
    stale.to_csv(tmp_path / "neighbours.csv", index=False)
    pages = write_prediction_pages(
        csv, frame, HEADS, ["ct", "ehr"], records, {"survival": reference()}, provenance, None, neighbours()
    )
    assert [p.relative_to(tmp_path).as_posix() for p in pages] == [
        "report/patients/P0001.html",
        "report/patients/P0003.html",
        "report/patients/index.html",
    ]
    first = pages[0].read_text()
    assert "feedbeef" in first and "ct: present" in first and "ehr: missing" in first
    assert first.count("<img") == 2  # the predicted curve and the neighbours' Kaplan–Meier
    assert "R0101" in first and "No prediction for this patient" in pages[1].read_text()
    assert "STALE1" not in first


@pytest.mark.parametrize(
    ("report", "explanations", "output", "message"),
    [
        ("pages", None, "p.csv", "report='pages' is not a report"),
        (None, "explain", "p.csv", "add report=patients"),
        ("patients", None, None, "give output=PATH"),
        ("patients", "no/such/folder", "p.csv", "no such folder"),
    ],
)
def test_report_options_are_checked_first(report, explanations, output, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        check_report_options(report, explanations, output)
    check_report_options(None, None, None)
    check_report_options("patients", None, "p.csv")
