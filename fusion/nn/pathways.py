"""Pathway tokens: one small self-normalising network per gene set -> one token per pathway.

Instead of one opaque genomic vector, each gene set (a pathway from a GMT file) gets its own
two-layer SNN over only its genes, so the fusion transformer can attend to e.g. "hypoxia" next to
image and clinical tokens (as in SurvPath / PIBD-style pathway tokenisation).

Vectorised, no Python loop over sets at forward time: the sets' genes are gathered into a padded
``(n_sets, max_set_size)`` index with a mask; the first layer is a grouped matmul (``torch.bmm``
over sets) with per-set weights whose padded rows are masked to zero, so a gene outside set k can
never reach token k, not even through padding. Parameters: ``n_sets * max_set_size * hidden`` for
the first layer, so very uneven collections (a 2,000-gene set among 50-gene ones) cost memory.

Genes in no set are ignored, unless ``other_token=True`` adds one extra token (last) over them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from fusion.io.gmt import restrict_gene_sets
from fusion.nn.noise import GaussianNoise


class PathwayEncoder(nn.Module):
    """``x (n, n_genes) -> tokens (n, n_tokens, d_token)``, one token per gene set (+ "other genes").

    Args:
        gene_names: the columns of ``x``, in order (e.g. the genomics table's selected genes).
        gene_sets: ``{set name: [genes]}`` (e.g. from `read_gmt`); genes absent from ``gene_names``
            are ignored and sets left empty dropped with a warning (`restrict_gene_sets`).
        d_token: token size.
        hidden: hidden width of each set's SNN.
        dropout: AlphaDropout rate after each layer.
        other_token: add a last token over the genes in no set (none is added if every gene is in a set).
        input_noise: sd of Gaussian noise added to the genes in training (`fusion.nn.noise`); 0 = none.
    """

    #: buffers (`register_buffer`), declared for type checkers (nn.Module types them Tensor | Module)
    index: Tensor
    mask: Tensor

    def __init__(
        self,
        gene_names: Sequence[str],
        gene_sets: Mapping[str, Sequence[str]],
        d_token: int,
        hidden: int = 32,
        dropout: float = 0.1,
        other_token: bool = False,
        input_noise: float = 0.0,
    ):
        super().__init__()
        names = [str(g) for g in gene_names]
        if len(set(names)) != len(names):
            dup = sorted({g for g in names if names.count(g) > 1})
            raise ValueError(f"PathwayEncoder: gene_names lists genes twice: {dup}")
        if d_token < 1 or hidden < 1:
            raise ValueError(f"PathwayEncoder: d_token and hidden must be >= 1, got {d_token}, {hidden}")
        sets = restrict_gene_sets(gene_sets, names)
        position = {g: i for i, g in enumerate(names)}
        members = [[position[g] for g in genes] for genes in sets.values()]
        self.set_names = list(sets)
        if other_token:
            covered = {i for m in members for i in m}
            others = [i for i in range(len(names)) if i not in covered]
            if others:
                members.append(others)
                self.set_names.append("other_genes")
        self.n_genes, self.d_token, self.hidden = len(names), int(d_token), int(hidden)
        n_sets, width = len(members), max(len(m) for m in members)
        index = torch.zeros(n_sets, width, dtype=torch.long)
        mask = torch.zeros(n_sets, width, dtype=torch.bool)
        for k, m in enumerate(members):
            index[k, : len(m)] = torch.tensor(m, dtype=torch.long)
            mask[k, : len(m)] = True
        self.register_buffer("index", index, persistent=False)
        self.register_buffer("mask", mask, persistent=False)
        sizes = mask.sum(1, keepdim=True).float()
        # LeCun-normal per set (std 1/sqrt(fan_in) with fan_in = the set's own size), as SELU assumes.
        self.w1 = nn.Parameter(torch.randn(n_sets, width, self.hidden) / sizes.sqrt().unsqueeze(-1))
        self.b1 = nn.Parameter(torch.zeros(n_sets, self.hidden))
        self.w2 = nn.Parameter(torch.randn(n_sets, self.hidden, self.d_token) / math.sqrt(self.hidden))
        self.b2 = nn.Parameter(torch.zeros(n_sets, self.d_token))
        self.act = nn.SELU()
        self.drop = nn.AlphaDropout(dropout)
        self.noise = GaussianNoise(input_noise)

    @property
    def n_tokens(self) -> int:
        """Tokens per patient: the kept sets, plus "other_genes" when added."""
        return len(self.set_names)

    @property
    def set_sizes(self) -> list[int]:
        return self.mask.sum(1).tolist()

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.n_genes:
            raise ValueError(
                f"PathwayEncoder expects input of shape (n, {self.n_genes}), got {tuple(x.shape)}"
            )
        # (n, S, W): each set's genes, padded positions zeroed; then sets first for the grouped matmul.
        genes = self.noise(x)[:, self.index].masked_fill(~self.mask, 0.0).transpose(0, 1)
        w1 = self.w1.masked_fill(~self.mask.unsqueeze(-1), 0.0)
        h = self.drop(self.act(torch.bmm(genes, w1) + self.b1.unsqueeze(1)))  # (S, n, hidden)
        tokens = self.drop(self.act(torch.bmm(h, self.w2) + self.b2.unsqueeze(1)))  # (S, n, d_token)
        return tokens.transpose(0, 1)
