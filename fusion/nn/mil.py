"""Gated attention multiple-instance pooling (Ilse, Tomczak & Welling, ICML 2018) with a padding mask.

A bag (one patient's tiles) is a variable-size set of instance embeddings. Bags of a batch are
padded to the same length; the mask marks the real instances, so padding gets exactly zero
attention and the pooled embedding of a bag does not depend on what else is in the batch.
"""

from __future__ import annotations

import torch
from torch import nn

from fusion.nn.bags import checked_bag_mask


class GatedAttentionMIL(nn.Module):
    """Attention pooling ``a = softmax(w^T (tanh(V h) * sigmoid(U h)))`` over the real instances of each bag.

    Args:
        in_dim: size of the instance embeddings ``h``.
        attention_dim: hidden size of the attention network (``V`` and ``U``).
        dropout: dropout on the gated attention hidden layer (train only).
    """

    def __init__(self, in_dim: int, attention_dim: int = 64, dropout: float = 0.0):
        super().__init__()
        self.in_dim = in_dim
        self.attention_v = nn.Linear(in_dim, attention_dim)
        self.attention_u = nn.Linear(in_dim, attention_dim)
        self.attention_w = nn.Linear(attention_dim, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool bags ``h`` (n, N, in_dim) with ``mask`` (n, N), True = real instance.

        Returns ``(pooled (n, in_dim), attention (n, N))``; attention sums to 1 over each bag's
        real instances and is exactly 0 on padding.
        """
        mask = checked_bag_mask(h, mask, self.in_dim, "GatedAttentionMIL")
        gated = torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))
        scores = self.attention_w(self.dropout(gated)).squeeze(-1)  # (n, N)
        scores = scores.masked_fill(~mask, float("-inf"))
        attention = torch.softmax(scores, dim=1)  # exp(-inf) = 0 at padding
        # Zero the padding explicitly too, so a non-finite padded h cannot leak in via 0 * inf.
        pooled = torch.bmm(attention.unsqueeze(1), h.masked_fill(~mask.unsqueeze(-1), 0.0)).squeeze(1)
        return pooled, attention
