"""Retrieval quality metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fusion.data.records import PatientRecord
from fusion.heads.grade import GradeHead
from fusion.heads.survival import SurvivalHead
from fusion.retrieval.embeddings import fused_embeddings
from fusion.retrieval.quality import (
    acc_at_k,
    hidden_state_ratio,
    majority,
    mvacc_at_k,
    neighbour_cindex,
    neighbour_risk,
    retrieval_metric_functions,
    retrieval_metrics,
)
from fusion.retrieval.reference_set import ReferenceSet
from fusion.retrieval.split_metrics import split_retrieval_metrics

NAN = math.nan
# 4 queries, 3 neighbours each (best first)
QUERY = np.array([1.0, 2.0, 3.0, NAN])
NEIGHBOURS = np.array(
    [
        [1.0, 2.0, 2.0],  # hit@1; vote 2 -> miss
        [1.0, 2.0, 1.0],  # hit@2; vote 1 -> miss
        [3.0, 1.0, NAN],  # hit@1; tie 3 vs 1 -> nearest: 3 -> hit
        [1.0, 1.0, 1.0],  # unknown query: left out
    ]
)


def test_acc_at_k():
    assert acc_at_k(QUERY, NEIGHBOURS, 1) == pytest.approx(2 / 3)
    assert acc_at_k(QUERY, NEIGHBOURS, 2) == pytest.approx(1.0)
    assert math.isnan(acc_at_k(np.array([NAN]), NEIGHBOURS[:1], 1))


def test_mvacc_at_k_breaks_ties_by_the_nearest():
    assert mvacc_at_k(QUERY, NEIGHBOURS, 3) == pytest.approx(1 / 3)
    assert majority(np.array([2.0, 1.0, 1.0, 2.0])) == 2.0  # 2-2 tie: 2 is nearer
    assert majority(np.array([NAN, 1.0, 2.0, 2.0])) == 2.0
    assert math.isnan(majority(np.array([NAN, NAN])))


def test_neighbour_risk_is_events_per_follow_up():
    times = np.array([[10.0, 30.0], [5.0, NAN], [NAN, NAN]])
    events = np.array([[1.0, 0.0], [1.0, 1.0], [1.0, 1.0]])
    risk = neighbour_risk(times, events)
    assert risk[0] == pytest.approx(1 / 40) and risk[1] == pytest.approx(1 / 5) and math.isnan(risk[2])


def test_neighbour_cindex():
    # query outcomes: deaths at 2 (q0), 5 (q1), censored at 9 (q2); risks 1/1, 1/4, 0 -> concordant: C = 1
    neighbour_times = np.array([[1.0], [4.0], [8.0]])
    neighbour_events = np.array([[1.0], [1.0], [0.0]])
    c = neighbour_cindex(
        np.array([2.0, 5.0, 9.0]), np.array([1.0, 1.0, 0.0]), neighbour_times, neighbour_events, 1
    )
    assert c == pytest.approx(1.0)
    reversed_c = neighbour_cindex(
        np.array([9.0, 5.0, 2.0]), np.array([1.0, 1.0, 1.0]), neighbour_times, neighbour_events, 1
    )
    assert reversed_c == pytest.approx(0.0)


def test_hidden_state_ratio():
    references = np.array([[0.0], [1.0], [10.0], [11.0]])
    queries = np.array([[0.0], [11.0]])
    # neighbours at distance sd-scaled 0 and 1/sd; everyone: mean of |q - r| = (0+1+10+11)/4 = 5.5 each
    near = np.array([[0, 1], [3, 2]])
    sd = references.std()
    expected = ((0 + 1) / 2 + (0 + 1) / 2) / 2 / sd / (5.5 / sd)
    assert hidden_state_ratio(queries, references, near) == pytest.approx(expected)
    assert hidden_state_ratio(queries, references, np.array([[2, 3], [0, 1]])) > 1


def test_retrieval_metrics_keys():
    indices = np.array([[0, 1], [2, 1]])
    classes = {"grade": (np.array([0.0, 1.0]), np.array([0.0, 1.0, 1.0]))}
    # risks: q0 (1 event) / (1 + 8) = 1/9, q1 0 / 28 = 0; q0 died at 2, q1 censored at 9: concordant
    references = np.array([[1.0, 1.0], [8.0, 0.0], [20.0, 0.0]])
    survival = {"survival": (np.array([[2.0, 1.0], [9.0, 0.0]]), references)}
    metrics = retrieval_metrics(indices, classes, survival, ks=(1, 2, 5))
    assert metrics == {
        "retrieval_grade_acc@1": 1.0,
        "retrieval_grade_acc@2": 1.0,
        "retrieval_grade_mvacc@2": 1.0,  # q0: a 0-1 tie, 0 is nearer
        "retrieval_survival_cindex": pytest.approx(1.0),
    }


class TwoModalityModel(torch.nn.Module):
    """encode: modality a's token is (1, 0) per row, b's (0, 1); the fuser averages the present tokens and
    refuses a row with none (as the real fusers do)."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))
        self.heads = {"h": GradeHead(2, classes=[1, 2])}  # the fused width d = a head's in_dim
        self.encoders = {"a": None, "b": None}

    def encode(self, inputs):
        out = {}
        for i, name in enumerate(("a", "b")):
            present = inputs[name]["present"]
            tokens = torch.zeros(len(present), 1, 2)
            tokens[:, 0, i] = 1.0
            out[name] = (tokens, present)
        return out

    def fuser(self, encoded):
        present = torch.stack([p for _, p in encoded.values()], dim=1)
        assert present.any(dim=1).all(), "a row with no modality"
        total = sum(t[:, 0] * p[:, None] for t, p in encoded.values())
        return total / present.sum(dim=1, keepdim=True)


