"""Occlusion saliency of a 3D input: how much each target drops when a box of the volume is blanked.

Boxes of `patch` voxels slide over the model's input grid at `stride` (the last box on each axis ends at
the edge, so every voxel is covered); every channel is blanked at once (the map is spatial). All boxes
and the unoccluded volume go through the encoder together (in chunks bounded by `max_voxels`), and
every target of every head comes from the same fuser pass. A voxel's saliency is the mean drop
``f(x) - f(x with the box blanked)`` over the boxes that cover it: positive where the volume supports a
higher target.

The blank value is 0: after `ImagingModality`'s intensity scaling that is what the model sees wherever
there is nothing -- the value `load` pads with outside the field of view, the bottom of the CT window
(air and fat), SUV 0 in PET, and the background (and foreground mean) of a z-scored MRI -- so a blanked
box reads as "no tissue here" rather than as a new, out-of-distribution pattern (a mean or noise fill).
Defaults: boxes of a quarter of each axis, stride half a box: 7 x 7 x 7 = 343 boxes for any grid size
(8-voxel boxes at stride 4 on the 32^3 default), fine enough to find a lesion a few voxels across.

MONAI's `OcclusionSensitivity` is not used: in MONAI 1.6 its ``mean_patch`` mode multiplies the patch by
its mean instead of replacing it (add and mul are swapped), ``activate=True`` picks sigmoid or softmax from
the input's channel count rather than the output's, and it returns occluded outputs (not drops) for one
network output at a time, not our heads' targets through the fuser.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product

import numpy as np
import torch

from fusion.attribution.context import PatientContext, TargetKey

#: occluded variants per encoder call are capped so that a chunk holds at most this many voxels (~64 MB)
MAX_VOXELS = 1 << 24


def default_patch(spatial_size: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(patch, stride) for a grid: a quarter of each axis (at least 1 voxel), stride half the patch."""
    patch = tuple(max(1, round(int(n) / 4)) for n in spatial_size)
    return patch, tuple(max(1, p // 2) for p in patch)


def box_starts(size: int, patch: int, stride: int) -> list[int]:
    """Start indices of the boxes on one axis: every `stride`, plus one ending exactly at the edge."""
    last = max(0, size - patch)
    return sorted({*range(0, last + 1, max(1, stride)), last})


def occlusion_saliency(
    ctx: PatientContext,
    name: str,
    data: torch.Tensor,
    patch: Sequence[int],
    stride: Sequence[int],
    fill: float = 0.0,
    max_voxels: int = MAX_VOXELS,
) -> dict[TargetKey, np.ndarray]:
    """(head, target) -> saliency (X, Y, Z) on the grid of `data` (1, C, X, Y, Z), for every target."""
    spatial = tuple(int(n) for n in data.shape[2:])
    starts = [box_starts(n, int(p), int(s)) for n, p, s in zip(spatial, patch, stride, strict=True)]
    boxes = [
        tuple(slice(a, a + int(p)) for a, p in zip(corner, patch, strict=True)) for corner in product(*starts)
    ]
    per_call = max(1, max_voxels // max(1, data[0].numel()))
    rows: list[dict[TargetKey, torch.Tensor]] = []
    with torch.no_grad():
        # row 0 of the first call is the unoccluded volume: its targets are the baseline
        variants: list[tuple[slice, ...] | None] = [None, *boxes]
        for first in range(0, len(variants), per_call):
            chunk = variants[first : first + per_call]
            batch = data.expand(len(chunk), *data.shape[1:]).clone()
            for b, box in enumerate(chunk):
                if box is not None:
                    where: tuple[int | slice, ...] = (b, slice(None), *box)
                    batch[where] = fill
            rows.append(ctx.targets_from_data(name, batch))
    keys = list(rows[0])
    values = torch.stack([torch.cat([r[key] for r in rows]) for key in keys]).float().cpu().numpy()
    drops = values[:, :1] - values[:, 1:]  # (targets, boxes)
    total = np.zeros((len(keys), *spatial), dtype=np.float64)
    count = np.zeros(spatial, dtype=np.float64)
    for b, box in enumerate(boxes):
        every_target: tuple[slice, ...] = (slice(None), *box)
        total[every_target] += drops[:, b, None, None, None]
        count[box] += 1.0
    saliency = (total / np.maximum(count, 1.0)).astype(np.float32)
    return {key: saliency[k] for k, key in enumerate(keys)}
