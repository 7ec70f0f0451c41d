"""Concatenation fusion: the simplest baseline (mean-pooled tokens, zeros + indicator for missing)."""

from __future__ import annotations

import torch
from torch import nn

from fusion.fusers.base import Fuser, FuserInput, as_tokens, check_every_patient_has_a_modality


class ConcatFuser(Fuser):
    """Mean-pool each modality's tokens, zero the absent ones, append presence flags, then an MLP."""

    def __init__(self, in_dims: dict[str, int], d_model: int = 64, dropout: float = 0.1):
        super().__init__(in_dims, d_model)
        width = sum(in_dims[n] for n in self.names) + len(self.names)
        self.mlp = nn.Sequential(
            nn.Linear(width, d_model), nn.GELU(), nn.Dropout(dropout), nn.LayerNorm(d_model)
        )

    def forward(self, inputs: FuserInput) -> torch.Tensor:
        names = [n for n in self.names if n in inputs]
        present = torch.stack([inputs[n][1] for n in names], dim=1)
        check_every_patient_has_a_modality(present, names)
        pooled = [as_tokens(inputs[n][0]).mean(dim=1) * present[:, i : i + 1] for i, n in enumerate(names)]
        return self.mlp(torch.cat([*pooled, present.float()], dim=1))
