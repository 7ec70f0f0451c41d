"""The faiss path of `nearest` agrees with exact search, keeps self-exclusion, and says which extra to
install when faiss is missing."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from fusion.errors import ConfigError
from fusion.retrieval import search
from fusion.retrieval.search import nearest

HAS_FAISS = importlib.util.find_spec("faiss") is not None
needs_faiss = pytest.mark.skipif(
    not HAS_FAISS, reason="faiss not installed (optional extra: pip install 'fusion-oncology[retrieval]')"
)


def clustered(n: int, seed: int = 0, dim: int = 16) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim))
    return (centres[rng.integers(0, 8, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)


@needs_faiss
def test_faiss_finds_the_exact_neighbours_of_a_small_set():
    references = clustered(2000)
    queries = clustered(50, seed=1)
    exact, exact_sims = nearest(queries, references, 5)
    approx, approx_sims = nearest(queries, references, 5, index="faiss")
    recall = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(exact, approx, strict=True)])
    assert recall >= 0.95
    assert approx.shape == (50, 5) and approx.dtype == np.int64 and approx_sims.dtype == np.float32
    assert np.all(np.diff(approx_sims, axis=1) <= 1e-6)  # best first
    np.testing.assert_allclose(approx_sims[:, 0], exact_sims[:, 0], atol=1e-5)


@pytest.mark.parametrize("index", ["exact", pytest.param("faiss", marks=needs_faiss)])
def test_a_query_in_the_reference_set_never_retrieves_itself(index):
    references = clustered(500)
    own = list(range(0, 40, 2))
    found, _ = nearest(references[own], references, 3, exclude=own, index=index)
    assert all(o not in row for o, row in zip(own, found, strict=True))
    # without exclusion each finds itself first
    found, sims = nearest(references[own], references, 3, index=index)
    assert list(found[:, 0]) == own and np.allclose(sims[:, 0], 1.0, atol=1e-5)


def test_auto_searches_exactly_up_to_the_threshold(monkeypatch):
    def no_faiss(*args, **kwargs):
        raise AssertionError("auto used faiss below the threshold")

    monkeypatch.setattr(search, "faiss_index", no_faiss)
    references = clustered(100)
    found, _ = nearest(references[:3], references, 2, index="auto")
    assert list(found[:, 0]) == [0, 1, 2]


def test_faiss_without_the_extra_names_it(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "faiss", None)  # import faiss -> ImportError
    with pytest.raises(ConfigError, match=r"fusion-oncology\[retrieval\]"):
        nearest(clustered(20), clustered(20), 2, index="faiss")
    found, _ = nearest(clustered(5), clustered(20), 2, index="auto")  # auto falls back to exact
    assert found.shape == (5, 2)


def test_an_unknown_index_is_refused():
    with pytest.raises(ConfigError, match="exact, faiss, auto"):
        nearest(clustered(5), clustered(20), 2, index="hnsw")
