"""Feature tokenizer (FT-Transformer, Gorishniy et al., 2021): one d-dim token per table column.

Turning each column into its own token lets the fusion transformer attend to single clinical
variables (age, stage, LDH ...) next to image and genomic tokens, instead of to one opaque
vector. Numeric column i becomes ``x * w_i + b_i``; a missing numeric value becomes a learned
per-column "missing" token (so missingness is information, not a silent zero); categorical
column j becomes ``E_j[index] + b_j`` with index 0 reserved for unknown / missing categories.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class FeatureTokenizer(nn.Module):
    """``(num (n, n_num), num_missing (n, n_num), cat (n, n_cat)) -> (n, n_num + n_cat, d_token)``.

    Args:
        n_num: number of numeric columns.
        cat_cardinalities: per categorical column, the number of indices including the reserved 0.
        d_token: token size.
    """

    #: buffers (`register_buffer`), declared for type checkers (nn.Module types them Tensor | Module)
    cat_offsets: Tensor
    cat_sizes: Tensor

    def __init__(self, n_num: int, cat_cardinalities: Sequence[int], d_token: int):
        super().__init__()
        cards = [int(c) for c in cat_cardinalities]
        if n_num < 0 or d_token < 1 or any(c < 1 for c in cards):
            raise ValueError(
                f"FeatureTokenizer: bad sizes n_num={n_num}, cardinalities={cards}, d_token={d_token}"
            )
        if n_num + len(cards) == 0:
            raise ValueError("FeatureTokenizer needs at least one numeric or categorical column")
        self.n_num, self.cat_cardinalities, self.d_token = n_num, cards, d_token
        bound = 1.0 / math.sqrt(d_token)

        def param(rows: int) -> nn.Parameter:
            return nn.Parameter(torch.empty(rows, d_token).uniform_(-bound, bound))

        self.num_weight, self.num_bias, self.num_missing = param(n_num), param(n_num), param(n_num)
        self.cat_embedding = nn.Embedding(max(sum(cards), 1), d_token)
        nn.init.uniform_(self.cat_embedding.weight, -bound, bound)
        self.cat_bias = param(len(cards))
        offsets = torch.tensor([0, *cards[:-1]], dtype=torch.long).cumsum(0) if cards else torch.zeros(0)
        self.register_buffer("cat_offsets", offsets.long(), persistent=False)
        self.register_buffer("cat_sizes", torch.tensor(cards, dtype=torch.long), persistent=False)

    @property
    def n_tokens(self) -> int:
        return self.n_num + len(self.cat_cardinalities)

    def forward(
        self, num: Tensor | None = None, num_missing: Tensor | None = None, cat: Tensor | None = None
    ) -> Tensor:
        tokens = []
        if self.n_num:
            if num is None or num.ndim != 2 or num.shape[1] != self.n_num:
                got = None if num is None else tuple(num.shape)
                raise ValueError(f"FeatureTokenizer expects num of shape (n, {self.n_num}), got {got}")
            missing = torch.isnan(num)
            if num_missing is not None:
                missing = missing | num_missing.bool()
            # Zero missing values first: NaN * w would poison the gradient of w even where masked.
            x = num.masked_fill(missing, 0.0).unsqueeze(-1)
            value_tokens = x * self.num_weight + self.num_bias
            tokens.append(
                torch.where(missing.unsqueeze(-1), self.num_missing.expand_as(value_tokens), value_tokens)
            )
        n_cat = len(self.cat_cardinalities)
        if n_cat:
            if cat is None or cat.ndim != 2 or cat.shape[1] != n_cat:
                got = None if cat is None else tuple(cat.shape)
                raise ValueError(f"FeatureTokenizer expects cat of shape (n, {n_cat}), got {got}")
            cat = cat.long()
            if cat.numel() and (bool((cat < 0).any()) or bool((cat >= self.cat_sizes).any())):
                raise ValueError(
                    "FeatureTokenizer: category index out of range; "
                    f"per-column sizes are {self.cat_cardinalities}"
                )
            tokens.append(self.cat_embedding(cat + self.cat_offsets) + self.cat_bias)
        return torch.cat(tokens, dim=1)
