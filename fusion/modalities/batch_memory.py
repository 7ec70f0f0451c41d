"""Batch tensors built straight into shared memory when collated in a DataLoader worker.

A worker hands its batch to the main process through shared memory; a tensor built in ordinary
memory is copied there when it is sent (`torch.multiprocessing`'s reducer). Building it in shared
memory from the start, as PyTorch's `default_collate` does, saves that copy: for a batch of 32
64^3 volumes of three modalities ~170 MB of memory traffic per batch, per worker.

It sits with the modalities because batching is each modality's `collate` (ImagingModality uses it);
the data layer above only calls those collates.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import get_worker_info


def stack(items: Sequence[torch.Tensor]) -> torch.Tensor:
    """`torch.stack(items)`, into shared memory when called in a DataLoader worker."""
    if get_worker_info() is None or not items or items[0].device.type != "cpu":
        return torch.stack(list(items))
    first = items[0]
    storage = first.untyped_storage()._new_shared(len(items) * first.numel() * first.element_size())
    out = first.new_empty(0).set_(storage).view(len(items), *first.shape) if first.numel() else None
    return torch.stack(list(items), out=out)
