"""fusion-cv's summary: intervals clipped to each metric's range; notes on clipped and few-fold intervals."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from fusion.cross_validation import MIN_FOLDS_FOR_CI, metric_ranges, summarise
from fusion.heads import GradeHead, Head, ResponseHead, SurvivalHead
from fusion.heads.base import known_metric_range


def _t_interval(values: list[float]) -> list[float]:
    n, mean = len(values), sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    return [mean - half, mean + half]


def test_a_two_fold_auroc_interval_is_clipped_to_0_1_and_says_so():
    folds = [{"test/grade_auroc": 0.3, "test/size_mae": 2.0}, {"test/grade_auroc": 0.9, "test/size_mae": 9.0}]
    raw = _t_interval([0.3, 0.9])
    assert raw[0] < 0 and raw[1] > 1  # t with 1 degree of freedom: about [-3.2, 4.4]
    out = summarise(folds)
    assert out["ci95"]["test/grade_auroc"] == [0.0, 1.0]
    # an unknown metric name (a custom head's error in cm) is never clipped, even below 0
    mae = _t_interval([2.0, 9.0])
    assert mae[0] < 0 and out["ci95"]["test/size_mae"] == pytest.approx(mae)
    notes = out["ci_notes"]
    assert f"every interval rests on 2 fold values, fewer than {MIN_FOLDS_FOR_CI}" in notes[0]
    assert "cv.folds, cv.repeats" in notes[0]
    assert [n for n in notes if n.startswith("test/grade_auroc:")] == [
        f"test/grade_auroc: the interval [{raw[0]:.3g}, {raw[1]:.3g}] leaves the metric's range [0, 1]; "
        "clipped to [0, 1]"
    ]
    assert not any(n.startswith("test/size_mae") for n in notes)


def test_only_the_side_that_leaves_the_range_is_clipped():
    values = [0.95, 0.99, 0.9, 0.97]
    low, high = _t_interval(values)
    assert low > 0 and high > 1
    out = summarise([{"oracle/survival_cindex": v} for v in values])
    assert out["ci95"]["oracle/survival_cindex"] == [pytest.approx(low), 1.0]


def test_five_or_more_folds_inside_the_range_need_no_note():
    folds = [{"test/response_auroc": v} for v in (0.6, 0.7, 0.8, 0.65, 0.75)]
    out = summarise(folds, test_train_ratio=0.25)
    assert out["ci_notes"] == []
    assert 0 < out["ci95"]["test/response_auroc"][0] < out["ci95"]["test/response_auroc"][1] < 1


def test_notes_name_metrics_with_fewer_fold_values_and_a_single_value():
    folds = [
        {"test/grade_auroc": 0.7, "test/survival_td_auc_q50": 0.6, "test/response_ece": 0.1},
        {"test/grade_auroc": 0.8, "test/survival_td_auc_q50": None, "test/response_ece": 0.2},
        {"test/grade_auroc": 0.75, "test/survival_td_auc_q50": None, "test/response_ece": None},
        {"test/grade_auroc": 0.72, "test/survival_td_auc_q50": None, "test/response_ece": None},
        {"test/grade_auroc": 0.71, "test/survival_td_auc_q50": None, "test/response_ece": None},
    ]
    out = summarise(folds)
    assert "test/survival_td_auc_q50" not in out["ci95"]
    assert out["ci_notes"][0] == "no interval for test/survival_td_auc_q50: only one fold has a value"
    assert out["ci_notes"][1].startswith("the intervals of test/response_ece rest on 2 fold values")
    assert out["ci95"]["test/response_ece"][0] == 0.0  # clipped below: ECE >= 0
    assert len(out["ci_notes"]) == 3 and out["ci_notes"][2].startswith("test/response_ece: the interval")


@pytest.mark.parametrize(
    ("metric", "bounds"),
    [
        ("test/grade_auroc", (0.0, 1.0)),
        ("grade_balanced_accuracy", (0.0, 1.0)),
        ("test/grade_f1_macro", (0.0, 1.0)),
        ("test/response_auprc", (0.0, 1.0)),
        ("test/response_ece", (0.0, 1.0)),
        ("oracle/survival_cindex", (0.0, 1.0)),
        ("test/pfs_uno_cindex", (0.0, 1.0)),
        ("test/survival_td_auc_q25", (0.0, 1.0)),
        ("test/survival_brier_365", (0.0, 1.0)),
        ("test/survival_ibs", (0.0, 1.0)),
        ("test/size_mae", None),
        ("test/size_concordance", None),
        ("test/grade_aurocs_mean", None),
    ],
)
def test_known_metric_names_lie_in_0_1_and_others_are_unbounded(metric, bounds):
    assert known_metric_range(metric) == bounds


def test_a_custom_head_declares_its_metrics_range_and_the_summary_clips_to_it():
    class Size(ResponseHead):
        def metric_range(self, metric):
            return (0.0, None) if metric.endswith("_mae") else super().metric_range(metric)

    heads: dict[str, Head] = {
        "grade": GradeHead(in_dim=4, classes=[1, 2]),
        "survival": SurvivalHead(in_dim=4),
        "size": Size(in_dim=4, name="size"),
    }
    keys = [
        "test/size_mae",
        "test/size_auroc",
        "oracle/grade_auroc",
        "test/survival_ibs",
        "test/other_x",
        "epoch",
    ]
    ranges = metric_ranges(keys, heads)
    assert ranges == {
        "test/size_mae": (0.0, None),
        "test/size_auroc": (0.0, 1.0),
        "oracle/grade_auroc": (0.0, 1.0),
        "test/survival_ibs": (0.0, 1.0),
        "test/other_x": None,
    }
    out = summarise([{"test/size_mae": 2.0}, {"test/size_mae": 9.0}], ranges=ranges)
    low, high = out["ci95"]["test/size_mae"]
    assert low == 0.0 and high == pytest.approx(_t_interval([2.0, 9.0])[1])  # no ceiling
    assert any("leaves the metric's range [0, inf)" in n for n in out["ci_notes"])
