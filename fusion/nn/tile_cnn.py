"""A small 2D CNN that embeds image tiles; trained from scratch, fast on CPU for 32 px tiles.

Each block is conv3x3 -> norm -> ReLU -> 2x2 max-pool; a global average pool and a linear layer
give one embedding per tile. GroupNorm (the default) keeps a tile's embedding independent of the
other tiles in the call, in training as in evaluation; BatchNorm is available for large batches.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

NORMS = ("group", "batch")


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.GroupNorm(math.gcd(channels, 8), channels)


class TileCNN(nn.Module):
    """Tiles (m, in_channels, h, w) float -> embeddings (m, out_dim).

    Args:
        channels: output channels of each conv block; each block halves the spatial size.
        out_dim: size of the tile embedding.
        in_channels: image channels (3 for RGB).
        norm: ``group`` (GroupNorm, batch-independent) or ``batch`` (BatchNorm2d).
    """

    def __init__(
        self,
        channels: Sequence[int] = (16, 32, 64),
        out_dim: int = 64,
        in_channels: int = 3,
        norm: str = "group",
    ):
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ValueError(f"TileCNN channels must be a non-empty list of positive ints, got {channels}")
        if norm not in NORMS:
            raise ValueError(f"TileCNN norm must be one of {NORMS}, got '{norm}'")
        blocks: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            blocks += [
                nn.Conv2d(previous, width, kernel_size=3, padding=1, bias=False),
                _norm(norm, width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),  # ceil_mode: tiny tiles never shrink to zero pixels
            ]
            previous = width
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.proj = nn.Linear(previous, out_dim)
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(self.features(x)).flatten(1))
