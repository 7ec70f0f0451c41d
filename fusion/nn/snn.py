"""Self-normalising MLP (Klambauer et al., 2017) for high-dimensional, low-sample tabular inputs.

Stacks of Linear + SELU + AlphaDropout with LeCun-normal weights keep activations near zero
mean and unit variance without batch norm, which makes deep MLPs trainable on a few hundred
patients. It is the genomic branch of PathomicFusion (Chen et al., 2020).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from fusion.nn.noise import GaussianNoise


def lecun_normal_(linear: nn.Linear) -> None:
    """LeCun-normal init (std = 1/sqrt(fan_in)), zero bias: what SELU's fixed point assumes."""
    nn.init.normal_(linear.weight, mean=0.0, std=1.0 / math.sqrt(linear.in_features))
    if linear.bias is not None:
        nn.init.zeros_(linear.bias)


class SNN(nn.Module):
    """Self-normalising network: ``(n, in_dim) -> (n, out_dim)``.

    Every layer, the output layer included, is Linear + SELU + AlphaDropout, so the embedding
    handed to the fuser is itself self-normalised (as in PathomicFusion's genomic encoder).

    Args:
        in_dim: number of input features (standardised, e.g. z-scored gene expression).
        hidden: widths of the hidden layers; empty for a single layer.
        out_dim: embedding size.
        dropout: AlphaDropout rate (keeps mean and variance, unlike plain dropout).
        input_noise: sd of Gaussian noise added to the input in training (`fusion.nn.noise`); 0 = none.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: Sequence[int] = (128,),
        out_dim: int = 64,
        dropout: float = 0.1,
        input_noise: float = 0.0,
    ):
        super().__init__()
        if in_dim < 1 or out_dim < 1:
            raise ValueError(
                f"SNN needs in_dim >= 1 and out_dim >= 1, got in_dim={in_dim}, out_dim={out_dim}"
            )
        widths = [in_dim, *(int(h) for h in hidden), out_dim]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
            linear = nn.Linear(fan_in, fan_out)
            lecun_normal_(linear)
            layers += [linear, nn.SELU(), nn.AlphaDropout(dropout)]
        self.noise = GaussianNoise(input_noise)  # no parameters: checkpoint keys stay net.*
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2 or x.shape[1] != self.in_dim:
            raise ValueError(f"SNN expects input of shape (n, {self.in_dim}), got {tuple(x.shape)}")
        return self.net(self.noise(x))
