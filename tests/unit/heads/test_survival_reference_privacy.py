"""The survival reference stored in a checkpoint holds no training patient's time or predicted risk:
its curves are pooled over groups of at least `min_group` patients, and the metrics barely move."""

from __future__ import annotations

import numpy as np
import pytest

from fusion.heads.survival_reference import MIN_GROUP, SurvivalReference
from fusion.metrics import weighted_survival as ws
from fusion.metrics.survival_curves import PiecewiseLinear, StepFunction, pooled_knots, round_up


def numbers(value) -> list[float]:
    """Every number in a nested dict/list."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in numbers(v)]
    if isinstance(value, list | tuple):
        return [x for v in value for x in numbers(v)]
    return [float(value)] if isinstance(value, int | float) else []


def split(rng, n):
    time = rng.exponential(10, n) + 0.1  # distinctive decimals: no two patients share a time
    risk = -np.log(time) + rng.normal(0, 1, n)
    return risk, time, rng.random(n) < 0.6


@pytest.fixture(scope="module")
def train():
    return split(np.random.default_rng(3), 300)


def test_no_stored_number_is_a_training_time_or_risk(train):
    risk, time, event = train
    stored = np.array(numbers(SurvivalReference.fit(risk, time, event).to_dict()))
    for values in (time, risk):
        close = np.isclose(stored[:, None], values[None, :], rtol=1e-6, atol=0)
        assert not close.any(), stored[close.any(axis=1)]
    # the exact reference (what checkpoints held before) is made of them: the check can fail
    exact = np.array(numbers(SurvivalReference.fit(risk, time, event, min_group=None).to_dict()))
    assert np.isclose(exact[:, None], time[None, :], rtol=1e-6, atol=0).any()


def test_each_interval_between_knots_holds_min_group_patients(train):
    _, time, _ = train
    knots = pooled_knots(time, MIN_GROUP)
    counts, _ = np.histogram(time, knots)
    assert knots[0] == 0 and knots[-1] >= time.max() and (counts >= MIN_GROUP).all()
    step = round_up(time.max()) / 100
    assert np.allclose(knots / step, np.round(knots / step))  # points of the regular grid
    assert round_up(97.123456) == 100 and round_up(100.0) == 120 and round_up(0.0123) == 0.015


def test_too_few_patients_store_no_reference():
    risk, time, event = split(np.random.default_rng(0), MIN_GROUP - 1)
    with pytest.raises(ValueError, match=f"fewer than {MIN_GROUP}"):
        SurvivalReference.fit(risk, time, event)


def test_pooling_moves_the_ipcw_metrics_little(train):
    risk, time, event = train
    t_risk, t_time, t_event = split(np.random.default_rng(4), 200)
    counts = np.ones((1, len(t_risk)))
    exact, pooled = (SurvivalReference.fit(risk, time, event, min_group=m) for m in (None, MIN_GROUP))
    h = exact.event_quantiles["q50"]
    values = {}
    for name, ref in (("exact", exact), ("pooled", pooled)):
        brier = ws.brier_contributions(
            ref.baseline.survival(t_risk, [h]), t_time, t_event, ref.censoring, [h]
        )
        values[name] = [
            ws.uno_cindex(counts, t_risk, t_time, t_event, ref.censoring, 20.0)[0],
            ws.cumulative_dynamic_auc(counts, t_risk, t_time, t_event, ref.censoring, h)[0],
            ws.weighted_mean(counts, brier[:, 0])[0],
        ]
    assert values["pooled"] == pytest.approx(values["exact"], abs=0.01)
    # the default horizons: quantiles of the pooled event-time distribution, close to the exact ones
    for q in ("q25", "q50", "q75"):
        assert pooled.event_quantiles[q] == pytest.approx(exact.event_quantiles[q], rel=0.05)


def test_checkpoints_with_exact_step_functions_still_load(train):
    risk, time, event = train
    exact = SurvivalReference.fit(risk, time, event, min_group=None)
    loaded = SurvivalReference.from_dict(exact.to_dict())
    assert isinstance(loaded.censoring, StepFunction) and isinstance(loaded.baseline.cumhaz, StepFunction)
    grid = np.linspace(0.1, 30, 40)
    assert loaded.censoring(grid) == pytest.approx(exact.censoring(grid))
    pooled = SurvivalReference.from_dict(SurvivalReference.fit(risk, time, event).to_dict())
    assert isinstance(pooled.censoring, PiecewiseLinear)
    assert pooled.baseline.survival(risk[:5], grid) == pytest.approx(
        exact.baseline.survival(risk[:5], grid), abs=0.05
    )


def test_risk_cut_points_average_min_group_patients(train):
    risk, time, event = train
    cut = SurvivalReference.fit(risk, time, event).risk_cutoffs[2][0]
    ordered = np.sort(risk)
    middle = (len(risk) - MIN_GROUP) // 2
    assert cut == pytest.approx(ordered[middle : middle + MIN_GROUP].mean())
    assert abs(cut - np.median(risk)) < 0.1
