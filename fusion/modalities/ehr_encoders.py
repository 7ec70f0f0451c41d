"""The EHR modality's encoders: a collated EHR batch -> tokens (one per column) or one vector."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from fusion.nn.tokenizer import FeatureTokenizer


class EHRTokenEncoder(nn.Module):
    """Collated EHR batch -> one token per column, (n, n_num + n_cat, embed_dim)."""

    def __init__(self, n_num: int, cat_cardinalities: Sequence[int], embed_dim: int):
        super().__init__()
        self.tokenizer = FeatureTokenizer(n_num, cat_cardinalities, embed_dim)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.tokenizer(batch["num"], batch["num_missing"], batch["cat"])


class EHRMLPEncoder(nn.Module):
    """Collated EHR batch -> one vector, (n, embed_dim): [numerics, indicators, embeddings] -> MLP."""

    def __init__(self, n_num: int, cat_cardinalities: Sequence[int], embed_dim: int, dropout: float = 0.1):
        super().__init__()
        cat_dim = max(2, embed_dim // 4)
        self.embeddings = nn.ModuleList(nn.Embedding(int(c), cat_dim) for c in cat_cardinalities)
        in_dim = 2 * n_num + cat_dim * len(self.embeddings)
        if in_dim == 0:
            raise ValueError("EHRMLPEncoder needs at least one numeric or categorical column")
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, 2 * embed_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(2 * embed_dim, embed_dim),
        )

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        cat = batch["cat"].long()
        parts = [torch.nan_to_num(batch["num"]), batch["num_missing"].to(batch["num"].dtype)]
        parts += [emb(cat[:, j]) for j, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat(parts, dim=1))
