"""neighbours.csv and neighbour_summary.csv: self-exclusion, a query without modalities, k errors, the
summary numbers worked out by hand, and the neighbours' Kaplan–Meier."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
import torch

from fusion.errors import ConfigError
from fusion.heads.survival import horizon_label
from fusion.metrics.survival_curves import kaplan_meier
from fusion.retrieval.embeddings import fused_embeddings
from fusion.retrieval.neighbours import NEIGHBOUR_COLUMNS, check_k, neighbour_table, neighbour_tables
from fusion.retrieval.reference_set import ReferenceSet
from fusion.retrieval.summaries import neighbour_km, neighbour_summary, summary_horizons
from tests.unit.retrieval.tiny import batch, tiny_model

LABELS = ["grade", "survival_time", "survival_event", "response"]


def reference() -> ReferenceSet:
    vectors = [[1, 0], [0, 1], [1, 1], [-1, 0], [1, 0.2]]
    labels = {
        "grade": ["G1", "G2", "G2", None, "G1"],
        "survival_time": [10.5, 3.0, 7.0, 2.0, None],
        "survival_event": [1, 0, 1, 1, None],
        "response": [1, 0, None, 0, 1],
    }
    return ReferenceSet(["R1", "R2", "R3", "R4", "R5"], torch.tensor(vectors), labels, "digest")


def test_a_query_in_the_reference_set_never_retrieves_itself():
    queries = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    frame = neighbour_table(["R1", "Q9"], queries, torch.tensor([True, True]), reference(), k=2)
    assert list(frame.columns) == [*NEIGHBOUR_COLUMNS, *LABELS]
    r1 = frame[frame["patient_id"] == "R1"]
    assert r1["neighbour_id"].tolist() == ["R5", "R3"]  # not R1 itself, its own vector
    assert r1["rank"].tolist() == [1, 2]
    np.testing.assert_allclose(r1["similarity"], [1 / math.sqrt(1.04), 1 / math.sqrt(2)], rtol=1e-6)
    q9 = frame[frame["patient_id"] == "Q9"]
    assert q9["neighbour_id"].tolist() == ["R2", "R3"]  # a new patient may match anyone
    assert q9["grade"].tolist() == ["G2", "G2"] and q9["survival_event"].tolist() == [0, 1]


def test_a_query_without_modalities_keeps_one_empty_row_and_is_named_in_the_log(caplog):
    queries = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    with caplog.at_level(logging.WARNING, logger="fusion.retrieval.neighbours"):
        frame = neighbour_table(["Q1", "Q2"], queries, torch.tensor([False, True]), reference(), k=3)
    q1 = frame[frame["patient_id"] == "Q1"]
    assert len(q1) == 1 and q1.drop(columns="patient_id").isna().all(axis=None)
    assert len(frame[frame["patient_id"] == "Q2"]) == 3
    assert "none of the model's modalities" in caplog.text and "Q1" in caplog.text
    summary = neighbour_summary(frame, dict(tiny_model().heads.items()), {"survival": [5.0]})
    empty = summary.set_index("patient_id").loc["Q1"]
    assert empty["n_neighbours"] == 0 and empty.drop("n_neighbours").isna().all()


@pytest.mark.parametrize(
    ("k", "query", "message"),
    [
        (0, "Q", "must be a whole number >= 1"),
        (6, "Q", "the reference set holds 5 patients: use k<=5"),
        (5, "R2", "holds query patient R2 (never its own neighbour): use k<=4"),
    ],
)
def test_k_outside_the_reference_set_is_refused_with_its_size(k, query, message):
    with pytest.raises(ConfigError, match="k=") as err:
        check_k(k, reference(), [query])
    assert message in str(err.value)
    check_k(5, reference(), ["Q"])  # all of them, for a patient outside the set


def test_the_summary_numbers_worked_out_by_hand():
    neighbours = pd.DataFrame(
        {
            "patient_id": ["P1"] * 5,
            "rank": [1, 2, 3, 4, 5],
            "neighbour_id": ["A", "B", "C", "D", "E"],
            "similarity": [0.9, 0.8, 0.7, 0.6, 0.5],
            "grade": ["G1", "G2", "G2", None, "G2"],
            "survival_time": [2.0, 4.0, 4.0, 6.0, 8.0],
            "survival_event": [1, 1, 0, 1, 0],
            "response": [1, 0, 1, None, 1],
        }
    )
    heads = dict(tiny_model().heads.items())
    row = neighbour_summary(neighbours, heads, {"survival": [5.0, 7.0, 10.0]}).iloc[0]
    # KM: 2 -> 4/5 = 0.8; 4 (4 at risk, 1 event) -> 0.6; 6 (2 at risk, 1 event) -> 0.3; 8 censored
    assert row["km_median_survival"] == 6.0
    assert row["km_survival_5"] == pytest.approx(0.6) and row["km_survival_7"] == pytest.approx(0.3)
    assert math.isnan(row["km_survival_10"])  # past the last neighbour's follow-up
    assert row["n_events"] == 3 and row["n_neighbours"] == 5
    assert row["response_rate"] == pytest.approx(0.75) and row["n_response_known"] == 4
    assert row["grade_G1"] == pytest.approx(0.25) and row["grade_G2"] == pytest.approx(0.75)
    assert row["mean_similarity"] == pytest.approx(0.7)
    summary = neighbour_summary(neighbours, heads, {"survival": [5.0, 7.0, 10.0]})
    assert list(summary.columns) == [
        "patient_id",
        "n_neighbours",
        "km_median_survival",
        "km_survival_5",
        "km_survival_7",
        "km_survival_10",
        "n_events",
        "response_rate",
        "n_response_known",
        "grade_G1",
        "grade_G2",
        "mean_similarity",
    ]


def test_neighbour_km_is_the_kaplan_meier_of_the_neighbours_with_a_survival_label():
    rows = pd.DataFrame({"survival_time": [5.0, 1.0, None, 3.0, 3.0], "survival_event": [0, 1, None, 1, 0]})
    times, survival = neighbour_km(rows)
    expected = kaplan_meier(np.array([5.0, 1.0, 3.0, 3.0]), np.array([0, 1, 1, 0]))
    np.testing.assert_allclose(times, [0.0, *expected.times])
    np.testing.assert_allclose(survival, [1.0, *expected.values])
    empty_times, empty_survival = neighbour_km(rows.iloc[2:3])
    assert len(empty_times) == len(empty_survival) == 0


def test_horizons_come_from_the_settings_or_the_stored_quartiles():
    heads = dict(tiny_model().heads.items())
    stored = {"survival": {"event_quantiles": {"q50": 12.0, "q25": 7.5, "q75": 20.25}}}
    # rounded down to two significant digits, as the predictions' survival_prob_<h> columns are
    assert summary_horizons(heads, stored) == {"survival": [7.5, 12.0, 20.0]}
    assert summary_horizons(heads, stored, [24, 6]) == {"survival": [6.0, 24.0]}
    assert summary_horizons(heads, {}) == {"survival": []}
    assert [horizon_label(h) for h in (12.0, 7.5, 20.0)] == ["12", "7.5", "20"]


def test_neighbour_tables_embed_search_and_keep_every_query_patient_in_order():
    model = tiny_model()
    heads = dict(model.heads.items())
    one = batch(["P1", "P2", "P3"], {"a": [True, True, False], "b": [True, False, True]}, seed=1)
    ids, z, _ = fused_embeddings(model, [one])
    labels = {c: [None] * 3 for c in LABELS}
    reference_set = ReferenceSet(ids, z, labels, "digest")
    neighbours, summary = neighbour_tables(
        model, heads, [one], reference_set, k=2, horizons={}, patient_ids=["P0", "P3", "P1", "P2"]
    )
    assert summary["patient_id"].tolist() == ["P0", "P3", "P1", "P2"]
    assert summary["n_neighbours"].tolist() == [0, 2, 2, 2]  # P0: not in the batches (no modality)
    for patient, rows in neighbours.dropna(subset=["neighbour_id"]).groupby("patient_id"):
        assert patient not in set(rows["neighbour_id"])
