"""Test-time evaluation: a prediction table + labels -> scalar metrics, bootstrap 95% CIs, curves.

What each head measures lives in the head (`Head.evaluate`); this package bootstraps it."""

from fusion.evaluation.core import (
    Evaluation,
    evaluate,
    fit_references,
    has_labels,
    labels_by_head,
    missingness,
)
from fusion.heads.evaluation import EvaluationSettings
from fusion.heads.survival_reference import SurvivalReference

__all__ = [
    "Evaluation",
    "EvaluationSettings",
    "SurvivalReference",
    "evaluate",
    "fit_references",
    "has_labels",
    "labels_by_head",
    "missingness",
]
