"""Late-fusion transformer: a CLS token attends over every present modality's tokens.

Each patient may miss a different set of modalities; a per-sample key-padding mask hides the
missing ones, so no slot is ever filled with a fake value. Modality dropout (training only)
hides whole present modalities at random, keeping at least one, so the model learns not to
lean on any single input — the same situation it meets at test time with missing data.
"""

from __future__ import annotations

import torch
from torch import nn

from fusion.fusers.base import (
    Fuser,
    FuserInput,
    as_tokens,
    check_every_patient_has_a_modality,
    drop_modalities,
)


class TransformerFuser(Fuser):
    """Args:
    in_dims: modality name -> feature size of its encoder's tokens (`Modality.out_dim`).
    d_model, n_heads, n_layers, dim_feedforward, dropout: the `nn.TransformerEncoder`.
    modality_dropout: probability of hiding each present modality of a training sample.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 2,
        dim_feedforward: int = 128,
        dropout: float = 0.1,
        modality_dropout: float = 0.1,
    ):
        super().__init__(in_dims, d_model)
        if not in_dims:
            raise ValueError("TransformerFuser needs at least one modality")
        self.modality_dropout = modality_dropout
        self.project = nn.ModuleDict({n: nn.Linear(in_dims[n], d_model) for n in self.names})
        self.modality_embedding = nn.ParameterDict(
            {n: nn.Parameter(torch.randn(d_model) * 0.02) for n in self.names}
        )
        self.cls = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model, n_heads, dim_feedforward, dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, inputs: FuserInput) -> torch.Tensor:
        """inputs: name -> (tokens (B, T, d) or (B, d), present (B,) bool). Returns (B, d_model)."""
        names = [n for n in self.names if n in inputs]
        present = torch.stack([inputs[n][1] for n in names], dim=1)  # (B, M)
        if self.training and self.modality_dropout > 0:
            present = drop_modalities(present, self.modality_dropout)
        check_every_patient_has_a_modality(present, names)
        tokens, kept = [], []
        for i, name in enumerate(names):
            x = as_tokens(inputs[name][0])
            tokens.append(self.project[name](x) + self.modality_embedding[name])
            kept.append(present[:, i : i + 1].expand(-1, x.shape[1]))
        batch = present.shape[0]
        seq = torch.cat([self.cls.expand(batch, -1, -1), *tokens], dim=1)
        keep = torch.cat([torch.ones(batch, 1, dtype=torch.bool, device=seq.device), *kept], dim=1)
        out = self.encoder(seq, src_key_padding_mask=~keep)
        return self.norm(out[:, 0])
