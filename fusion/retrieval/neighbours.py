"""Each query patient's k most similar reference patients (``neighbours.csv``) and the summary of their
outcomes (``neighbour_summary.csv``, `fusion.retrieval.summaries`).

neighbours.csv: ``patient_id, rank, neighbour_id, similarity`` (cosine of the fused embeddings, rank 1 =
most similar) and each neighbour's label columns as the manifest names them. A query patient who is in the
reference set never retrieves itself (matched by patient id). A query patient with none of the model's
modalities has no embedding: one row with empty neighbour fields, and a log line naming the patient.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from fusion.errors import ConfigError
from fusion.heads.base import Head
from fusion.model import FusionModel
from fusion.retrieval.embeddings import fused_embeddings
from fusion.retrieval.reference_set import ReferenceSet
from fusion.retrieval.search import nearest
from fusion.retrieval.summaries import neighbour_summary

log = logging.getLogger(__name__)

NEIGHBOUR_COLUMNS = ["patient_id", "rank", "neighbour_id", "similarity"]
#: the two files, in fusion-similar's output folder (and fusion-predict's with retrieval.k)
NEIGHBOURS_CSV, SUMMARY_CSV = "neighbours.csv", "neighbour_summary.csv"


def check_k(k: int, reference: ReferenceSet, query_ids: Sequence[str] = ()) -> None:
    """ConfigError unless every query can have `k` neighbours: 1 <= k <= the reference set's size (one less
    when a query patient is in it: never its own neighbour)."""
    n = len(reference)
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k={k!r}: the number of neighbours must be a whole number >= 1")
    if k > n:
        raise ConfigError(f"k={k} neighbours asked, but the reference set holds {n} patients: use k<={n}")
    members = set(reference.patient_ids)
    inside = next((p for p in query_ids if p in members), None)
    if k == n and inside is not None:
        raise ConfigError(
            f"k={k} neighbours asked of a reference set of {n} patients that holds query patient {inside} "
            f"(never its own neighbour): use k<={n - 1}"
        )


def neighbour_table(
    query_ids: Sequence[str], embeddings: torch.Tensor, has_any: torch.Tensor, reference: ReferenceSet, k: int
) -> pd.DataFrame:
    """neighbours.csv's rows for these query patients (in their order): k rows each, or one empty row for a
    patient without an embedding (``has_any`` False)."""
    searchable = [i for i in range(len(query_ids)) if bool(has_any[i])]
    check_k(k, reference, [query_ids[i] for i in searchable])
    found: dict[int, tuple[Any, Any]] = {}
    if searchable:
        if embeddings.shape[1] != reference.embeddings.shape[1]:
            raise ConfigError(
                f"the reference set's embeddings have {reference.embeddings.shape[1]} dimensions, the "
                f"model's {embeddings.shape[1]}: it was built with another model"
            )
        index = reference.index_of()
        exclude = [index.get(query_ids[i]) for i in searchable]
        indices, similarities = nearest(
            embeddings[searchable],
            reference.embeddings,
            k,
            exclude if any(e is not None for e in exclude) else None,
            index="auto",  # faiss above 10⁵ references when installed (the `retrieval` extra)
        )
        found = {q: (indices[row], similarities[row]) for row, q in enumerate(searchable)}
    label_names = list(reference.labels)
    rows: list[dict[str, Any]] = []
    missing = []
    for q, patient_id in enumerate(query_ids):
        if q not in found:
            missing.append(patient_id)
            rows.append({"patient_id": patient_id})
            continue
        for rank, (j, similarity) in enumerate(zip(*found[q], strict=True), start=1):
            row = {"patient_id": patient_id, "rank": rank, "neighbour_id": reference.patient_ids[j]}
            row["similarity"] = float(similarity)
            row.update({c: reference.labels[c][j] for c in label_names})
            rows.append(row)
    if missing:
        log.warning(
            "%d patient(s) have none of the model's modalities, so no embedding and no neighbours (one empty "
            "row each in neighbours.csv): %s",
            len(missing),
            ", ".join(missing),
        )
    frame = pd.DataFrame(rows, columns=[*NEIGHBOUR_COLUMNS, *label_names])
    for column in ["rank", *label_names]:
        if _whole_numbers(frame[column]):
            frame[column] = frame[column].astype("Int64")  # 1, not 1.0, beside the empty cells
    return frame


def _whole_numbers(values: pd.Series) -> bool:
    """Every known value a whole number (an event or response flag, ranks): written as an integer."""
    known = values.dropna()
    return all(
        isinstance(v, int | float) and not isinstance(v, bool) and float(v).is_integer() for v in known
    )


def neighbour_tables(
    model: FusionModel,
    heads: dict[str, Head],
    query_batches: Iterable[dict[str, Any]],
    reference_set: ReferenceSet,
    k: int,
    horizons: dict[str, list[float]],
    patient_ids: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(neighbours.csv, neighbour_summary.csv) of every patient of `query_batches`, embedded with `model`
    (the weights `reference_set` was built with: `ReferenceSet.check_weights`). `patient_ids`: every query
    patient in output order, including those the loader left out for having no modality (empty rows);
    default: the patients of the batches. `horizons`: `fusion.retrieval.summaries.summary_horizons`."""
    ids, embeddings, has_any = fused_embeddings(model, query_batches)
    if patient_ids is not None:
        ids, embeddings, has_any = _aligned(list(patient_ids), ids, embeddings, has_any)
    neighbours = neighbour_table(ids, embeddings, has_any, reference_set, k)
    return neighbours, neighbour_summary(neighbours, heads, horizons)


def _aligned(
    patient_ids: list[str], ids: list[str], embeddings: torch.Tensor, has_any: torch.Tensor
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """The embeddings in `patient_ids`' order; a patient the batches lacked gets has_any False."""
    row = {p: i for i, p in enumerate(ids)}
    width = embeddings.shape[1] if embeddings.dim() == 2 and len(ids) else 0
    out = torch.zeros(len(patient_ids), width)
    flags = torch.zeros(len(patient_ids), dtype=torch.bool)
    for i, p in enumerate(patient_ids):
        if p in row:
            out[i], flags[i] = embeddings[row[p]], has_any[row[p]]
    return patient_ids, out, flags


def write_neighbour_tables(folder: str | Path, neighbours: pd.DataFrame, summary: pd.DataFrame) -> None:
    """neighbours.csv and neighbour_summary.csv in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    neighbours.to_csv(folder / NEIGHBOURS_CSV, index=False)
    summary.to_csv(folder / SUMMARY_CSV, index=False)
