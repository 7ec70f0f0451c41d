"""The feature-bag encoder of the histology modality, and the choice of its MIL aggregator.

``abmil`` is gated attention pooling (`fusion.nn.mil`), ``transmil`` a Nystrom transformer with a
CLS token (`fusion.nn.transmil`); both map ``(h (n, N, dim), mask)`` to ``(pooled (n, dim), attention
(n, N))``, so the encoder (and `HistologyEncoder` for raw tiles) takes either.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn

from fusion.nn.mil import GatedAttentionMIL
from fusion.nn.transmil import TransMIL

AGGREGATORS = ("abmil", "transmil")


def make_aggregator(
    kind: str,
    dim: int,
    attention_dim: int = 64,
    dropout: float = 0.0,
    layers: int = 2,
    heads: int = 4,
    landmarks: int = 64,
) -> nn.Module:
    """``abmil`` (`GatedAttentionMIL`) or ``transmil`` (`fusion.nn.transmil.TransMIL`); both map
    ``(h (n, N, dim), mask)`` to ``(pooled (n, dim), attention (n, N))``."""
    if kind == "abmil":
        return GatedAttentionMIL(dim, attention_dim, dropout)
    if kind == "transmil":
        return TransMIL(dim, layers=layers, heads=heads, landmarks=landmarks, dropout=dropout)
    raise ValueError(f"aggregator must be one of {AGGREGATORS}, got '{kind}'")


class FeatureBagEncoder(nn.Module):
    """``{"features" (n, N, D), "mask"}`` -> (n, out_dim): Linear(D, hidden) + ReLU + dropout on real
    instances, an aggregator (``abmil`` | ``transmil``), dropout, Linear(hidden, out_dim).

    The projection runs over the real instances in chunks of ``chunk`` (casting float16 features
    chunk by chunk), so a 100k-tile bag never holds a float32 copy of its raw features.
    ``last_attention`` (n, N) holds the per-tile attention of the last forward (for heatmaps).
    """

    def __init__(
        self,
        feature_dim: int,
        hidden_dim: int = 64,
        out_dim: int = 64,
        aggregator: str = "abmil",
        attention_dim: int = 64,
        dropout: float = 0.1,
        chunk: int = 512,
        **aggregator_kwargs: int,
    ):
        super().__init__()
        self.feature_dim, self.chunk = feature_dim, chunk
        self.embed = nn.Sequential(nn.Linear(feature_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout))
        self.aggregator = make_aggregator(aggregator, hidden_dim, attention_dim, dropout, **aggregator_kwargs)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden_dim, out_dim)
        self.last_attention: torch.Tensor | None = None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        features, mask = batch["features"], batch["mask"].bool()
        if features.dim() != 3 or features.shape[:2] != mask.shape or features.shape[2] != self.feature_dim:
            raise ValueError(
                f"histology feature encoder expects features (n, N, {self.feature_dim}) and mask (n, N), "
                f"got {tuple(features.shape)} and {tuple(mask.shape)}"
            )
        weight = cast(nn.Linear, self.embed[0]).weight  # nn.Sequential types its items as plain Module
        h = weight.new_zeros(*mask.shape, weight.shape[0])
        for s in range(0, mask.shape[1], self.chunk):
            part = mask[:, s : s + self.chunk]
            if bool(part.any()):
                rows = self.embed(features[:, s : s + self.chunk][part].to(weight.dtype))
                # under autocast (bf16-mixed) `rows` is bf16 while `h` keeps the weights' dtype
                h[:, s : s + self.chunk] = h[:, s : s + self.chunk].masked_scatter(
                    part.unsqueeze(-1), rows.to(h.dtype)
                )
        pooled, attention = self.aggregator(h, mask)
        self.last_attention = attention.detach()
        return self.proj(self.dropout(pooled))
