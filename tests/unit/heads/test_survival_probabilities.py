"""Survival probabilities and median in predictions*.csv: S(t | x) = S0(t)^exp(risk - offset) from the
stored (pooled) Breslow baseline, checked against a Breslow estimate computed by hand."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest

from fusion.heads.survival import SurvivalHead, horizon_label
from fusion.heads.survival_probabilities import (
    median_survival,
    prediction_horizons,
    survival_columns,
    survival_curve,
)
from fusion.heads.survival_reference import SurvivalReference
from fusion.prediction_table import add_survival_columns


def _cohort(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    risk = rng.normal(size=n)
    time = np.round(rng.exponential(20.0 * np.exp(-risk)) + 0.1, 1)
    event = rng.random(n) < 0.7
    return risk, time, event


def _hand_cumhaz(risk, time, event, offset, t):
    """Breslow by hand: the sum over event times s <= t of d(s) / sum_{T_i >= s} exp(r_i - offset)."""
    total = 0.0
    for s in sorted(set(time[event])):
        if s > t:
            break
        deaths = int(((time == s) & event).sum())
        total += deaths / sum(math.exp(r - offset) for r, ti in zip(risk, time, strict=True) if ti >= s)
    return total


@pytest.fixture(scope="module")
def fitted():
    risk, time, event = _cohort()
    reference = SurvivalReference.fit(risk, time, event, min_group=10)
    return risk, time, event, reference.to_dict()


def test_probabilities_are_the_hand_computed_breslow_curve(fitted):
    risk, time, event, reference = fitted
    offset = reference["baseline"]["offset"]
    knots = np.asarray(reference["baseline"]["cumhaz"]["knots"])
    at_knots = [_hand_cumhaz(risk, time, event, offset, k) for k in knots]
    columns = survival_columns("survival", reference, np.array([-1.0, 0.0, 1.5]), horizons=[7.5, 12.0])
    assert list(columns) == ["survival_prob_7.5", "survival_prob_12", "survival_median"]
    for h in (7.5, 12.0):
        s0 = math.exp(-np.interp(h, knots, at_knots))  # the stored curve is linear in H0 between knots
        expected = [s0 ** math.exp(r - offset) for r in (-1.0, 0.0, 1.5)]
        np.testing.assert_allclose(columns[f"survival_prob_{horizon_label(h)}"], expected, rtol=1e-9)


def test_median_is_where_the_interpolated_curve_crosses_one_half(fitted):
    _, _, _, reference = fitted
    risk = np.array([-0.5, 0.0, 1.0])
    median = median_survival(reference, risk)
    assert np.isfinite(median).all() and (np.diff(median) < 0).all()  # higher risk, shorter median
    _, at_median = survival_curve(reference, risk, np.array([0.0]))  # shape check of the array form
    assert at_median.shape == (3, 1) and np.allclose(at_median, 1.0)
    for r, m in zip(risk, median, strict=True):
        _, probs = survival_curve(reference, float(r), [m - 1e-6, m, m + 1e-6])
        assert probs.shape == (3,)
        assert probs[0] > 0.5 and probs[1] == pytest.approx(0.5, abs=1e-9) and probs[2] < 0.5


def test_median_not_reached_is_empty_and_beyond_the_baseline_is_empty(fitted):
    _, time, _, reference = fitted
    columns = survival_columns("pfs", reference, np.array([-40.0, np.nan]), horizons=[10.0, 1e6])
    assert np.isnan(columns["pfs_median"]).all()  # a very low risk never drops to 0.5; NaN risk: empty
    assert columns["pfs_prob_10"][0] > 0.99 and np.isnan(columns["pfs_prob_10"][1])
    assert np.isnan(columns["pfs_prob_1e+06"]).all()  # past the training follow-up: nothing to say


def test_default_horizons_are_the_rounded_event_time_quartiles(fitted):
    _, _, _, reference = fitted
    quartiles = sorted(reference["event_quantiles"].values())
    chosen = prediction_horizons(reference)
    assert len(chosen) == 3
    for q, h in zip(quartiles, chosen, strict=True):  # two significant digits, rounded down
        assert h <= q + 1e-9 < h + 10 ** (math.floor(math.log10(q)) - 1) and float(f"{h:.2g}") == h
    assert prediction_horizons(reference, [24, 12]) == [12.0, 24.0]


def test_horizon_label():
    assert [horizon_label(h) for h in (12.0, 7.5, 12, 0.25)] == ["12", "7.5", "12", "0.25"]


def test_curve_starts_at_one_on_the_baselines_own_points(fitted):
    _, _, _, reference = fitted
    times, probs = survival_curve(reference, 0.3)
    assert times[0] == 0.0 and probs[0] == 1.0 and (np.diff(probs) <= 0).all()
    assert list(times) == sorted({0.0, *reference["baseline"]["cumhaz"]["knots"]})


def test_exact_step_baseline_of_older_checkpoints_gives_the_step_time(fitted):
    risk, time, event, _ = fitted
    exact = SurvivalReference.fit(risk, time, event, min_group=None).to_dict()
    median = median_survival(exact, np.array([0.0]))[0]
    assert median in set(time[event])  # a step function drops only at event times
    _, probs = survival_curve(exact, 0.0, [median])
    assert probs[0] <= 0.5


def test_predictions_table_gets_the_columns_beside_risk_or_says_why_not(fitted, caplog):
    _, _, _, reference = fitted
    heads = {"survival": SurvivalHead(4), "pfs": SurvivalHead(4, name="pfs")}
    frame = pd.DataFrame({"patient_id": ["a", "b"], "risk": [0.1, None], "pfs_risk": [0.2, 0.3], "x": [1, 2]})
    with caplog.at_level(logging.INFO, logger="fusion.prediction_table"):
        out = add_survival_columns(frame, heads, {"survival": reference}, horizons=[12.0])
    assert list(out.columns) == [
        "patient_id",
        "risk",
        "survival_prob_12",
        "survival_median",
        "pfs_risk",
        "x",
    ]
    assert out["survival_prob_12"].isna().tolist() == [False, True]
    assert any(
        "head 'pfs'" in r.getMessage() and "no training reference" in r.getMessage() for r in caplog.records
    )


def test_time_unit_is_a_head_option():
    assert SurvivalHead(4).time_unit == "unspecified"
    assert SurvivalHead(4, time_unit="months").time_unit == "months"
