"""Splits too small to evaluate are refused: the split, the counts found and the setting that changes it."""

from __future__ import annotations

import pytest

import fusion
from fusion.data.records import PatientRecord
from fusion.data.split_sizes import MIN_PATIENTS, SplitMinimums, check_split_sizes, split_size_problems
from fusion.errors import ConfigError
from fusion.heads import GradeHead, Head, ResponseHead, SurvivalHead

HEADS = {
    "grade": GradeHead(in_dim=4, classes=[1, 2, 3]),
    "survival": SurvivalHead(in_dim=4),
    "response": ResponseHead(in_dim=4),
}


def _patients(prefix: str, grades: list[int | None], events: list[int], responses: list[float]) -> list:
    return [
        PatientRecord(f"{prefix}{i}", labels={"grade": g, "survival": (10.0, float(e)), "response": r})
        for i, (g, e, r) in enumerate(zip(grades, events, responses, strict=True))
    ]


def _balanced(prefix: str, n: int) -> list:
    return _patients(
        prefix, [i % 3 for i in range(n)], [i % 2 for i in range(n)], [float(i % 2) for i in range(n)]
    )


def test_heads_count_the_classes_their_metrics_need_zero_counts_included():
    assert HEADS["grade"].class_counts([0, 0, 2]) == {"class 1": 2, "class 2": 0, "class 3": 1}
    assert HEADS["survival"].class_counts([(3.0, 1.0), (4.0, 0.0), (5.0, 1.0)]) == {"events": 2}
    assert HEADS["response"].class_counts([1.0, 1.0]) == {"responders": 2, "non-responders": 0}


def test_a_five_patient_cohort_is_refused_naming_split_counts_and_setting():
    splits = {
        "train": _balanced("tr", 3),
        "val": _patients("v", [0], [1], [1.0]),
        "test": _patients("t", [1], [1], [0.0]),
    }
    with pytest.raises(ConfigError) as err:
        check_split_sizes(splits, HEADS, SplitMinimums())
    message = str(err.value)
    assert "\n" not in message  # the CLI prints it as one line
    assert "train has 3 patient(s), needs data.split.min_patients.train=10" in message
    assert "val has 1 patient(s), needs data.split.min_patients.val=3" in message
    assert "test has 1 patient(s), needs data.split.min_patients.test=5" in message
    assert (
        "test has too few patients per class (grade class 1: 0, grade class 2: 1, grade class 3: 0, "
        "survival events: 1, response responders: 0, response non-responders: 1), "
        "needs data.split.min_per_class.test=2"
    ) in message
    assert "larger data.split.val / data.split.test fractions" in message and "0 turns a check off" in message


def test_large_enough_splits_pass_and_unlabelled_patients_do_not_count_for_a_class():
    splits = {"train": _balanced("tr", 10), "val": _balanced("v", 3), "test": _balanced("t", 6)}
    assert split_size_problems(splits, HEADS, SplitMinimums()) == []
    # two of the six test patients lose their grade: class 1 keeps one patient, fewer than 2
    splits["test"] = _patients("t", [None, 1, 2, None, 1, 2], [1, 0] * 3, [1.0, 0.0] * 3)
    assert split_size_problems(splits, HEADS, SplitMinimums()) == [
        "test has too few patients per class (grade class 1: 0), needs data.split.min_per_class.test=2"
    ]


def test_empty_splits_are_not_checked_and_zero_turns_a_check_off():
    assert split_size_problems({"train": _balanced("tr", 10), "test": []}, HEADS, SplitMinimums()) == []
    tiny = {"train": _balanced("tr", 2), "val": _balanced("v", 1), "test": _balanced("t", 1)}
    off = SplitMinimums.from_split_config(
        {"min_patients": {"train": 0, "val": 0, "test": 0}, "min_per_class": {"test": 0}}
    )
    assert split_size_problems(tiny, HEADS, off) == []


def test_a_head_without_classes_needs_only_the_patient_minimum():
    class Regression(ResponseHead):
        class_counts = Head.class_counts  # the base class default: no class needed

    splits = {
        "train": _balanced("tr", 10),
        "val": _balanced("v", 3),
        "test": _patients("t", [0] * 5, [0] * 5, [1.0] * 5),
    }
    assert split_size_problems(splits, {"size": Regression(in_dim=4, name="size")}, SplitMinimums()) == []


@pytest.mark.parametrize(
    ("split", "match"),
    [
        ({"min_patients": {"tets": 5}}, r"data.split.min_patients: unknown split\(s\) \['tets'\]"),
        ({"min_per_class": {"test": -1}}, r"data.split.min_per_class.test must be an int >= 0, got -1"),
        ({"min_patients": {"val": 2.5}}, r"data.split.min_patients.val must be an int >= 0, got 2.5"),
    ],
)
def test_bad_minimums_are_config_errors(split, match):
    with pytest.raises(ConfigError, match=match):
        SplitMinimums.from_split_config(split)


def test_the_shipped_config_states_the_defaults():
    split = fusion.compose().data.split
    assert dict(split.min_patients) == MIN_PATIENTS
    assert SplitMinimums.from_split_config(split) == SplitMinimums()
