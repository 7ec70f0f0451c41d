"""Survival metrics and curves against scikit-survival, lifelines and torchsurv on the same inputs."""

import warnings

import numpy as np
import pandas as pd
import pytest
import torch
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.utils import concordance_index
from sksurv.linear_model.coxph import BreslowEstimator
from sksurv.metrics import (
    brier_score,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.nonparametric import CensoringDistributionEstimator
from sksurv.util import Surv
from torchsurv.metrics.auc import Auc
from torchsurv.metrics.cindex import ConcordanceIndex
from torchsurv.stats.ipcw import get_ipcw

from fusion.metrics import weighted_survival as ws
from fusion.metrics.bootstrap import resample_counts
from fusion.metrics.survival_curves import Breslow, kaplan_meier

warnings.filterwarnings("ignore", category=UserWarning)  # torchsurv: ties in time


def cohort(rng, n):
    time = np.round(rng.exponential(10, n), 1) + 0.1  # rounding: tied times
    event = rng.random(n) < 0.6
    risk = np.round(-np.log(time) + rng.normal(0, 1, n), 1)  # and tied risks
    return risk, time, event


@pytest.fixture(params=[0, 1])
def split(request):
    rng = np.random.default_rng(request.param)
    train, test = cohort(rng, 300), cohort(rng, 120)
    censoring = kaplan_meier(train[1], train[2], reverse=True)
    horizons = np.quantile(train[1][train[2]], [0.25, 0.5, 0.75])
    return train, test, censoring, horizons


def ones(n):
    return np.ones((1, n))


def test_kaplan_meier_matches_lifelines_and_censoring_matches_sksurv(split):
    (_, time, event), test, censoring, _ = split
    km = kaplan_meier(time, event)
    kmf = KaplanMeierFitter().fit(time, event)
    grid = np.linspace(0, time.max(), 97)
    assert km(grid) == pytest.approx(kmf.survival_function_at_times(grid).to_numpy(), abs=1e-12)
    reference = CensoringDistributionEstimator().fit(Surv.from_arrays(event, time))
    assert censoring(test[1]) == pytest.approx(reference.predict_proba(test[1]), abs=1e-12)


def test_breslow_matches_sksurv_and_lifelines(split):
    (risk, time, event), (test_risk, _, _), _, horizons = split
    breslow = Breslow.fit(risk, time, event)
    grid = np.linspace(0.5, horizons[-1], 25)
    sksurv = BreslowEstimator().fit(risk, event, time).get_survival_function(test_risk)
    assert breslow.survival(test_risk, grid) == pytest.approx(np.stack([f(grid) for f in sksurv]), abs=1e-12)
    # lifelines: S(t|x) of a fitted Cox model equals Breslow on its own linear predictor
    frame = pd.DataFrame(
        {"x": -np.log(time) + np.random.default_rng(0).normal(0, 1, len(time)), "T": time, "E": event}
    )
    cph = CoxPHFitter().fit(frame, "T", "E")
    lp = cph.predict_log_partial_hazard(frame).to_numpy()
    event_times = np.unique(time[event])[::7]  # lifelines interpolates between event times: compare at them
    lifelines = cph.predict_survival_function(frame.iloc[:5], times=event_times).to_numpy().T
    ours = Breslow.fit(lp, time, event).survival(lp[:5], event_times)
    assert ours == pytest.approx(lifelines, abs=1e-8)


def test_harrell_matches_lifelines_sksurv_and_torchsurv(split):
    _, (risk, time, event), _, _ = split
    got = ws.harrell_cindex(ones(len(risk)), risk, time, event)[0]
    assert got == pytest.approx(concordance_index(time, -risk, event), abs=1e-12)
    torchsurv = ConcordanceIndex()(torch.tensor(risk), torch.tensor(event), torch.tensor(time))
    assert got == pytest.approx(float(torchsurv), abs=1e-12)


def test_uno_cindex_matches_sksurv_and_torchsurv(split):
    (_, t_train, e_train), (risk, time, event), censoring, horizons = split
    y_train, y_test = Surv.from_arrays(e_train, t_train), Surv.from_arrays(event, time)
    for tau in (None, horizons[-1]):
        got = ws.uno_cindex(ones(len(risk)), risk, time, event, censoring, tau)[0]
        assert got == pytest.approx(concordance_index_ipcw(y_train, y_test, risk, tau=tau)[0], abs=1e-12)
    # torchsurv squares the weights itself; its IPCW is float32, hence the looser tolerance
    weight = get_ipcw(torch.tensor(e_train), torch.tensor(t_train), torch.tensor(time)).double()
    torchsurv = ConcordanceIndex()(torch.tensor(risk), torch.tensor(event), torch.tensor(time), weight=weight)
    assert ws.uno_cindex(ones(len(risk)), risk, time, event, censoring)[0] == pytest.approx(
        float(torchsurv), abs=1e-4
    )


def test_cumulative_dynamic_auc_matches_sksurv_and_torchsurv(split):
    (_, t_train, e_train), (risk, time, event), censoring, horizons = split
    expected, _ = cumulative_dynamic_auc(
        Surv.from_arrays(e_train, t_train), Surv.from_arrays(event, time), risk, horizons
    )
    got = [ws.cumulative_dynamic_auc(ones(len(risk)), risk, time, event, censoring, h)[0] for h in horizons]
    assert got == pytest.approx(expected, abs=1e-12)
    weight = get_ipcw(torch.tensor(e_train), torch.tensor(t_train), torch.tensor(time)).double()
    new_time = torch.tensor(horizons[1:2])
    weight_new = get_ipcw(torch.tensor(e_train), torch.tensor(t_train), new_time).double()
    torchsurv = Auc()(
        torch.tensor(risk),
        torch.tensor(event),
        torch.tensor(time),
        new_time=new_time,
        weight=weight,
        weight_new_time=weight_new,
    )
    assert got[1] == pytest.approx(float(torchsurv), abs=1e-4)


def test_brier_and_integrated_brier_match_sksurv(split):
    (r_train, t_train, e_train), (risk, time, event), censoring, horizons = split
    y_train, y_test = Surv.from_arrays(e_train, t_train), Surv.from_arrays(event, time)
    grid = np.linspace(horizons[0], horizons[-1], 30)
    surv = Breslow.fit(r_train, t_train, e_train).survival(risk, grid)
    terms = ws.brier_contributions(surv, time, event, censoring, grid)
    _, expected = brier_score(y_train, y_test, surv, grid)
    assert ws.weighted_mean(ones(len(risk)), terms).ravel() == pytest.approx(expected, abs=1e-12)
    ibs = ws.weighted_mean(ones(len(risk)), ws.integrate(terms, grid))[0]
    assert ibs == pytest.approx(integrated_brier_score(y_train, y_test, surv, grid), abs=1e-12)


def test_bootstrap_replicates_equal_sksurv_on_the_resampled_patients(split):
    (r_train, t_train, e_train), (risk, time, event), censoring, horizons = split
    y_train = Surv.from_arrays(e_train, t_train)
    grid = np.linspace(horizons[0], horizons[-1], 10)
    surv = Breslow.fit(r_train, t_train, e_train).survival(risk, grid)
    per_patient_ibs = ws.integrate(ws.brier_contributions(surv, time, event, censoring, grid), grid)
    counts = resample_counts(len(risk), 4, seed=7)
    harrell = ws.harrell_cindex(counts, risk, time, event)
    uno = ws.uno_cindex(counts, risk, time, event, censoring, horizons[-1])
    auc = ws.cumulative_dynamic_auc(counts, risk, time, event, censoring, horizons[1])
    ibs = ws.weighted_mean(counts, per_patient_ibs)
    for b, row in enumerate(counts):
        idx = np.repeat(np.arange(len(risk)), row.astype(int))
        y = Surv.from_arrays(event[idx], time[idx])
        assert harrell[b] == pytest.approx(concordance_index(time[idx], -risk[idx], event[idx]), abs=1e-12)
        assert uno[b] == pytest.approx(concordance_index_ipcw(y_train, y, risk[idx], tau=horizons[-1])[0])
        assert auc[b] == pytest.approx(cumulative_dynamic_auc(y_train, y, risk[idx], horizons[1:2])[0][0])
        assert ibs[b] == pytest.approx(integrated_brier_score(y_train, y, surv[idx], grid), abs=1e-12)


def test_uno_undefined_when_censoring_survival_reaches_zero():
    # training: the last patient is censored, so G drops to 0 there; a test event beyond it has no weight
    censoring = kaplan_meier(np.array([1.0, 2.0, 3.0]), np.array([True, True, False]), reverse=True)
    risk, time, event = np.array([2.0, 1.0]), np.array([4.0, 5.0]), np.array([True, False])
    assert np.isnan(ws.uno_cindex(ones(2), risk, time, event, censoring))[0]
