"""The base value of every explanation: each target's mean over the training split.

Shapley values need the value of the empty coalition, a model with no input at all, which no model is trained
for. fusion uses the mean output over the training patients instead (the usual SHAP convention): a
contribution then says how far this modality moves the patient away from the average training patient.
fusion-train computes it with the selected weights and stores it in the checkpoint (`fusion.checkpoint`); an
average over at least ``privacy.min_group`` patients, it holds no one patient's value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from fusion.attribution.context import TargetKey, target_values
from fusion.heads.base import Head
from fusion.model import FusionModel


def mean_targets(
    model: FusionModel, heads: dict[str, Head], batches: Iterable[dict[str, Any]]
) -> dict[TargetKey, float]:
    """(head, target) -> mean over every patient of `batches` (collated, with ``inputs``), in eval mode."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    totals: dict[TargetKey, float] = {}
    count = 0
    try:
        with torch.no_grad():
            for batch in batches:
                inputs = move_data_to_device(batch["inputs"], device)
                for key, value in target_values(heads, model(inputs)).items():
                    totals[key] = totals.get(key, 0.0) + float(value.double().sum())
                count += len(batch["patient_id"])
    finally:
        model.train(was_training)
    return {key: total / count for key, total in totals.items()} if count else {}


def as_nested(base: dict[TargetKey, float]) -> dict[str, dict[str, float]]:
    """{head: {target: value}}: the plain form stored in a checkpoint."""
    nested: dict[str, dict[str, float]] = {}
    for (head, target), value in base.items():
        nested.setdefault(head, {})[target] = value
    return nested


def from_nested(nested: dict[str, dict[str, float]]) -> dict[TargetKey, float]:
    return {(head, target): float(v) for head, targets in nested.items() for target, v in targets.items()}
