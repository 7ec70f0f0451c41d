"""Metric functions: count-weighted (bootstrap-ready) implementations and their point estimates."""

from fusion.metrics.classification import balanced_accuracy, binary_auroc, macro_auroc
from fusion.metrics.survival import harrell_cindex

__all__ = ["balanced_accuracy", "binary_auroc", "harrell_cindex", "macro_auroc"]
