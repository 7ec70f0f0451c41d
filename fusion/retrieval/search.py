"""Nearest neighbours by cosine similarity: exact search in torch, chunked so that 10⁵ references and
thousands of queries fit in memory.

`nearest` is the one search every caller uses (fusion-similar, fusion-predict's ``retrieval.k``, the
quality metrics of training and CV, the benchmark). ``exclude`` keeps a query from retrieving its own
record: a query patient who is in the reference set never finds itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

#: query rows scored against all references at once (a (chunk, N) similarity block)
CHUNK = 1024


def normalised(vectors: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length (a zero row stays zero: similarity 0 to everything)."""
    tensor = torch.as_tensor(np.asarray(vectors, dtype=np.float32))
    return tensor / tensor.norm(dim=1, keepdim=True).clamp_min(1e-12)


def nearest(
    queries: np.ndarray | torch.Tensor,
    references: np.ndarray | torch.Tensor,
    k: int,
    exclude: Sequence[int | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` most cosine-similar references of each query: (indices (Q, k), similarities (Q, k)),
    best first. ``exclude[q]``: a reference index that query q must not retrieve (itself), or None."""
    refs = normalised(references)
    query = normalised(queries)
    n_refs = refs.shape[0]
    if k < 1 or k > n_refs - (1 if exclude is not None and any(e is not None for e in exclude) else 0):
        raise ValueError(f"k={k} neighbours asked of {n_refs} references")
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
