"""One implementation per metric: the value logged every epoch (`Head.metrics`), the test-time value
(`fusion.evaluation.evaluate`, which also bootstraps it) and the reference libraries agree."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score
from torchmetrics.functional.classification import binary_auroc, multiclass_auroc
from torchsurv.metrics.cindex import ConcordanceIndex

from fusion.evaluation import EvaluationSettings, evaluate
from fusion.heads import GradeHead, ResponseHead, SurvivalHead

N = 150


def outputs_and_labels(seed: int) -> tuple[dict[str, torch.Tensor], dict[str, list]]:
    """Head outputs with ties, label tensors with unknown rows, and the same labels as parsed values."""
    rng = np.random.default_rng(seed)
    grade = rng.integers(0, 3, N)
    grade_out = torch.tensor(np.round(rng.normal(size=(N, 3)) + 1.2 * np.eye(3)[grade], 1), dtype=torch.float)
    time = np.round(rng.exponential(10, N), 0) + 1.0  # tied times
    event = (rng.random(N) < 0.6).astype(float)
    risk = torch.tensor(np.round(-np.log(time) + rng.normal(0, 1, N), 1), dtype=torch.float)  # tied risks
    response = (rng.random(N) < 0.4).astype(float)
    response_out = torch.tensor(np.round(1.5 * response + rng.normal(0, 1, N), 1), dtype=torch.float)
    unknown = rng.random(N) < 0.1
    parsed = {
        "grade": [None if u else int(g) for u, g in zip(unknown, grade, strict=True)],
        "survival": [None if u else (t, e) for u, t, e in zip(unknown[::-1], time, event, strict=True)],
        "response": [None if u else r for u, r in zip(np.roll(unknown, 7), response, strict=True)],
    }
    outputs = {"grade": grade_out, "survival": risk, "response": response_out}
    return outputs, parsed


HEADS = {"grade": GradeHead(4, classes=[1, 2, 3]), "survival": SurvivalHead(4), "response": ResponseHead(4)}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_epoch_and_test_values_are_identical(seed):
    outputs, parsed = outputs_and_labels(seed)
    ids = [f"P{i}" for i in range(N)]
    frame = pd.DataFrame({"patient_id": ids})
    epoch = {}
    for name, head in HEADS.items():
        for column, values in head.predictions(outputs[name]).items():
            frame[column] = values.numpy()
        epoch.update(head.metrics(outputs[name], head.label_tensor(parsed[name])))
    labels = {name: dict(zip(ids, parsed[name], strict=True)) for name in HEADS}
    tested = evaluate(frame, labels, HEADS, EvaluationSettings(n_bootstrap=0))
    assert set(epoch) == {"grade_auroc", "grade_balanced_accuracy", "survival_cindex", "response_auroc"}
    for key, value in epoch.items():
        assert tested.metrics[f"test/{key}"] == value, key  # the same code: equal, not approximately


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_epoch_values_match_the_reference_libraries(seed):
    outputs, parsed = outputs_and_labels(seed)
    got = {}
    for name, head in HEADS.items():
        got.update(head.metrics(outputs[name], head.label_tensor(parsed[name])))

    known = [g is not None for g in parsed["grade"]]
    prob = outputs["grade"].softmax(1)[known]
    target = torch.tensor([g for g in parsed["grade"] if g is not None])
    assert got["grade_auroc"] == pytest.approx(
        float(multiclass_auroc(prob, target, 3, average="macro")), abs=1e-6
    )
    assert got["grade_balanced_accuracy"] == pytest.approx(balanced_accuracy_score(target, prob.argmax(1)))

    known = [r is not None for r in parsed["response"]]
    target = torch.tensor([r for r in parsed["response"] if r is not None]).long()
    expected = float(binary_auroc(outputs["response"].sigmoid()[known], target))
    assert got["response_auroc"] == pytest.approx(expected, abs=1e-6)

    known = [s is not None for s in parsed["survival"]]
    time, event = torch.tensor([s for s in parsed["survival"] if s is not None], dtype=torch.double).T
    expected = float(ConcordanceIndex()(outputs["survival"][known].double(), event.bool(), time))
    assert got["survival_cindex"] == pytest.approx(expected, abs=1e-9)
