"""Gated attention multiple-instance pooling (Ilse, Tomczak & Welling, ICML 2018) with a padding mask.

A bag (one patient's tiles) is a variable-size set of instance embeddings. Bags of a batch are
padded to the same length; the mask marks the real instances, so padding gets exactly zero
attention and the pooled embedding of a bag does not depend on what else is in the batch.
"""

from __future__ import annotations

import torch
from torch import nn


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
        from fusion.nn.transmil import TransMIL

        return TransMIL(dim, layers=layers, heads=heads, landmarks=landmarks, dropout=dropout)
    raise ValueError(f"aggregator must be one of {AGGREGATORS}, got '{kind}'")


def pad_feature_bags(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Feature bags ``{"features" (N_i, D), "coords" (N_i, 2)}`` -> padded ``features`` (n, Nmax, D),
    ``coords`` (n, Nmax, 2) (0 at padding) and ``mask`` bool (n, Nmax), True = real tile."""
    if not items:
        raise ValueError("histology collate got no items (collate only the patients who have the modality)")
    dims = {int(x["features"].shape[1]) for x in items}
    if len(dims) > 1:
        raise ValueError(
            f"histology collate: feature bags of different dimensions in one batch: {sorted(dims)}"
        )
    dtypes = {x["features"].dtype for x in items}
    dtype = dtypes.pop() if len(dtypes) == 1 else torch.float32
    if len(items) == 1 and items[0]["features"].dtype == dtype:  # one bag (a 100k-tile eval): no copy
        features, coords = items[0]["features"].unsqueeze(0), items[0]["coords"].long().unsqueeze(0)
        return {
            "features": features,
            "coords": coords,
            "mask": torch.ones(features.shape[:2], dtype=torch.bool),
        }
    lengths = torch.tensor([x["features"].shape[0] for x in items])
    features = nn.utils.rnn.pad_sequence([x["features"].to(dtype) for x in items], batch_first=True)
    coords = nn.utils.rnn.pad_sequence([x["coords"].long() for x in items], batch_first=True)
    mask = torch.arange(features.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
    return {"features": features, "coords": coords, "mask": mask}


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
        weight = self.embed[0].weight
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


def checked_bag_mask(h: torch.Tensor, mask: torch.Tensor | None, in_dim: int, who: str) -> torch.Tensor:
    """The (n, N) bool mask of real instances (all real when None), after checking shapes and that no
    bag is empty: an all-padding bag has nothing to attend to and would give NaN, so it is an error."""
    if h.dim() != 3 or h.shape[-1] != in_dim:
        raise ValueError(f"{who} expects h of shape (n, N, {in_dim}), got {tuple(h.shape)}")
    if mask is None:
        return torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
    if mask.shape != h.shape[:2]:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match bags of shape {tuple(h.shape[:2])}")
    mask = mask.bool()
    empty = ~mask.any(dim=1)
    if bool(empty.any()):
        bags = empty.nonzero().flatten().tolist()
        raise ValueError(f"{who} got bag(s) {bags} with no real instances (all masked)")
    return mask
