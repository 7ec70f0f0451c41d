"""Nearest neighbours by cosine similarity: exact search in torch, chunked so that 10⁵ references and
thousands of queries fit in memory; above that, optionally, an approximate faiss index.

`nearest` is the one search every caller uses (fusion-similar, fusion-predict's ``retrieval.k``, the
quality metrics of training and CV, the benchmark). ``exclude`` keeps a query from retrieving its own
record: a query patient who is in the reference set never finds itself.

faiss is an optional extra (``pip install 'fusion-oncology[retrieval]'``): the index is IVF-Flat over the
inner product of unit vectors (= cosine). Why IVF-Flat: it stores the vectors themselves (no quantisation
error in the similarities it returns), builds fast on one core (k-means on a sample, then one assignment
pass: 0.2 s for 10⁵ references of width 64, where an HNSW graph took 5.6 s), and its one knob, the share of
lists scanned (`NPROBE_SHARE`), trades recall for speed; benchmarks/retrieval.py measures both against
exact search.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fusion.errors import ConfigError

#: query rows scored against all references at once (a (chunk, N) similarity block)
CHUNK = 1024
#: ``index="auto"`` uses faiss above this many references (when faiss is installed), exact search below
AUTO_FAISS_ABOVE = 100_000
INDEXES = ("exact", "faiss", "auto")
#: IVF lists: about sqrt(N) (each list then holds about sqrt(N) vectors), at least 1
LISTS_PER_SQRT_N = 1.0
#: each query scans this share of the IVF lists, and lists holding at least `MIN_SCANNED` references (a small
#: index is then searched almost whole: IVF's recall is poor when few lists are scanned; see the benchmark)
NPROBE_SHARE = 1 / 16
MIN_SCANNED = 5_000
#: k-means of the IVF lists is trained on at most this many references per list (faiss' own default cap)
TRAIN_PER_LIST = 64


def normalised(vectors: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (a zero row stays zero: similarity 0 to everything)."""
    tensor = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    return tensor / tensor.norm(dim=1, keepdim=True).clamp_min(1e-12)


def nearest(
    queries: np.ndarray | torch.Tensor,
    references: np.ndarray | torch.Tensor,
    k: int,
    exclude: Sequence[int | None] | None = None,
    index: str = "exact",
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` most cosine-similar references of each query: (indices (Q, k), similarities (Q, k)),
    best first. ``exclude[q]``: a reference index that query q must not retrieve (itself), or None.

    ``index``: "exact" (default), "faiss" (approximate IVF-Flat; needs the ``retrieval`` extra) or "auto"
    (faiss above `AUTO_FAISS_ABOVE` references when it is installed, else exact)."""
    refs = normalised(references)
    query = normalised(queries)
    n_refs = refs.shape[0]
    if k < 1 or k > n_refs - (1 if exclude is not None and any(e is not None for e in exclude) else 0):
        raise ValueError(f"k={k} neighbours asked of {n_refs} references")
    if _use_faiss(index, n_refs):
        return search_index(faiss_index(refs), query, k, exclude, refs)
    return _exact(query, refs, k, exclude)


def _use_faiss(index: str, n_refs: int) -> bool:
    if index not in INDEXES:
        raise ConfigError(f"retrieval index '{index}': expected one of {', '.join(INDEXES)}")
    if index == "auto":
        return n_refs > AUTO_FAISS_ABOVE and _faiss_installed()
    return index == "faiss"


def _exact(
    query: torch.Tensor, refs: torch.Tensor, k: int, exclude: Sequence[int | None] | None
) -> tuple[np.ndarray, np.ndarray]:
    indices = np.empty((query.shape[0], k), dtype=np.int64)
    similarities = np.empty((query.shape[0], k), dtype=np.float32)
    for start in range(0, query.shape[0], CHUNK):
        block = query[start : start + CHUNK] @ refs.T
        if exclude is not None:
            for row, own in enumerate(exclude[start : start + CHUNK]):
                if own is not None:
                    block[row, own] = -float("inf")
        values, found = block.topk(k, dim=1)
        indices[start : start + len(found)] = found.numpy()
        similarities[start : start + len(found)] = values.numpy()
    return indices, similarities


def _faiss_installed() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise ConfigError(
            "retrieval index 'faiss' needs the faiss package: pip install 'fusion-oncology[retrieval]' "
            "(or use index 'exact', exact up to ~10⁵ references)"
        ) from None
    return faiss


def faiss_index(references: np.ndarray | torch.Tensor) -> Any:
    """An IVF-Flat inner-product faiss index of the unit-length `references` (built once, searched by
    `search_index`); ConfigError naming the extra when faiss is not installed."""
    faiss = _faiss()
    refs = np.ascontiguousarray(normalised(references).numpy())
    n, dim = refs.shape
    lists = max(1, min(int(LISTS_PER_SQRT_N * math.sqrt(n)), n // 39 or 1))  # faiss warns under 39 per list
    quantiser = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFFlat(quantiser, dim, lists, faiss.METRIC_INNER_PRODUCT)
    sample = refs
    if n > TRAIN_PER_LIST * lists:  # a fixed-seed sample: the same references give the same index
        rows = np.random.default_rng(0).choice(n, TRAIN_PER_LIST * lists, replace=False)
        sample = refs[np.sort(rows)]
    index.cp.max_points_per_centroid = TRAIN_PER_LIST
    index.train(sample)
    index.add(refs)
    index.nprobe = min(lists, max(math.ceil(lists * NPROBE_SHARE), math.ceil(lists * MIN_SCANNED / n)))
    return index


def search_index(
    index: Any,
    queries: np.ndarray | torch.Tensor,
    k: int,
    exclude: Sequence[int | None] | None = None,
    references: np.ndarray | torch.Tensor | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`nearest` through a `faiss_index`: k + 1 asked where a query has an ``exclude``d reference, its own
    index dropped. A row the index cannot fill (too few references in the scanned lists) is searched
    exactly in `references` when given."""
    query = np.ascontiguousarray(normalised(queries).numpy())
    excluding = exclude is not None and any(e is not None for e in exclude)
    found_sims, found = index.search(query, k + 1 if excluding else k)
    indices = np.empty((query.shape[0], k), dtype=np.int64)
    similarities = np.empty((query.shape[0], k), dtype=np.float32)
    short = []
    for row in range(query.shape[0]):
        own = exclude[row] if exclude is not None else None
        keep = found[row] >= 0  # faiss pads with -1
        if own is not None:
            keep &= found[row] != own
        if keep.sum() < k:
            short.append(row)
            continue
        indices[row] = found[row][keep][:k]
        similarities[row] = found_sims[row][keep][:k]
    if short:
        if references is None:
            raise ValueError(f"the faiss index found fewer than k={k} neighbours for {len(short)} queries")
        rows = torch.as_tensor(query[short])
        own_rows = None if exclude is None else [exclude[r] for r in short]
        indices[short], similarities[short] = _exact(rows, normalised(references), k, own_rows)
    return indices, similarities
