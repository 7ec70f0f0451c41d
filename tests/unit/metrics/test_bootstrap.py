"""The patient bootstrap: counts, percentile intervals, undefined replicates, speed."""

import time

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


def test_a_thousand_replicates_on_200_patients_take_seconds():
    rng = np.random.default_rng(0)
    n = 200
    time_, event, risk = rng.exponential(10, n), rng.random(n) < 0.6, rng.normal(size=n)
    counts = resample_counts(n, 1000, seed=0)
    start = time.perf_counter()
    ci = percentile_ci(lambda c: ws.harrell_cindex(c, risk, time_, event), counts)
    assert ci is not None
    assert time.perf_counter() - start < 5.0
