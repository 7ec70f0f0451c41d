"""Metrics against the reference implementations (lifelines, scikit-learn) on the same inputs."""

import math

import numpy as np
import pytest
import torch
from lifelines.utils import concordance_index
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from fusion.metrics import balanced_accuracy, binary_auroc, harrell_cindex, macro_auroc


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_harrell_cindex_matches_lifelines(seed):
    rng = np.random.default_rng(seed)
    n = 150
    time = np.round(rng.exponential(10, n), 1)  # rounding makes tied times
    event = rng.random(n) < 0.6
    risk = np.round(-np.log(time + 1) + rng.normal(0, 1, n), 1)  # and tied risks
    expected = concordance_index(time, -risk, event)
    got = harrell_cindex(torch.tensor(risk), torch.tensor(time), torch.tensor(event))
    assert got == pytest.approx(expected, abs=1e-9)


def test_cindex_undefined_without_events():
    assert math.isnan(harrell_cindex(torch.randn(5), torch.rand(5) + 1, torch.zeros(5)))


def test_binary_auroc_matches_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    p = np.clip(y * 0.3 + rng.random(100) * 0.7, 0, 1)
    assert binary_auroc(torch.tensor(p), torch.tensor(y)) == pytest.approx(roc_auc_score(y, p), abs=1e-6)
    assert math.isnan(binary_auroc(torch.tensor([0.2, 0.4]), torch.tensor([1, 1])))


def test_macro_auroc_and_balanced_accuracy_match_sklearn():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 120)
    logits = rng.normal(size=(120, 3)) + np.eye(3)[y] * 1.5
    prob = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = roc_auc_score(y, prob, multi_class="ovr", average="macro")
    assert macro_auroc(torch.tensor(prob), torch.tensor(y)) == pytest.approx(expected, abs=1e-6)
    expected_bacc = balanced_accuracy_score(y, prob.argmax(1))
    assert balanced_accuracy(torch.tensor(prob), torch.tensor(y)) == pytest.approx(expected_bacc)


def test_macro_auroc_with_a_class_absent_averages_present_classes():
    prob = torch.tensor([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.1, 0.8, 0.1]])
    target = torch.tensor([0, 1, 0, 1])
    assert macro_auroc(prob, target) == pytest.approx(1.0)
