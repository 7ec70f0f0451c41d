"""The fused patient embedding that similar patients are searched by: the fuser's output, the vector every
head reads, computed with the same presence mask as the patient's prediction (a missing modality is simply
absent, as in `FusionModel.encode`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, cast

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device

from fusion.heads.base import Head
from fusion.model import FusionModel


def fused_embeddings(
    model: FusionModel, batches: Iterable[dict[str, Any]], only: str | None = None
) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """(patient ids, embeddings (N, d) float32 on the CPU, has_any (N,) bool) over every patient of `batches`
    (collated, with ``patient_id`` and ``inputs``), in eval mode.

    ``only``: one modality's embedding from the same model, every other modality marked absent through the
    presence mask (as a missing file would be). A patient with no modality to embed (none of the model's, or
    not ``only``) gets has_any False and a zero row: such a row must not be searched.
    """
    if only is not None and only not in model.encoders:
        raise ValueError(f"only={only!r} is not one of the model's modalities {sorted(model.encoders)}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    ids: list[str] = []
    rows: list[torch.Tensor] = []
    flags: list[torch.Tensor] = []
    try:
        with torch.no_grad():
            for batch in batches:
                encoded = model.encode(move_data_to_device(batch["inputs"], device))
                if only is not None:
                    encoded = {n: (t, p & (n == only)) for n, (t, p) in encoded.items()}
                has_any = torch.stack([p for _, p in encoded.values()]).any(dim=0)
                z = torch.zeros(len(has_any), fuser_width(model), device=device)
                if has_any.any():
                    z[has_any] = model.fuser(
                        {n: (t[has_any], p[has_any]) for n, (t, p) in encoded.items()}
                    ).float()
                ids.extend(str(p) for p in batch["patient_id"])
                rows.append(z.cpu())
                flags.append(has_any.cpu())
    finally:
        model.train(was_training)
    if not rows:
        return [], torch.zeros(0, 0), torch.zeros(0, dtype=torch.bool)
    return ids, torch.cat(rows), torch.cat(flags)


def fuser_width(model: FusionModel) -> int:
    """The fused embedding's size d: the heads' input size."""
    head = cast(Head, next(iter(model.heads.values())))  # ModuleDict values are typed Module
    return head.in_dim


def state_dict_digest(state_dict: Mapping[str, Any]) -> str:
    """SHA-256 of a checkpoint's weights (names, dtypes, shapes, values): which weights an embedding was
    computed with. The same tensors give the same digest whatever the file they were saved in."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        value = state_dict[name]
        digest.update(name.encode())
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            digest.update(repr(value).encode())
    return digest.hexdigest()
