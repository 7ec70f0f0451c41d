"""Gathering across data-parallel ranks, for losses and metrics that need the whole batch or split.

Under DDP each rank sees only its shard: a Cox partial likelihood over one shard has the wrong risk
sets, and a C-index or AUROC averaged over ranks is not the C-index of the split. These helpers
concatenate every rank's rows (shards may differ in size: the last batch, `DistributedSampler`
padding) and, for training, let gradients flow back to the rank that produced each row.
Without an initialised process group (or with one rank) every helper returns its input unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.distributed as dist


def world_size() -> int:
    """Number of ranks, 1 when `torch.distributed` is not initialised."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_distributed() -> bool:
    return world_size() > 1


def _sizes(tensor: torch.Tensor) -> list[int]:
    """Every rank's number of rows (dim 0)."""
    local = torch.tensor([tensor.shape[0]], dtype=torch.long, device=tensor.device)
    sizes = [torch.zeros_like(local) for _ in range(world_size())]
    dist.all_gather(sizes, local)
    return [int(s.item()) for s in sizes]


def _gather_rows(tensor: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Pad to the largest shard, all_gather, strip the padding, concatenate in rank order."""
    longest = max(sizes)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: tensor.shape[0]] = tensor
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded.contiguous())
    return torch.cat([part[:n] for part, n in zip(parts, sizes, strict=True)])


class _GatherRows(torch.autograd.Function):
    """all_gather with a backward pass.

    Every rank computes the same loss from the gathered rows, so each holds the same gradient for
    all of them. Backward sums these over ranks (world_size x the gradient) and keeps this rank's
    rows; DDP then *averages* parameter gradients over ranks, which cancels the factor: the result
    is exactly the single-process gradient of the loss on the concatenated batch.
    """

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:
        sizes = _sizes(tensor)
        rank = dist.get_rank()
        ctx.rows = (sum(sizes[:rank]), sizes[rank])
        return _gather_rows(tensor, sizes)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)  # all_reduce works in place
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start, count = ctx.rows
        return grad[start : start + count]


def gather_rows(tensor: torch.Tensor, grad: bool = False) -> torch.Tensor:
    """Every rank's `tensor` concatenated along dim 0 in rank order (sizes may differ per rank).

    `grad=True` keeps the autograd graph (see `_GatherRows` for why the gradient scale is right);
    NCCL needs the tensor on this rank's GPU.
    """
    if not is_distributed():
        return tensor
    if grad and tensor.requires_grad:
        return _GatherRows.apply(tensor)
    return _gather_rows(tensor.detach(), _sizes(tensor))


def gather_dict(tensors: dict[str, torch.Tensor], grad: bool = False) -> dict[str, torch.Tensor]:
    """`gather_rows` on every value (all ranks must hold the same keys, each value with B rows).

    With `grad=True` the values travel as one float32 tensor: a single collective in the backward
    pass, so ranks cannot disagree on the order of several (and DDP's own reductions come after it).
    """
    if not is_distributed():
        return tensors
    if not grad:
        return {key: gather_rows(value) for key, value in tensors.items()}
    # explicit widths: a rank may hold zero rows (e.g. nobody with a modality), where -1 is ambiguous
    flat = {
        key: value.float().reshape(value.shape[0], math.prod(value.shape[1:]))
        for key, value in tensors.items()
    }
    gathered = gather_rows(torch.cat(list(flat.values()), dim=1), grad=True)
    parts = gathered.split([f.shape[1] for f in flat.values()], dim=1)
    return {
        key: part.reshape(-1, *value.shape[1:])
        for (key, value), part in zip(tensors.items(), parts, strict=True)
    }


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable `obj`, in rank order (`[obj]` when not distributed)."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def gather_list(items: list[Any]) -> list[Any]:
    """Every rank's list items, concatenated in rank order (`items` itself when not distributed).

    E.g. the batches `Trainer.predict` returned on each rank; `DistributedSampler` repeats a few
    samples to even out the shards, so drop duplicate patient ids afterwards.
    """
    if not is_distributed():
        return items
    return [item for shard in gather_objects(items) for item in shard]
