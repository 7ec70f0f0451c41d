"""The patient bootstrap: counts, percentile intervals, undefined replicates, vectorisation."""

import sys

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fusion.metrics import weighted_classification as wc
from fusion.metrics import weighted_survival as ws
from fusion.metrics.bootstrap import percentile_ci, point, resample_counts


def test_counts_draw_n_patients_and_are_seeded():
    counts = resample_counts(30, 200, seed=4)
    assert counts.shape == (200, 30) and (counts.sum(axis=1) == 30).all()
    assert np.array_equal(counts, resample_counts(30, 200, seed=4))
    assert not np.array_equal(counts, resample_counts(30, 200, seed=5))


def test_percentile_ci_matches_a_loop_over_resampled_patients():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    s = y * 0.4 + rng.random(60)
    counts = resample_counts(60, 300, seed=1)
    low, high = percentile_ci(lambda c: wc.auroc(c, s, y), counts)
    values = []
    for row in counts:
        idx = np.repeat(np.arange(60), row.astype(int))
        if len(np.unique(y[idx])) == 2:
            values.append(roc_auc_score(y[idx], s[idx]))
    assert (low, high) == pytest.approx(tuple(np.quantile(values, [0.025, 0.975])), abs=1e-12)
    assert low < point(lambda c: wc.auroc(c, s, y), 60) < high


def test_undefined_replicates_are_skipped():
    # 2 positives out of 20: many replicates draw none, where the AUROC is undefined
    y = np.zeros(20, dtype=int)
    y[:2] = 1
    s = np.linspace(0, 1, 20)
    counts = resample_counts(20, 400, seed=0)
    values = wc.auroc(counts, s, y)
    assert np.isnan(values).any() and np.isfinite(values).any()
    low, high = percentile_ci(lambda c: wc.auroc(c, s, y), counts)
    assert 0.0 <= low <= high <= 1.0


def _python_calls_of_a_cindex_ci(n: int, n_bootstrap: int) -> int:
    """Python-level function calls (Python and C functions called from Python) made by a Harrell C-index
    percentile CI over `n_bootstrap` replicates of `n` patients."""
    rng = np.random.default_rng(0)
    time_, event, risk = rng.exponential(10, n), rng.random(n) < 0.6, rng.normal(size=n)
    counts = resample_counts(n, n_bootstrap, seed=0)
    calls = 0

    def profile(frame, event_name, arg):
        nonlocal calls
        calls += event_name in ("call", "c_call")

    sys.setprofile(profile)
    try:
        ci = percentile_ci(lambda c: ws.harrell_cindex(c, risk, time_, event), counts)
    finally:
        sys.setprofile(None)
    assert ci is not None and 0.0 < ci[0] < ci[1] < 1.0
    return calls


def test_a_thousand_replicates_on_200_patients_are_vectorised():
    """What made 1000 replicates on 200 patients take well under a second: every replicate (and every pair
    of patients) runs through the same few matrix products. Counted, not timed: a Python loop over
    replicates makes at least one call per replicate, a loop over patients or pairs one per patient."""
    calls = _python_calls_of_a_cindex_ci(200, 1000)
    assert calls < 1000, calls  # ~190 with numpy 2: a few calls per chunk of 250 replicates
    assert _python_calls_of_a_cindex_ci(50, 1000) == pytest.approx(calls, abs=10)  # nothing per patient
