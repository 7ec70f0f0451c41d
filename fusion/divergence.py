"""Stop a diverging run at the step it happens: non-finite outputs, losses or weights, named in one line.

A learning rate far too high drives the weights to inf/NaN within a few steps. Left alone, the NaN
outputs either crash a loss's input check with a long traceback or train on for epochs, checkpoint
NaN weights and predict nothing. These checks turn each case into a `TrainingDiverged` naming the
epoch, the step and the head (or, when the batch itself holds non-finite values, the patient and the
modality), raised before any checkpoint of those weights is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from fusion.errors import TrainingDiverged

ADVICE = "lower optim.lr or check inputs"


def _what(value: torch.Tensor) -> str:
    return "NaN" if torch.isnan(value).any() else "infinite"


def check_outputs(outputs: Mapping[str, torch.Tensor], where: str) -> None:
    """Raise when a head's output holds a NaN or an infinity (`where`: "at epoch 0, step 3")."""
    for head, out in outputs.items():
        if not torch.isfinite(out).all():
            raise TrainingDiverged(f"model output became {_what(out)} {where} (head {head}); {ADVICE}")


def check_losses(losses: Mapping[str, torch.Tensor], where: str) -> None:
    """Raise when a head's loss (or the total, named "total") is not finite."""
    for head, loss in losses.items():
        if not torch.isfinite(loss).all():
            raise TrainingDiverged(f"loss became {_what(loss)} {where} (head {head}); {ADVICE}")


def check_weights(parameters: Iterable[tuple[str, torch.Tensor]], where: str) -> None:
    """Raise when a weight is not finite: such a model is never checkpointed."""
    for name, param in parameters:
        if not torch.isfinite(param).all():
            raise TrainingDiverged(
                f"weights became {_what(param)} {where} (parameter {name}); not saving a checkpoint of "
                f"them; {ADVICE}"
            )


def check_inputs(inputs: Mapping[str, Mapping[str, Any]], patient_ids: Sequence[str], where: str) -> None:
    """Raise naming the first patient and modality whose input holds a NaN or an infinity.

    `inputs`: the collated batch (`fusion.data.dataset.Collator`): per modality "present" (B,) and
    "data", the present patients' rows (a tensor, or a dict/list of them).
    """
    for modality, entry in inputs.items():
        present = entry.get("present")
        if present is None or entry.get("data") is None:
            continue
        ids = [pid for pid, has in zip(patient_ids, present.tolist(), strict=False) if has]
        for tensor in _tensors(entry["data"]):
            if not tensor.is_floating_point() or torch.isfinite(tensor).all():
                continue
            bad = ~torch.isfinite(tensor.reshape(tensor.shape[0], -1)).all(dim=1) if tensor.ndim else None
            row = int(bad.nonzero()[0]) if bad is not None and tensor.shape[0] == len(ids) else None
            patient = f"patient {ids[row]}" if row is not None else "a patient of this batch"
            raise TrainingDiverged(
                f"input of modality {modality} for {patient} holds non-finite values {where}; "
                "check that patient's file (or clear the cache)"
            )


def _tensors(data: Any) -> list[torch.Tensor]:
    if isinstance(data, torch.Tensor):
        return [data]
    if isinstance(data, Mapping):
        return [t for v in data.values() for t in _tensors(v)]
    if isinstance(data, list | tuple):
        return [t for v in data for t in _tensors(v)]
    return []
