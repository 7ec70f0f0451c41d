"""TransMIL-style aggregation (Shao et al., NeurIPS 2021): a CLS token and a transformer over a bag.

Plain softmax attention costs O(N^2) in time and memory, hopeless for 100k-tile bags. Each layer
uses Nystrom attention instead (Xiong et al., AAAI 2021, as in TransMIL): ``m`` landmarks (segment
means of the queries / keys) approximate ``softmax(QK^T) V`` by
``softmax(Q Kl^T) pinv(softmax(Ql Kl^T)) softmax(Ql K^T) V``, O(N m) work. Memory stays bounded:
every N-long product is computed in chunks of ``chunk`` tokens (a two-pass log-sum-exp for the
softmax over keys), so a 100k-instance bag never holds an (N, m) or (N, N) matrix.

Masking: landmarks are built from each bag's *real* tokens only (token rank among the real ones,
not its padded position), padded keys get zero weight and padded tokens are zeroed, so a bag's
output does not depend on padding. A bag of at most ``m`` tokens (CLS included) gets one
landmark per token and the Nystrom product is then exact softmax attention. PPEG (TransMIL's conv
position encoding over a square re-layout of the bag) is left out: its layout depends on the bag
length. Beyond ``m`` tokens the model is not permutation invariant (landmarks are segment means in
bag order), like the original. ``pinv`` is `torch.linalg.pinv` (m x m, cheap) rather than the
paper's iterative approximation.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from fusion.nn.bags import checked_bag_mask


def _landmark_segments(mask: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Segment id (n, N) in [0, m) of each real token by its rank among real tokens (-1 at padding),
    and the valid-landmark mask (n, m) (a bag shorter than m leaves some segments empty)."""
    real = mask.long()
    counts = real.sum(dim=1, keepdim=True).clamp_min(1)
    rank = real.cumsum(dim=1) - 1
    segment = torch.div(rank * m, counts, rounding_mode="floor").clamp(0, m - 1)
    segment = torch.where(mask, segment, torch.full_like(segment, -1))
    members = torch.zeros(mask.shape[0], m, dtype=torch.long, device=mask.device)
    members.scatter_add_(1, segment.clamp_min(0), real)  # scatter_add: padding (index 0) adds 0
    return segment, members > 0


class NystromAttention(nn.Module):
    """Multi-head Nystrom self-attention with a key-padding mask and chunked evaluation."""

    def __init__(
        self, dim: int, heads: int = 4, landmarks: int = 64, dropout: float = 0.0, chunk: int = 4096
    ):
        super().__init__()
        if dim % heads:
            raise ValueError(f"NystromAttention: dim {dim} is not divisible by heads {heads}")
        if landmarks < 1 or chunk < 1:
            raise ValueError(f"NystromAttention: landmarks and chunk must be >= 1, got {landmarks}, {chunk}")
        self.heads, self.landmarks, self.chunk = heads, landmarks, chunk
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Sequential(nn.Linear(dim, dim), nn.Dropout(dropout))

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (n, N, d) -> (n, H, N, d/H)
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, return_cls_attention: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``x`` (n, N, d), ``mask`` (n, N) True = real. Returns output (n, N, d) and, when asked,
        the head-averaged attention of token 0 (the CLS token) over all tokens, (n, N)."""
        qkv = self.qkv(x)
        # the landmark means, log-sum-exp and pinv run in float32 even under autocast (bf16-mixed):
        # pinv of a softmax kernel in bf16 is unstable, and scatter_add needs matching dtypes
        with torch.autocast(x.device.type, enabled=False):
            out, cls_attention = self._attend(qkv.float(), mask, return_cls_attention)
        return self.out(out), cls_attention

    def _attend(
        self, qkv: torch.Tensor, mask: torch.Tensor, return_cls_attention: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The attention of `forward` on the float32 projections ``qkv`` (n, N, 3d), before ``out``."""
        n, length, _ = qkv.shape
        q, k, v = (self._split(t) for t in qkv.chunk(3, dim=-1))
        q = q * self.scale
        segment, valid = _landmark_segments(mask, self.landmarks)
        counts = torch.zeros(n, self.landmarks, device=qkv.device, dtype=qkv.dtype)
        counts.scatter_add_(1, segment.clamp_min(0), mask.to(qkv.dtype))
        index = segment.clamp_min(0)[:, None, :, None].expand(-1, self.heads, -1, q.shape[-1])
        weight = mask.to(qkv.dtype)[:, None, :, None]
        denom = counts.clamp_min(1)[:, None, :, None]
        q_l = (
            q.new_zeros(n, self.heads, self.landmarks, q.shape[-1]).scatter_add(2, index, q * weight) / denom
        )
        k_l = (
            k.new_zeros(n, self.heads, self.landmarks, k.shape[-1]).scatter_add(2, index, k * weight) / denom
        )
        no_landmark = ~valid[:, None, None, :]  # (n, 1, 1, m)
        # kernel 2 over valid landmarks; an identity block on empty ones keeps pinv block-diagonal.
        k2 = torch.softmax((q_l @ k_l.transpose(-1, -2)).masked_fill(no_landmark, float("-inf")), dim=-1)
        empty = (~valid)[:, None, :].to(qkv.dtype)  # (n, 1, m)
        k2 = k2.nan_to_num(0.0) * (1 - empty.unsqueeze(-1)) + torch.diag_embed(
            empty.expand(-1, self.heads, -1)
        )
        k2_inv = torch.linalg.pinv(k2)
        # kernel 3 @ V: softmax over all real keys, two passes over key chunks (log-sum-exp, then sum).
        pad = ~mask[:, None, None, :]  # (n, 1, 1, N)
        lse = qkv.new_full((n, self.heads, self.landmarks, 1), float("-inf"))
        for s in range(0, length, self.chunk):
            logits = (q_l @ k[:, :, s : s + self.chunk].transpose(-1, -2)).masked_fill(
                pad[..., s : s + self.chunk], float("-inf")
            )
            lse = torch.logaddexp(lse, torch.logsumexp(logits, dim=-1, keepdim=True))
        k3v = torch.zeros_like(q_l)
        k3_rows = []
        for s in range(0, length, self.chunk):
            logits = (q_l @ k[:, :, s : s + self.chunk].transpose(-1, -2)).masked_fill(
                pad[..., s : s + self.chunk], float("-inf")
            )
            probs = torch.exp(logits - lse)
            k3v = k3v + probs @ v[:, :, s : s + self.chunk]
            if return_cls_attention:
                k3_rows.append(probs)
        right = k2_inv @ k3v  # (n, H, m, dh)
        outs = []
        for s in range(0, length, self.chunk):
            k1 = torch.softmax(
                (q[:, :, s : s + self.chunk] @ k_l.transpose(-1, -2)).masked_fill(no_landmark, float("-inf")),
                dim=-1,
            )
            outs.append(k1 @ right)
        out = torch.cat(outs, dim=2).transpose(1, 2).flatten(2)
        cls_attention = None
        if return_cls_attention:
            k1_cls = torch.softmax(
                (q[:, :, :1] @ k_l.transpose(-1, -2)).masked_fill(no_landmark, float("-inf")), -1
            )
            row = k1_cls @ k2_inv  # (n, H, 1, m)
            cls_attention = torch.cat([row @ p for p in k3_rows], dim=-1).mean(dim=1).squeeze(1)
        return out, cls_attention


