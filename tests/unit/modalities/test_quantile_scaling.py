"""Quantile-normal scaling: close to scikit-learn's QuantileTransformer, smoothed, and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.preprocessing import QuantileTransformer

from fusion.modalities.quantile_scaling import fit_quantiles, quantile_grid, quantile_normal


def test_close_to_sklearn_inside_the_training_range():
    rng = np.random.default_rng(0)
    train = np.c_[rng.lognormal(size=300), rng.normal(size=300)]
    test = np.c_[rng.lognormal(size=50), rng.normal(size=50)]
    quantiles, counts = fit_quantiles(train, min_group=10)
    ours = quantile_normal(test, quantiles, counts)
    theirs = QuantileTransformer(n_quantiles=100, output_distribution="normal").fit(train).transform(test)
    inside = (test > np.quantile(train, 0.05, axis=0)) & (test < np.quantile(train, 0.95, axis=0))
    assert inside.sum() > 80
    np.testing.assert_allclose(ours[inside], theirs[inside], atol=0.1)  # smoothing moves scores a little


def test_quantiles_sit_at_a_fixed_grid_and_are_never_a_training_value():
    rng = np.random.default_rng(1)
    for n in (20, 37, 500):
        train = rng.lognormal(size=(n, 1)).round(3)
        quantiles, _ = fit_quantiles(train, min_group=10)
        assert quantiles.shape == (100, 1) and np.all(np.diff(quantiles[:, 0]) >= 0)
        assert not np.isin(quantiles, train).any()
        assert train.min() < quantiles.min() and quantiles.max() < train.max()
    np.testing.assert_allclose(quantile_grid(4), [0.125, 0.375, 0.625, 0.875])


def test_too_few_values_give_no_quantiles():
    train = np.c_[np.arange(25.0), np.r_[np.arange(19.0), [np.nan] * 6]]
    quantiles, counts = fit_quantiles(train, min_group=10)
    assert counts.tolist() == [25, 19]
    assert not np.isnan(quantiles[:, 0]).any() and np.isnan(quantiles[:, 1]).all()  # needs 2 x min_group


def test_tails_are_bounded_and_order_is_kept():
    train = np.arange(1.0, 201.0)[:, None]
    quantiles, counts = fit_quantiles(train, min_group=10)
    z = quantile_normal(np.array([[-1e9], [1.0], [100.5], [200.0], [1e9]]), quantiles, counts)[:, 0]
    assert z[0] == z[1] and z[3] == z[4] == pytest.approx(-z[0]) and z[2] == pytest.approx(0, abs=1e-9)
    assert z[4] == pytest.approx(2.576, abs=1e-3)  # normal quantile of the last grid point, 0.995


def test_ties_missing_values_and_an_empty_column():
    train = np.array([[0.0] * 15 + [5.0] * 5, [np.nan] * 20]).T
    quantiles, counts = fit_quantiles(train, min_group=5)
    assert counts.tolist() == [20, 0]
    z = quantile_normal(np.array([[0.0, 3.0], [np.nan, np.nan]]), quantiles, counts)
    assert -1.2 < z[0, 0] < 0  # a value shared by 15 of 20 patients gets its middle rank
    assert z[0, 1] == 0.0  # never seen in training: neutral
    assert np.isnan(z[1]).all()  # missing stays missing (the modality sets its indicator)
