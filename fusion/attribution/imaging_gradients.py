"""Gradient x input saliency of a 3D input, every target in one encoder pass.

The volume is repeated once per target; row k's target k is summed into one scalar, so a single backward
pass gives each target's gradient in its own row (rows do not interact in eval mode). The map is
``sum over channels of gradient * input``: the first-order change of the target if the voxel went to the
blank value 0 (`imaging_occlusion`), i.e. the same question occlusion asks, one voxel at a time.
Works with any encoder (CNN, ResNet, ViT), unlike Grad-CAM, which needs a convolutional layer to hook.
"""

from __future__ import annotations

import numpy as np
import torch

from fusion.attribution.context import PatientContext, TargetKey


def gradient_saliency(ctx: PatientContext, name: str, data: torch.Tensor) -> dict[TargetKey, np.ndarray]:
    """(head, target) -> gradient x input (X, Y, Z) on the grid of `data` (1, C, X, Y, Z), every target."""
    keys = ctx.target_keys
    with torch.enable_grad():
        rows = data.detach().expand(len(keys), *data.shape[1:]).clone().requires_grad_(True)
        targets = ctx.targets_from_data(name, rows)
        total = torch.stack([targets[key][k] for k, key in enumerate(keys)]).sum()
        (grad,) = torch.autograd.grad(total, rows)
    saliency = (grad * rows.detach()).sum(dim=1).float().cpu().numpy()
    return {key: saliency[k] for k, key in enumerate(keys)}
