"""Retrieval quality of a trained model on one split: each query patient's fused embedding searched among a
reference split's (the test split against the training split in fusion-train), scored by
`fusion.retrieval.quality` with the heads' labels.

Heads with class labels (grade, response) give Acc@k / MVAcc@k, survival heads the neighbours' C-index;
other heads are not scored.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fusion.data.records import PatientRecord
from fusion.heads.base import Head
from fusion.heads.grade import GradeHead
from fusion.heads.response import ResponseHead
from fusion.heads.survival import SurvivalHead
from fusion.metrics.bootstrap import percentile_ci, point, resample_counts
from fusion.model import FusionModel
from fusion.retrieval.embeddings import fused_embeddings
from fusion.retrieval.quality import retrieval_metric_functions, usable_ks
from fusion.retrieval.reference_set import ReferenceSet
from fusion.retrieval.search import nearest


def split_retrieval_metrics(
    model: FusionModel,
    heads: Mapping[str, Head],
    references: Sequence[PatientRecord],
    reference_set: ReferenceSet,
    queries: Sequence[PatientRecord],
    query_batches: Iterable[dict[str, Any]],
    n_bootstrap: int = 0,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[dict[str, float], dict[str, list[float]], pd.DataFrame]:
    """(metrics keyed ``retrieval_<head>_<metric>`` (no stage prefix), their bootstrap CIs over the query
    patients (`n_bootstrap` replicates; none with 0), the queries' embeddings: patient_id and emb_0 ..
    emb_<d-1>). `reference_set`: the reference split's embeddings with `model`'s weights (the one
    fusion-train stores; `references` its records). Empty metrics when it has no patient."""
    ref_ids, ref_embeddings = reference_set.patient_ids, reference_set.embeddings
    query_ids, query_embeddings, query_any = fused_embeddings(model, query_batches)
    query_ids = [p for p, keep in zip(query_ids, query_any.tolist(), strict=True) if keep]
    query_embeddings = query_embeddings[query_any]
    frame = pd.DataFrame(
        query_embeddings.numpy(), columns=[f"emb_{i}" for i in range(query_embeddings.shape[1])]
    )
    frame.insert(0, "patient_id", query_ids)
    ks = usable_ks(len(ref_ids))
    if not ks or not query_ids:
        return {}, {}, frame
    indices, _ = nearest(query_embeddings, ref_embeddings, max(ks))
    by_id = {r.patient_id: r for r in [*references, *queries]}
    ref_records = [by_id[p] for p in ref_ids]
    query_records = [by_id[p] for p in query_ids]
    classes, survival = {}, {}
    for name, head in heads.items():
        if isinstance(head, GradeHead | ResponseHead):
            classes[name] = (class_labels(query_records, name), class_labels(ref_records, name))
        elif isinstance(head, SurvivalHead):
            survival[name] = (survival_labels(query_records, name), survival_labels(ref_records, name))
    functions = retrieval_metric_functions(indices, classes, survival, ks)
    metrics = {key: point(metric, len(query_ids)) for key, metric in functions.items()}
    counts = resample_counts(len(query_ids), n_bootstrap, seed) if n_bootstrap else None
    ci95: dict[str, list[float]] = {}
    for key, metric in functions.items():
        interval = None if counts is None else percentile_ci(metric, counts, level)
        if interval is not None and math.isfinite(metrics[key]):
            ci95[key] = list(interval)
    return metrics, ci95, frame


def class_labels(records: Sequence[PatientRecord], head: str) -> np.ndarray:
    """(N,) the head's class label per patient (grade: class index, response: 0/1), NaN when unknown."""
    return np.array([np.nan if (v := r.labels.get(head)) is None else float(v) for r in records])


def survival_labels(records: Sequence[PatientRecord], head: str) -> np.ndarray:
    """(N, 2) time and event per patient, NaN when unknown."""
    rows = [(np.nan, np.nan) if (v := r.labels.get(head)) is None else v for r in records]
    return np.array(rows, dtype=float).reshape(len(records), 2)
