"""How good the retrieved neighbours are: plain numpy functions of the neighbours' labels.

The protocol of the pathology retrieval benchmarks (TITAN, Patho-Bench): queries (held-out patients) search a
reference set (the training patients) and

- Acc@k: a hit when any of the top-k neighbours has the query's class;
- MVAcc@k: a hit when the majority class of the top-k neighbours is the query's class. A tie goes to the
  tied class whose best-ranked member is nearest (Patho-Bench counts a tie as a hit whenever the query's
  class is among the tied ones, which flatters even k; this is the stricter reading);
- the neighbours' outcomes as a survival risk score, scored by Harrell's C against the query's own outcome;
- on a synthetic cohort with its hidden truth, the mean distance between the query's true hidden state and
  its neighbours', over the mean distance to every reference patient (< 1: neighbours share hidden state).

Unknown labels are NaN: a query with an unknown label is left out of that metric; an unknown neighbour label
never matches and has no vote. Every metric is NaN when no query has a known label.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from fusion.metrics.bootstrap import Metric, point
from fusion.metrics.weighted_survival import harrell_cindex as weighted_harrell
from fusion.metrics.weighted_survival import weighted_mean

#: the k of Acc@k and MVAcc@k (each used when the reference set holds at least k patients)
KS = (1, 5, 10)
#: neighbours behind the survival risk score (fewer when the reference set is smaller)
SURVIVAL_K = 10


def acc_at_k(query: np.ndarray, neighbours: np.ndarray, k: int) -> float:
    """Share of queries (known label) with their class among the top-k neighbours' labels.
    query (Q,), neighbours (Q, K >= k) best first; NaN = unknown."""
    return _share(acc_hits(query, neighbours, k))


def mvacc_at_k(query: np.ndarray, neighbours: np.ndarray, k: int) -> float:
    """Share of queries (known label) whose class is the majority vote of their top-k neighbours (ties: the
    tied class ranked nearest; no known neighbour label: a miss)."""
    return _share(mvacc_hits(query, neighbours, k))


def acc_hits(query: np.ndarray, neighbours: np.ndarray, k: int) -> np.ndarray:
    """Per query: 1 when its class is among the top-k neighbours' labels, else 0; NaN for an unknown label."""
    query, top, known = _known_queries(query, neighbours, k)
    hits = np.full(len(query), np.nan)
    hits[known] = (top[known] == query[known, None]).any(axis=1)
    return hits


def mvacc_hits(query: np.ndarray, neighbours: np.ndarray, k: int) -> np.ndarray:
    """Per query: 1 when its class is the top-k neighbours' majority vote, else 0; NaN for an unknown
    label."""
    query, top, known = _known_queries(query, neighbours, k)
    hits = np.full(len(query), np.nan)
    hits[known] = [majority(row) == label for label, row in zip(query[known], top[known], strict=True)]
    return hits


def _share(hits: np.ndarray) -> float:
    known = ~np.isnan(hits)
    return float(hits[known].mean()) if known.any() else math.nan


def majority(labels: np.ndarray) -> float:
    """The most frequent known label of a best-first row; a tie goes to the tied label seen first (the
    nearest); NaN when no label is known."""
    labels = labels[~np.isnan(labels)]
    if len(labels) == 0:
        return math.nan
    values, first, counts = np.unique(labels, return_index=True, return_counts=True)
    tied = counts == counts.max()
    return float(values[tied][np.argmin(first[tied])])


