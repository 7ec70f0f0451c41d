"""Additive Gaussian input noise during training: the shrinkage a small omics cohort needs.

With a few hundred patients and tens to thousands of genes, an MLP fits noise genes unless its inputs are
perturbed. For a linear model, training on ``x + N(0, sd^2)`` is ridge regression with a penalty of
``sd^2`` per example (Bishop, 1995); on z-scored inputs ``sd`` is in units of each gene's training sd.
It has no parameters, so adding it leaves a checkpoint's keys unchanged, and it is the identity in eval
mode (validation, test, prediction).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class GaussianNoise(nn.Module):
    """``x + sd * N(0, 1)`` in training mode, ``x`` in eval mode (and always when ``sd == 0``)."""

    def __init__(self, sd: float = 0.0):
        super().__init__()
        sd = float(sd)
        if not sd >= 0.0:  # also rejects NaN
            raise ValueError(f"GaussianNoise: sd must be >= 0, got {sd}")
        self.sd = sd

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.sd == 0.0:
            return x
        return x + self.sd * torch.randn_like(x)

    def extra_repr(self) -> str:
        return f"sd={self.sd}"
