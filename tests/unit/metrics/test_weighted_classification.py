"""Classification metrics on bootstrap counts == scikit-learn / torchmetrics on the resampled patients."""

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, balanced_accuracy_score, f1_score, roc_auc_score
from torchmetrics.functional.classification import binary_calibration_error

from fusion.metrics import weighted_classification as wc
from fusion.metrics.bootstrap import resample_counts
from fusion.metrics.calibration import reliability_curve


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    n = 150
    grade = rng.integers(0, 3, n)
    logits = np.round(rng.normal(size=(n, 3)) + 1.2 * np.eye(3)[grade], 1)  # rounding: tied scores
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    response = (rng.random(n) < 0.35).astype(int)
    # tied scores, none exactly on a calibration bin edge (where float edges of numpy/torch may differ)
    score = np.clip(np.round(0.3 * response + 0.7 * rng.random(n), 2), 0, 0.99) + 0.005
    return grade, prob, response, score


def replicates(n):
    """All ones (the point estimate) and a few bootstrap draws."""
    return np.vstack([np.ones(n), resample_counts(n, 6, seed=11)])


def test_metrics_equal_sklearn_on_each_resample(data):
    grade, prob, response, score = data
    pred = prob.argmax(1)
    counts = replicates(len(grade))
    got = {
        "auroc": wc.auroc(counts, score, response),
        "ap": wc.average_precision(counts, score, response),
        "macro": wc.macro_auroc(counts, prob, grade),
        "bacc": wc.balanced_accuracy(counts, pred, grade, 3),
        "f1": wc.f1_macro(counts, pred, grade, 3),
        "ece": wc.expected_calibration_error(counts, score, response, 10),
    }
    for b, row in enumerate(counts):
        idx = np.repeat(np.arange(len(grade)), row.astype(int))
        expected = {
            "auroc": roc_auc_score(response[idx], score[idx]),
            "ap": average_precision_score(response[idx], score[idx]),
            "macro": roc_auc_score(grade[idx], prob[idx], multi_class="ovr", average="macro"),
            "bacc": balanced_accuracy_score(grade[idx], pred[idx]),
            "f1": f1_score(grade[idx], pred[idx], average="macro"),
            "ece": float(
                binary_calibration_error(torch.tensor(score[idx]), torch.tensor(response[idx]), n_bins=10)
            ),
        }
        for key, value in expected.items():
            assert got[key][b] == pytest.approx(value, abs=1e-9), (key, b)


def test_undefined_metrics_are_nan():
    counts = np.ones((1, 4))
    assert np.isnan(wc.auroc(counts, np.array([0.1, 0.2, 0.3, 0.4]), np.ones(4)))[0]
    assert np.isnan(wc.average_precision(counts, np.array([0.1, 0.2, 0.3, 0.4]), np.zeros(4)))[0]
    one_class = np.array([[0.2, 0.8], [0.6, 0.4], [0.3, 0.7], [0.9, 0.1]])
    assert np.isnan(wc.macro_auroc(counts, one_class, np.zeros(4, dtype=int)))[0]


def test_f1_counts_labels_only_predicted_and_balanced_accuracy_only_true():
    # class 2 never occurs in truth but is predicted once: F1 averages over 3 labels, recall over 2
    target, pred = np.array([0, 0, 1, 1]), np.array([0, 2, 1, 1])
    counts = np.ones((1, 4))
    assert wc.f1_macro(counts, pred, target, 3)[0] == pytest.approx(f1_score(target, pred, average="macro"))
    assert wc.balanced_accuracy(counts, pred, target, 3)[0] == pytest.approx(0.75)


def test_reliability_curve_bins():
    prob = np.array([0.05, 0.07, 0.55, 0.58, 0.95, 1.0])
    target = np.array([0, 1, 1, 1, 1, 0])
    curve = reliability_curve(prob, target, n_bins=10)
    assert curve["count"] == [2, 2, 2]
    assert curve["predicted"] == pytest.approx([0.06, 0.565, 0.975])
    assert curve["observed"] == pytest.approx([0.5, 1.0, 0.5])
