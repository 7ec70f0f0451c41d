"""Gated Kronecker fusion (PathomicFusion style): unimodal and cross-modal product terms, kept explicit.

Each modality's pooled tokens become a small gated vector v_m (size `rank`); with a constant 1 appended,
the outer product of the [1, v_m] over modalities holds every term: the 1, each v_m alone (unimodal) and
every product of entries from different modalities (cross terms). A missing modality has v_m = 0, i.e.
it contributes the neutral [1, 0, ..., 0], so its terms vanish and the rest of the product is untouched.

Size: the full product has (rank + 1)^M entries — 531,441 for six modalities at rank 8. `max_order`
keeps only the terms with at most that many modalities multiplied together; the kept entries are
exactly the full product's entries with at most `max_order` non-1 factors, so the size is
sum_{s <= max_order} C(M, s) * rank^s (order 2: 1 + 6*8 + 15*64 = 1009 for six modalities at rank 8).
`max_order=None` (or >= M) is the full product.

Gates: v_m = sigmoid(W_g [all pooled inputs, presence]) * ReLU(W_m x_m), so each modality's vector is
scaled by what the others show (PathomicFusion's gating-based attention, with a linear gate).
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from fusion.fusers.base import (
    Fuser,
    FuserInput,
    as_tokens,
    check_every_patient_has_a_modality,
    drop_modalities,
)


class KroneckerFuser(Fuser):
    """Args:
    in_dims: modality name -> feature size of its encoder's tokens.
    d_model: output size.
    rank: size of each modality's gated vector (before the constant 1).
    max_order: most modalities multiplied in one term (None = all: the full Kronecker product).
    max_features: refuse settings whose product would exceed this many features (memory guard).
    dropout: before the output projection.
    modality_dropout: probability of hiding each present modality of a training sample (never all).
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        d_model: int = 64,
        rank: int = 8,
        max_order: int | None = 2,
        max_features: int = 32768,
        dropout: float = 0.1,
        modality_dropout: float = 0.0,
    ):
        super().__init__(in_dims, d_model)
        if not in_dims:
            raise ValueError("KroneckerFuser needs at least one modality")
        self.modality_dropout = modality_dropout
        order = len(self.names) if max_order is None else min(max_order, len(self.names))
        if order < 1:
            raise ValueError(f"max_order must be >= 1 or None, got {max_order}")
        self.subsets = [
            s for k in range(1, order + 1) for s in itertools.combinations(range(len(self.names)), k)
        ]
        self.n_features = 1 + sum(rank ** len(s) for s in self.subsets)
        if self.n_features > max_features:
            raise ValueError(
                f"KroneckerFuser: {len(self.names)} modalities at rank {rank} and max_order {max_order} give "
                f"{self.n_features} features (> max_features={max_features}); lower rank or max_order"
            )
        width = sum(in_dims[n] for n in self.names) + len(self.names)
        self.project = nn.ModuleDict({n: nn.Linear(in_dims[n], rank) for n in self.names})
        self.gate = nn.ModuleDict({n: nn.Linear(width, rank) for n in self.names})
        self.out = nn.Sequential(
            nn.LayerNorm(self.n_features),
            nn.Dropout(dropout),
            nn.Linear(self.n_features, d_model),
            nn.GELU(),
            nn.LayerNorm(d_model),
        )

    def vectors(self, inputs: FuserInput) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Each modality's gated vector (B, rank), zero where absent, and the presence mask (B, M)."""
        names = [n for n in self.names if n in inputs]
        if names != self.names:
            raise ValueError(f"KroneckerFuser was built for {self.names}, got inputs for {sorted(inputs)}")
        present = torch.stack([inputs[n][1] for n in names], dim=1)
        if self.training and self.modality_dropout > 0:
            present = drop_modalities(present, self.modality_dropout)
        check_every_patient_has_a_modality(present, names)
        mask = present.float()
        pooled = [as_tokens(inputs[n][0]).mean(dim=1) * mask[:, i : i + 1] for i, n in enumerate(names)]
        context = torch.cat([*pooled, mask], dim=1)
        vectors = [
            torch.sigmoid(self.gate[n](context)) * torch.relu(self.project[n](pooled[i])) * mask[:, i : i + 1]
            for i, n in enumerate(names)
        ]
        return vectors, present

    def products(self, vectors: list[torch.Tensor]) -> torch.Tensor:
        """The kept entries of the outer product of the [1, v_m]: (B, n_features)."""
        batch = vectors[0].shape[0]
        terms = [vectors[0].new_ones(batch, 1)]
        for subset in self.subsets:
            term = vectors[subset[0]]
            for m in subset[1:]:
                term = (term[:, :, None] * vectors[m][:, None, :]).flatten(1)
            terms.append(term)
        return torch.cat(terms, dim=1)

    def forward(self, inputs: FuserInput) -> torch.Tensor:
        vectors, _ = self.vectors(inputs)
        return self.out(self.products(vectors))
