"""Test-time evaluation: a prediction table + labels -> scalar metrics, bootstrap 95% CIs, curves."""

from fusion.evaluation.core import Evaluation, evaluate, fit_references, labels_by_head, missingness
from fusion.evaluation.reference import SurvivalReference
from fusion.evaluation.settings import EvaluationSettings

__all__ = [
    "Evaluation",
    "EvaluationSettings",
    "SurvivalReference",
    "evaluate",
    "fit_references",
    "labels_by_head",
    "missingness",
]