def batch(ids, a, b):
    return {
        "patient_id": ids,
        "inputs": {"a": {"present": torch.tensor(a)}, "b": {"present": torch.tensor(b)}},
    }


def test_fused_embeddings_of_one_modality_mark_the_others_absent():
    batches = [batch(["p1", "p2"], [True, False], [True, True]), batch(["p3"], [False], [True])]
    ids, z, has_any = fused_embeddings(TwoModalityModel(), batches)
    assert ids == ["p1", "p2", "p3"] and has_any.tolist() == [True, True, True]
    assert z.tolist() == [[0.5, 0.5], [0.0, 1.0], [0.0, 1.0]]
    ids, z, has_any = fused_embeddings(TwoModalityModel(), batches, only="a")  # batch 2: nobody has a
    assert has_any.tolist() == [True, False, False] and z[0].tolist() == [1.0, 0.0]


def test_split_retrieval_metrics_scores_the_queries_against_the_references():
    references = [
        PatientRecord("r1", labels={"grade": 0, "survival": (1.0, 1)}),
        PatientRecord("r2", labels={"grade": 1, "survival": (9.0, 0)}),
    ]
    queries = [PatientRecord("q1", labels={"grade": 0, "survival": (2.0, 1)})]
    heads = {"grade": GradeHead(2, classes=[1, 2]), "survival": SurvivalHead(2)}
    metrics, ci95, embeddings = split_retrieval_metrics(
        TwoModalityModel(),
        heads,
        references,
        # r1 has modality a alone, r2 b alone (the reference set fusion-train stores, embedded alike)
        ReferenceSet(["r1", "r2"], torch.tensor([[1.0, 0.0], [0.0, 1.0]]), {}, weights_sha256="w"),
        queries,
        [batch(["q1"], [True], [False])],
    )
    assert metrics["retrieval_grade_acc@1"] == 1.0  # q1 (a only) finds r1 (a only), grade 0
    assert list(embeddings.columns) == ["patient_id", "emb_0", "emb_1"]
    assert set(metrics) == {"retrieval_grade_acc@1", "retrieval_survival_cindex"}


def test_metric_functions_of_bootstrap_counts_equal_the_metrics_of_the_resampled_queries():
    """The CI replicates come from the same code as the point estimate: a replicate equals the metric
    recomputed on the resampled query list (labels of the queries and their neighbours resampled alike)."""
    rng = np.random.default_rng(3)
    n_queries, n_refs = 30, 40
    indices = np.argsort(rng.random((n_queries, n_refs)), axis=1)[:, :10]
    query_class, ref_class = (
        rng.integers(0, 3, n_queries).astype(float),
        rng.integers(0, 3, n_refs).astype(float),
    )
    query_class[[0, 5]] = np.nan  # unknown labels are left out
    query_surv = np.column_stack([rng.exponential(10, n_queries) + 0.1, rng.random(n_queries) < 0.6])
    ref_surv = np.column_stack([rng.exponential(10, n_refs) + 0.1, rng.random(n_refs) < 0.6])
    functions = retrieval_metric_functions(
        indices, {"grade": (query_class, ref_class)}, {"survival": (query_surv, ref_surv)}
    )
    draw = rng.integers(0, n_queries, n_queries)
    counts = np.bincount(draw, minlength=n_queries)[None, :].astype(float)
    again = retrieval_metrics(
        indices[draw], {"grade": (query_class[draw], ref_class)}, {"survival": (query_surv[draw], ref_surv)}
    )
    for key, metric in functions.items():
        assert metric(counts)[0] == pytest.approx(again[key], abs=1e-12), key