def neighbour_risk(times: np.ndarray, events: np.ndarray) -> np.ndarray:
    """Per query, the neighbours' events per unit of follow-up (the maximum-likelihood constant hazard of
    their outcomes): it counts censored follow-up, which a mean survival time ignores, and the timing of
    events, which an event fraction ignores. times, events (Q, k); NaN where no neighbour outcome is known."""
    known = ~(np.isnan(times) | np.isnan(events))
    exposure = np.where(known, times, 0.0).sum(axis=1)
    n_events = np.where(known, events, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(exposure > 0, n_events / exposure, np.nan)


def neighbour_cindex(
    query_time: np.ndarray,
    query_event: np.ndarray,
    neighbour_times: np.ndarray,
    neighbour_events: np.ndarray,
    k: int = SURVIVAL_K,
) -> float:
    """Harrell's C of `neighbour_risk` over the top-k neighbours against the queries' own outcomes
    (queries with an unknown outcome or no known neighbour outcome left out)."""
    metric = neighbour_cindex_metric(query_time, query_event, neighbour_times, neighbour_events, k)
    return point(metric, len(query_time))


def neighbour_cindex_metric(
    query_time: np.ndarray,
    query_event: np.ndarray,
    neighbour_times: np.ndarray,
    neighbour_events: np.ndarray,
    k: int = SURVIVAL_K,
) -> Metric:
    """`neighbour_cindex` as a function of (B, Q) bootstrap counts of the queries
    (`fusion.metrics.bootstrap`)."""
    risk = neighbour_risk(neighbour_times[:, :k], neighbour_events[:, :k])
    usable = ~(np.isnan(risk) | np.isnan(query_time) | np.isnan(query_event))
    if usable.sum() < 2:
        return lambda counts: np.full(len(counts), np.nan)
    time, event = query_time[usable], query_event[usable].astype(bool)
    return lambda counts: weighted_harrell(counts[:, usable], risk[usable], time, event)


def hidden_state_ratio(query_state: np.ndarray, reference_state: np.ndarray, indices: np.ndarray) -> float:
    """Mean Euclidean distance between a query's hidden state and its neighbours' (indices (Q, k) into the
    references), over the mean distance to every reference patient (the expected distance to a random one).
    Each state variable is standardised by the references' mean and sd first. < 1: neighbours are alike."""
    mean, sd = reference_state.mean(axis=0), reference_state.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    query, refs = (query_state - mean) / sd, (reference_state - mean) / sd
    to_neighbours = np.linalg.norm(query[:, None, :] - refs[indices], axis=2).mean()
    to_everyone = np.mean([np.linalg.norm(refs - row, axis=1).mean() for row in query])
    return float(to_neighbours / to_everyone)


def usable_ks(n_references: int, ks: Iterable[int] = KS) -> tuple[int, ...]:
    """The ks a reference set of this size supports (k <= n)."""
    return tuple(k for k in ks if k <= n_references)


def retrieval_metrics(
    indices: np.ndarray,
    classes: Mapping[str, tuple[np.ndarray, np.ndarray]],
    survival: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ks: Iterable[int] = KS,
) -> dict[str, float]:
    """The metric table of one search (`retrieval_metric_functions`' point estimates)."""
    return {
        key: point(metric, len(indices))
        for key, metric in retrieval_metric_functions(indices, classes, survival, ks).items()
    }


def retrieval_metric_functions(
    indices: np.ndarray,
    classes: Mapping[str, tuple[np.ndarray, np.ndarray]],
    survival: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ks: Iterable[int] = KS,
) -> dict[str, Metric]:
    """Every metric of one search as a function of (B, Q) bootstrap counts of the queries, so that the point
    estimate and its bootstrap CI come from the same code (`fusion.metrics.bootstrap`). indices (Q, K) best
    first into the references.

    classes: head name -> (query labels (Q,), reference labels (N,)), NaN = unknown: Acc@k and MVAcc@k as
    ``retrieval_<head>_acc@<k>`` and ``retrieval_<head>_mvacc@<k>`` for each k <= K (no ``mvacc@1``: the
    vote of one neighbour is Acc@1).
    survival: head name -> (query (Q, 2), reference (N, 2)) columns time, event: ``retrieval_<head>_cindex``
    over the top min(`SURVIVAL_K`, K) neighbours.
    """
    metrics: dict[str, Metric] = {}
    ks = usable_ks(indices.shape[1], ks)
    for name, (query, reference) in classes.items():
        neighbours = reference[indices]
        for k in ks:
            metrics[f"retrieval_{name}_acc@{k}"] = _mean_of(acc_hits(query, neighbours, k))
            if k > 1:  # the vote of one neighbour is Acc@1
                metrics[f"retrieval_{name}_mvacc@{k}"] = _mean_of(mvacc_hits(query, neighbours, k))
    for name, (query, reference) in survival.items():
        times, events = reference[:, 0][indices], reference[:, 1][indices]
        k = min(SURVIVAL_K, indices.shape[1])
        metrics[f"retrieval_{name}_cindex"] = neighbour_cindex_metric(
            query[:, 0], query[:, 1], times, events, k
        )
    return metrics


def _mean_of(hits: np.ndarray) -> Metric:
    """The share of hits among the queries with a known label, per bootstrap replicate."""
    known = ~np.isnan(hits)
    return lambda counts: weighted_mean(counts[:, known], hits[known])


def _known_queries(query: np.ndarray, neighbours: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    if k < 1 or k > neighbours.shape[1]:
        raise ValueError(f"k={k} of {neighbours.shape[1]} neighbours")
    query = np.asarray(query, dtype=float)
    return query, np.asarray(neighbours, dtype=float)[:, :k], ~np.isnan(query)
