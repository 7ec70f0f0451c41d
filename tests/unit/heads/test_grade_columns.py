"""The grade head's prediction columns are named after its class labels, not their index."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fusion.errors import ConfigError
from fusion.heads import GradeHead
from fusion.heads.evaluation import EvaluationSettings
from fusion.heads.grade import column_label


@pytest.mark.parametrize(
    ("classes", "columns"),
    [
        ([1, 2, 3], ["grade_prob_1", "grade_prob_2", "grade_prob_3"]),
        ([1.0, 2.0, 3.0], ["grade_prob_1", "grade_prob_2", "grade_prob_3"]),  # as a CSV reader types them
        (["G1", "G2", "G3"], ["grade_prob_G1", "grade_prob_G2", "grade_prob_G3"]),
        (["low grade", "high-grade"], ["grade_prob_low_grade", "grade_prob_high_grade"]),
        (["G1/2", "G3"], ["grade_prob_G1_2", "grade_prob_G3"]),
        (["1.5", "2"], ["grade_prob_1_5", "grade_prob_2"]),
    ],
)
def test_columns_are_named_after_the_class_labels(classes, columns):
    head = GradeHead(4, classes=classes)
    assert head.prediction_columns == columns
    assert list(head.predictions(head(torch.randn(3, 4)))) == columns


def test_a_head_with_another_name_prefixes_its_columns():
    assert GradeHead(4, classes=["I", "II"], name="who_grade").prediction_columns == [
        "who_grade_prob_I",
        "who_grade_prob_II",
    ]


def test_column_label_keeps_only_letters_digits_and_underscore():
    assert column_label('G 1,2"é') == "G_1_2__"
    assert column_label("T2_high") == "T2_high"


def test_labels_that_give_the_same_column_are_a_config_error():
    with pytest.raises(
        ConfigError, match=r"classes \['G 1', 'G-1'\] give the same prediction column \(grade_prob_G_1"
    ):
        GradeHead(4, classes=["G 1", "G-1", "G2"])
    with pytest.raises(ConfigError, match="non-empty"):
        GradeHead(4, classes=["", "G2"])


def test_column_k_is_the_probability_of_class_k():
    """Class order = column order = the label index `parse_cells` gives, so a confident, right model
    scores AUROC 1 through the named columns."""
    head = GradeHead(4, classes=["G3", "G1", "G2"])  # any order: the config's
    labels = torch.tensor([head.parse_cells({"grade": g}) for g in ["G1", "G2", "G3", "G1", "G3", "G2"]])
    prob = np.eye(3)[labels.numpy()] * 0.9 + 0.05
    predictions = {column: prob[:, k] for k, column in enumerate(head.prediction_columns)}
    assert head.prediction_columns[labels[0]] == "grade_prob_G1"
    evaluation = head.evaluate(predictions, labels, EvaluationSettings(n_bootstrap=0), full=False)
    value = evaluation.metrics["grade_auroc"](np.ones((1, len(evaluation.rows))))
    assert float(np.asarray(value).ravel()[0]) == pytest.approx(1.0)


def test_weights_do_not_depend_on_the_column_names():
    """A checkpoint names its parameters by module, never by column: one trained with classes [1, 2, 3]
    (columns grade_prob_0..2 before) loads into today's head unchanged."""
    before, now = GradeHead(4, classes=[1, 2, 3]), GradeHead(4, classes=[1, 2, 3])
    assert not [k for k in before.state_dict() if "prob" in k]
    now.load_state_dict(before.state_dict())
    z = torch.randn(2, 4)
    assert torch.equal(before(z), now(z))
