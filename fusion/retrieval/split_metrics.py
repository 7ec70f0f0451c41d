"""Retrieval quality of a trained model on one split: each query patient's fused embedding searched among a
reference split's (the test split against the training split in fusion-train), scored by
`fusion.retrieval.quality` with the heads' labels.

Heads with class labels (grade, response) give Acc@k / MVAcc@k, survival heads the neighbours' C-index;
other heads are not scored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from fusion.data.records import PatientRecord
from fusion.heads.base import Head
from fusion.heads.grade import GradeHead
from fusion.heads.response import ResponseHead
from fusion.heads.survival import SurvivalHead
from fusion.model import FusionModel
from fusion.retrieval.quality import retrieval_metrics, usable_ks
from fusion.retrieval.search import nearest


def split_retrieval_metrics(
    model: FusionModel,
    heads: Mapping[str, Head],
    references: Sequence[PatientRecord],
    reference_batches: Iterable[dict[str, Any]],
    queries: Sequence[PatientRecord],
    query_batches: Iterable[dict[str, Any]],
) -> tuple[dict[str, float], pd.DataFrame]:
    """(metrics keyed ``retrieval_<head>_<metric>`` (no stage prefix), the queries' embeddings: patient_id
    and emb_0 .. emb_<d-1>). Empty metrics when the reference split has no patient."""
    ref_ids, ref_embeddings, ref_any = _fused_embeddings(model, reference_batches)
    query_ids, query_embeddings, query_any = _fused_embeddings(model, query_batches)
    ref_ids = [p for p, keep in zip(ref_ids, ref_any.tolist(), strict=True) if keep]
    query_ids = [p for p, keep in zip(query_ids, query_any.tolist(), strict=True) if keep]
    ref_embeddings, query_embeddings = ref_embeddings[ref_any], query_embeddings[query_any]
    frame = pd.DataFrame(
        query_embeddings.numpy(), columns=[f"emb_{i}" for i in range(query_embeddings.shape[1])]
    )
    frame.insert(0, "patient_id", query_ids)
    ks = usable_ks(len(ref_ids))
    if not ks or not query_ids:
        return {}, frame
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
    return retrieval_metrics(indices, classes, survival, ks), frame


def class_labels(records: Sequence[PatientRecord], head: str) -> np.ndarray:
    """(N,) the head's class label per patient (grade: class index, response: 0/1), NaN when unknown."""
    return np.array([np.nan if (v := r.labels.get(head)) is None else float(v) for r in records])


def survival_labels(records: Sequence[PatientRecord], head: str) -> np.ndarray:
    """(N, 2) time and event per patient, NaN when unknown."""
    rows = [(np.nan, np.nan) if (v := r.labels.get(head)) is None else v for r in records]
    return np.array(rows, dtype=float).reshape(len(records), 2)


def _fused_embeddings(
    model: FusionModel, batches: Iterable[dict[str, Any]], only: str | None = None
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(patient ids, fused embeddings (N, d) float32 on the CPU, has_any (N,) bool), in eval mode.
    `only`: the embedding of that modality alone (every other one marked absent, as a missing file is);
    has_any: the patient has a modality the embedding used.

    A minimal twin of core's `fusion.retrieval.embeddings.fused_embeddings` (same contract), kept private
    until the slices merge: the integrator replaces it with that one."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    ids: list[str] = []
    parts: list[tuple[torch.Tensor, torch.Tensor | None]] = []  # per batch: rows embedded, their embeddings
    try:
        with torch.no_grad():
            for batch in batches:
                encoded = model.encode(move_data_to_device(batch["inputs"], device))
                rows = torch.stack([p for _, p in encoded.values()], dim=1).any(dim=1)
                if only is not None:  # the fuser refuses a patient with no modality: only the rows with it
                    rows = encoded[only][1]
                    encoded = {n: (t[rows], p[rows] & (n == only)) for n, (t, p) in encoded.items()}
                parts.append((rows.cpu(), model.fuser(encoded).float().cpu() if rows.any() else None))
                ids += list(batch["patient_id"])
    finally:
        model.train(was_training)
    width = next((z.shape[1] for _, z in parts if z is not None), 0)
    embeddings = torch.zeros(len(ids), width)
    has_any = torch.cat([rows for rows, _ in parts]) if parts else torch.zeros(0, dtype=torch.bool)
    start = 0
    for rows, z in parts:
        if z is not None:
            embeddings[start : start + len(rows)][rows] = z
        start += len(rows)
    return ids, embeddings, has_any
