"""evaluate(): a prediction table + labels -> scalar metrics, CIs and artifacts, per head type."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from lifelines.statistics import logrank_test
from sklearn.metrics import f1_score, roc_auc_score
from sksurv.metrics import concordance_index_ipcw
from sksurv.util import Surv

from fusion.checkpoint import store_references, stored_references
from fusion.errors import ConfigError
from fusion.evaluation import EvaluationSettings, SurvivalReference, evaluate, fit_references
from fusion.heads.grade import GradeHead
from fusion.heads.response import ResponseHead
from fusion.heads.survival import SurvivalHead
from fusion.heads.survival_evaluation import horizons

HEADS = {
    "grade": GradeHead(4, classes=["G1", "G2", "G3"]),
    "survival": SurvivalHead(4),
    "response": ResponseHead(4),
}


def fake_split(rng, n, prefix):
    grade = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[grade]
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    time = np.round(rng.exponential(10, n), 1) + 0.1
    event = (rng.random(n) < 0.6).astype(float)
    risk = -np.log(time) + rng.normal(0, 1, n)
    response = (rng.random(n) < 0.4).astype(float)
    ids = [f"{prefix}{i}" for i in range(n)]
    frame = pd.DataFrame(
        {
            "patient_id": ids,
            **{f"grade_prob_G{k + 1}": prob[:, k] for k in range(3)},
            "risk": risk,
            "response_prob": np.clip(0.3 * response + 0.6 * rng.random(n), 0, 1),
        }
    )
    labels = {
        "grade": dict(zip(ids, grade.tolist(), strict=True)),
        "survival": {p: (t, e) for p, t, e in zip(ids, time, event, strict=True)},
        "response": dict(zip(ids, response.tolist(), strict=True)),
    }
    # unknown labels and a patient without predictions are normal: they are left out of that head
    labels["grade"][ids[0]] = None
    labels["response"][ids[1]] = None
    frame.loc[2, "risk"] = np.nan
    return frame, labels


@pytest.fixture(scope="module")
def evaluated():
    rng = np.random.default_rng(0)
    train_frame, train_labels = fake_split(rng, 200, "tr")
    test_frame, test_labels = fake_split(rng, 80, "te")
    references = fit_references(train_frame, train_labels, HEADS)
    settings = EvaluationSettings(n_bootstrap=200, seed=1)
    return evaluate(test_frame, test_labels, HEADS, settings, references), test_frame, test_labels, references


def test_every_metric_is_a_scalar_with_its_ci(evaluated):
    result, *_ = evaluated
    expected = {
        "grade_auroc",
        "grade_balanced_accuracy",
        "grade_f1_macro",
        "survival_cindex",
        "survival_uno_cindex",
        "survival_ibs",
        "response_auroc",
        "response_auprc",
        "response_ece",
    }
    expected |= {f"survival_{m}_q{q}" for m in ("td_auc", "brier") for q in (25, 50, 75)}
    assert set(result.metrics) == {f"test/{k}" for k in expected}
    for key, value in result.metrics.items():
        assert isinstance(value, float), key
        low, high = result.ci95[key]
        assert low <= high
    json.dumps(result.metrics), json.dumps(result.ci95), json.dumps(result.heads)  # all JSON-able


def test_point_estimates_match_references_on_the_labelled_rows(evaluated):
    result, frame, labels, references = evaluated
    known = [labels["response"][p] is not None for p in frame["patient_id"]]
    y = np.array([v for v in labels["response"].values() if v is not None])
    assert result.metrics["test/response_auroc"] == pytest.approx(
        roc_auc_score(y, frame["response_prob"][known])
    )
    g_known = [labels["grade"][p] is not None for p in frame["patient_id"]]
    g = np.array([v for v in labels["grade"].values() if v is not None])
    pred = frame[[f"grade_prob_G{k + 1}" for k in range(3)]].to_numpy()[g_known].argmax(1)
    assert result.metrics["test/grade_f1_macro"] == pytest.approx(f1_score(g, pred, average="macro"))
    assert result.heads["grade"]["n"] == 79 and result.heads["survival"]["n"] == 79


def test_uno_uses_training_censoring(evaluated):
    """With the exact training censoring distribution, Uno's C is scikit-survival's; the stored (pooled)
    one moves it very little (tests/unit/heads/test_survival_reference_privacy.py)."""
    result, frame, labels, _ = evaluated
    rng = np.random.default_rng(0)
    train_frame, train_labels = fake_split(rng, 200, "tr")  # the same draw as the fixture
    # the reference is fitted on training patients with a label and a prediction (row 2 has none)
    scored = train_frame["risk"].notna().to_numpy()
    t_tr, e_tr = np.array(list(train_labels["survival"].values()))[scored].T
    # fitted as fit_references does: on the float32 label tensor's times
    as_labelled = t_tr.astype(np.float32).astype(float)
    exact = SurvivalReference.fit(train_frame["risk"][scored], as_labelled, e_tr.astype(bool), min_group=None)
    head = {"survival": HEADS["survival"]}
    with_exact = evaluate(
        frame, labels, head, EvaluationSettings(n_bootstrap=0), {"survival": exact.to_dict()}
    )
    rows = frame["risk"].notna().to_numpy()
    t, e = np.array(list(labels["survival"].values()))[rows].T
    tau = max(with_exact.heads["survival"]["horizons"].values())
    expected = concordance_index_ipcw(
        Surv.from_arrays(e_tr.astype(bool), t_tr),
        Surv.from_arrays(e.astype(bool), t),
        frame["risk"][rows].to_numpy(),
        tau=tau,
    )[0]
    assert with_exact.metrics["test/survival_uno_cindex"] == pytest.approx(expected, abs=1e-12)
    assert result.metrics["test/survival_uno_cindex"] == pytest.approx(expected, abs=0.02)


def test_risk_groups_use_training_cut_points_and_lifelines_logrank(evaluated):
    result, frame, labels, references = evaluated
    groups = result.heads["survival"]["risk_groups"]
    assert groups["cutoff_source"] == "train"
    cutoffs = SurvivalReference.from_dict(references["survival"]).risk_cutoffs[2]
    assert groups["cutoffs"] == pytest.approx(cutoffs)
    rows = frame["risk"].notna().to_numpy()
    time, event = np.array(list(labels["survival"].values()))[rows].T
    group = np.searchsorted(cutoffs, frame["risk"][rows].to_numpy(), side="right")
    expected = logrank_test(time[group == 0], time[group == 1], event[group == 0], event[group == 1]).p_value
    assert groups["logrank_p"] == pytest.approx(expected)
    # counts per group, no patient's time or event in the artifacts (report/evaluation.json)
    assert groups["n"] == [int((group == k).sum()) for k in (0, 1)]
    assert groups["events"] == [int(event[group == k].sum()) for k in (0, 1)]
    assert not {"time", "event", "group"} & set(groups)


def test_without_reference_only_harrell_and_test_median_groups(evaluated):
    _, frame, labels, _ = evaluated
    result = evaluate(frame, labels, {"survival": HEADS["survival"]}, EvaluationSettings(n_bootstrap=0))
    assert set(result.metrics) == {"test/survival_cindex"} and result.ci95 == {}
    assert result.heads["survival"]["risk_groups"]["cutoff_source"] == "test"
    assert "skipped" in result.heads["survival"]["note"]


def test_horizons_configured_or_quantiles_clipped_below_max_follow_up():
    reference = SurvivalReference.fit(
        np.zeros(4), np.array([1.0, 2.0, 3.0, 40.0]), np.ones(4, bool), min_group=None
    )
    test_time = np.array([1.0, 5.0, 9.0, 10.0])
    auto = horizons(EvaluationSettings(), reference, test_time)
    assert list(auto) == ["q25", "q50", "q75"] and max(auto.values()) == 9.0
    assert horizons(EvaluationSettings(horizons=[6, 2.5]), reference, test_time) == {"2.5": 2.5, "6": 6.0}
    # clipped to a round number below the next-longest follow-up, not that test patient's own time
    clipped = horizons(EvaluationSettings(), reference, np.array([1.0, 5.0, 9.87654, 10.0]))
    assert max(clipped.values()) == pytest.approx(9.8)


def test_bad_settings_are_config_errors_naming_the_setting():
    with pytest.raises(ConfigError, match="risk_groups"):
        EvaluationSettings(risk_groups=4)
    with pytest.raises(ConfigError, match="unknown setting.*n_boot"):
        EvaluationSettings.from_config({"n_boot": 10})
    with pytest.raises(ConfigError, match="horizons"):
        EvaluationSettings.from_config({"horizons": [0, 5]})


def test_reference_round_trips_through_a_checkpoint(tmp_path):
    rng = np.random.default_rng(2)
    reference = SurvivalReference.fit(rng.normal(size=50), rng.exponential(5, 50) + 0.1, rng.random(50) < 0.7)
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}, "fusion": {"config": {}}}, path)
    store_references(path, {"survival": reference.to_dict()})
    loaded = SurvivalReference.from_dict(stored_references(torch.load(path, weights_only=True))["survival"])
    grid = np.linspace(0.1, 10, 30)
    risk = rng.normal(size=7)
    assert loaded.baseline.survival(risk, grid) == pytest.approx(reference.baseline.survival(risk, grid))
    assert loaded.censoring(grid) == pytest.approx(reference.censoring(grid))
    assert loaded.risk_cutoffs == reference.risk_cutoffs
