"""Refuse splits too small to evaluate, before training.

A metric on one test patient, or on a test split without a class or without an event, is a number that
means nothing (a 5-patient cohort reports balanced accuracy 1.0, CI [1.0, 1.0]). So each split must hold
``data.split.min_patients.<split>`` patients, and ``data.split.min_per_class.<split>`` patients of each
class a head's metrics need (`Head.class_counts`: every class of a classification head, the events of a
survival head). An empty split is not checked (nothing is evaluated on it, e.g.
``data.split.test=0``); 0 turns a check off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fusion.data.records import PatientRecord
from fusion.errors import ConfigError
from fusion.heads.base import Head

ROLES = ("train", "val", "test")
#: defaults: refuse a 5-patient cohort's 1-patient val and test splits, accept the 40-patient cohort of the
#: tests (default split 26/6/8 patients; 2- and 3-fold CV: >= 3 val and 13 test patients per fold).
#: Val only selects the checkpoint, so its classes are not required by default.
MIN_PATIENTS = {"train": 10, "val": 3, "test": 5}
MIN_PER_CLASS = {"train": 0, "val": 0, "test": 2}


@dataclass(frozen=True)
class SplitMinimums:
    """Per split: the fewest patients (``patients``) and the fewest of each needed class (``per_class``)."""

    patients: dict[str, int] = field(default_factory=lambda: dict(MIN_PATIENTS))
    per_class: dict[str, int] = field(default_factory=lambda: dict(MIN_PER_CLASS))

    @classmethod
    def from_split_config(cls, split: Mapping[str, Any]) -> SplitMinimums:
        """From ``data.split`` (its ``min_patients`` and ``min_per_class``; absent = the defaults)."""
        return cls(
            _minimums("min_patients", split.get("min_patients"), MIN_PATIENTS),
            _minimums("min_per_class", split.get("min_per_class"), MIN_PER_CLASS),
        )


def _minimums(key: str, given: Mapping[str, Any] | None, default: dict[str, int]) -> dict[str, int]:
    given = dict(given or {})
    unknown = sorted(set(given) - set(ROLES))
    if unknown:
        raise ConfigError(f"data.split.{key}: unknown split(s) {unknown}; the splits are {list(ROLES)}")
    for role, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConfigError(f"data.split.{key}.{role} must be an int >= 0, got {value!r}")
    return {**default, **given}


def split_size_problems(
    splits: Mapping[str, list[PatientRecord]], heads: Mapping[str, Head], minimums: SplitMinimums
) -> list[str]:
    """What is too small, one phrase per split and check, each with the counts found and the setting."""
    problems = []
    for role in ROLES:
        records = splits.get(role) or []
        if not records:
            continue
        need = minimums.patients.get(role, 0)
        if len(records) < need:
            problems.append(
                f"{role} has {len(records)} patient(s), needs data.split.min_patients.{role}={need}"
            )
        need = minimums.per_class.get(role, 0)
        if need:
            short = [
                f"{name} {klass}: {count}"
                for name, head in heads.items()
                for klass, count in head.class_counts(
                    [r.labels.get(name) for r in records if r.labels.get(name) is not None]
                ).items()
                if count < need
            ]
            if short:
                problems.append(
                    f"{role} has too few patients per class ({', '.join(short)}), "
                    f"needs data.split.min_per_class.{role}={need}"
                )
    return problems


def check_split_sizes(
    splits: Mapping[str, list[PatientRecord]],
    heads: Mapping[str, Head],
    minimums: SplitMinimums,
    larger: str = "larger data.split.val / data.split.test fractions",
) -> None:
    """Raise a one-line ConfigError naming every split that is too small. `larger`: the settings that give
    larger splits (fusion-cv: cv.folds, cv.val)."""
    problems = split_size_problems(splits, heads, minimums)
    if problems:
        raise ConfigError(size_message(problems, larger))


def size_message(problems: list[str], larger: str) -> str:
    return (
        f"split(s) too small to evaluate: {'; '.join(problems)}. Use a larger cohort or {larger}, "
        "or lower these minimums (0 turns a check off)"
    )
