import math

import pandas as pd
import pytest
import torch

from fusion.data.cohort import Cohort
from fusion.heads import GradeHead, ResponseHead, SurvivalHead


def _cohort(tmp_path, **columns):
    frame = pd.DataFrame(
        {"patient_id": [f"P{i}" for i in range(len(next(iter(columns.values()))))], **columns}
    )
    frame.to_csv(tmp_path / "manifest.csv", index=False)
    return Cohort.load(tmp_path / "manifest.csv")


def test_cox_loss_matches_hand_computed_partial_likelihood():
    head = SurvivalHead(in_dim=4)
    risk = torch.tensor([0.5, -0.2, 1.0, 0.3])
    labels = torch.tensor([[1.0, 1.0], [2.0, 0.0], [3.0, 1.0], [math.nan, math.nan]])  # last: unknown
    # events at t=1 (risk set: all three known) and t=3 (risk set: itself)
    r = risk[:3]
    expected = -((r[0] - torch.logsumexp(r, 0)) + (r[2] - r[2])) / 2
    assert torch.isclose(head.loss(risk, labels), expected, atol=1e-6)


def test_survival_loss_is_none_without_events():
    head = SurvivalHead(in_dim=4)
    labels = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
    assert head.loss(torch.zeros(2), labels) is None


def test_survival_loss_is_none_with_a_single_labelled_patient():
    # a batch (or the last one) with one known survival label: nothing to compare it with
    labels = torch.tensor([[2.0, 1.0], [math.nan, math.nan]])
    assert SurvivalHead(in_dim=4).loss(torch.tensor([0.3, 0.1]), labels) is None


def test_grade_loss_only_on_known_labels():
    head = GradeHead(in_dim=4, classes=[1, 2, 3])
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 1.0]])
    labels = torch.tensor([0, -1, 2])
    expected = torch.nn.functional.cross_entropy(logits[[0, 2]], labels[[0, 2]])
    assert torch.isclose(head.loss(logits, labels), expected)
    assert head.loss(logits, torch.tensor([-1, -1, -1])) is None


def test_response_loss_masks_unknown():
    head = ResponseHead(in_dim=4)
    logits = torch.tensor([0.3, -1.0, 2.0])
    labels = torch.tensor([1.0, math.nan, 0.0])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[[0, 2]], labels[[0, 2]])
    assert torch.isclose(head.loss(logits, labels), expected)


def test_grade_parse_maps_classes_and_reports_bad_values(tmp_path):
    cohort = _cohort(tmp_path, grade=["G1", "G3", "", "G4"])
    head = GradeHead(in_dim=4, classes=["G1", "G2", "G3"])
    labels, problems = head.parse(cohort)
    assert labels == {"P0": 0, "P1": 2, "P2": None, "P3": None}
    assert len(problems) == 1 and problems[0].patient_id == "P3" and "G4" in str(problems[0])


def test_integer_grades_written_as_floats_match(tmp_path):
    cohort = _cohort(tmp_path, grade=[1.0, 2.0, None])
    labels, problems = GradeHead(in_dim=4, classes=[1, 2, 3]).parse(cohort)
    assert labels == {"P0": 0, "P1": 1, "P2": None} and not problems


def test_survival_parse_rejects_negative_time_and_bad_event(tmp_path):
    cohort = _cohort(
        tmp_path, survival_time=[5.0, -1.0, 3.0, None, 2.0], survival_event=[1, 1, 2, None, None]
    )
    labels, problems = SurvivalHead(in_dim=4).parse(cohort)
    assert labels["P0"] == (5.0, 1.0) and labels["P3"] is None
    messages = {p.patient_id: str(p) for p in problems}
    assert set(messages) == {"P1", "P2", "P4"}
    assert "> 0" in messages["P1"] and "0 (censored) or 1" in messages["P2"] and "empty" in messages["P4"]


def test_response_parse_rejects_non_binary(tmp_path):
    cohort = _cohort(tmp_path, response=[0, 1, 0.5])
    labels, problems = ResponseHead(in_dim=4).parse(cohort)
    assert labels["P0"] == 0.0 and labels["P1"] == 1.0
    assert [p.patient_id for p in problems] == ["P2"]


def test_prediction_columns_follow_design():
    z = torch.randn(5, 8)
    assert set(GradeHead(8, classes=[1, 2, 3]).predictions(GradeHead(8, classes=[1, 2, 3])(z))) == {
        "grade_prob_1",
        "grade_prob_2",
        "grade_prob_3",
    }
    assert set(SurvivalHead(8).predictions(torch.zeros(5))) == {"risk"}
    probs = ResponseHead(8).predictions(torch.zeros(5))["response_prob"]
    assert torch.allclose(probs, torch.full((5,), 0.5))


def test_grade_head_rejects_bad_class_config():
    with pytest.raises(ValueError, match="distinct"):
        GradeHead(in_dim=4, classes=[1, 1])
    with pytest.raises(ValueError, match="class_weights"):
        GradeHead(in_dim=4, classes=[1, 2], class_weights=[1.0])