class TransMIL(nn.Module):
    """Bags ``h`` (n, N, dim) + ``mask`` -> (pooled (n, dim), attention (n, N)).

    A learned CLS token is prepended; ``layers`` pre-norm blocks (Nystrom attention + MLP) run over
    CLS + real instances; the pooled embedding is the normalised CLS output. ``attention`` is the
    last layer's head-averaged CLS attention over the instances (0 at padding; a Nystrom estimate,
    so it may be slightly negative), same interface as `GatedAttentionMIL`.
    """

    def __init__(
        self,
        in_dim: int,
        layers: int = 2,
        heads: int = 4,
        landmarks: int = 64,
        dropout: float = 0.1,
        chunk: int = 4096,
    ):
        super().__init__()
        self.in_dim = in_dim
        self.cls = nn.Parameter(torch.randn(1, 1, in_dim) / math.sqrt(in_dim))
        self.norms1 = nn.ModuleList(nn.LayerNorm(in_dim) for _ in range(layers))
        self.attentions = nn.ModuleList(
            NystromAttention(in_dim, heads, landmarks, dropout, chunk) for _ in range(layers)
        )
        self.norms2 = nn.ModuleList(nn.LayerNorm(in_dim) for _ in range(layers))
        self.mlps = nn.ModuleList(
            nn.Sequential(
                nn.Linear(in_dim, 2 * in_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * in_dim, in_dim)
            )
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(in_dim)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        mask = checked_bag_mask(h, mask, self.in_dim, "TransMIL")
        full_mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
        keep = full_mask.unsqueeze(-1)
        x = torch.cat(
            [self.cls.expand(h.shape[0], -1, -1).to(h.dtype), h.masked_fill(~mask.unsqueeze(-1), 0.0)], 1
        )
        attention = None
        last = len(self.attentions) - 1
        for i, (norm1, attn, norm2, mlp) in enumerate(
            zip(self.norms1, self.attentions, self.norms2, self.mlps, strict=True)
        ):
            update, cls_attention = attn(norm1(x), full_mask, return_cls_attention=i == last)
            x = (x + update).masked_fill(~keep, 0.0)
            x = (x + mlp(norm2(x))).masked_fill(~keep, 0.0)
            if cls_attention is not None:
                attention = cls_attention[:, 1:].masked_fill(~mask, 0.0)
        if attention is None:  # no layers: nothing attends
            attention = mask.to(h.dtype) / mask.sum(dim=1, keepdim=True)
        return self.norm(x[:, 0]), attention.detach()
