"""Quantile-normal scaling against scikit-learn's QuantileTransformer, and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.preprocessing import QuantileTransformer

from fusion.modalities.quantile_scaling import fit_quantiles, quantile_normal


def test_matches_sklearn_inside_the_training_range():
    rng = np.random.default_rng(0)
    train = np.c_[rng.lognormal(size=300), rng.normal(size=300)]
    test = np.c_[rng.lognormal(size=50), rng.normal(size=50)]
    quantiles, counts = fit_quantiles(train)
    ours = quantile_normal(test, quantiles, counts)
    theirs = QuantileTransformer(n_quantiles=100, output_distribution="normal").fit(train).transform(test)
    inside = (test > train.min(0)) & (test < train.max(0))
    assert inside.sum() > 90
    np.testing.assert_allclose(ours[inside], theirs[inside], atol=1e-9)


def test_tails_are_bounded_by_the_training_size_and_order_is_kept():
    train = np.arange(1.0, 201.0)[:, None]
    quantiles, counts = fit_quantiles(train)
    z = quantile_normal(np.array([[-1e9], [1.0], [100.5], [200.0], [1e9]]), quantiles, counts)[:, 0]
    assert z[0] == z[1] and z[3] == z[4] == pytest.approx(-z[0]) and z[2] == pytest.approx(0, abs=1e-9)
    assert z[4] == pytest.approx(2.807, abs=1e-3)  # normal quantile of 1 - 0.5 / 200


def test_ties_missing_values_and_an_empty_column():
    train = np.array([[0.0, np.nan], [0.0, np.nan], [0.0, np.nan], [5.0, np.nan]])
    quantiles, counts = fit_quantiles(train)
    assert counts.tolist() == [4, 0]
    z = quantile_normal(np.array([[0.0, 3.0], [np.nan, np.nan]]), quantiles, counts)
    assert z[0, 0] < 0 and z[0, 0] > -1.2  # a value shared by 3 of 4 patients gets its middle rank
    assert z[0, 1] == 0.0  # never seen in training: neutral
    assert np.isnan(z[1]).all()  # missing stays missing (the modality sets its indicator)
