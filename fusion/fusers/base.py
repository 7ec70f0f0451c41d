"""The fuser contract (`Fuser`), and the helpers every fuser shares.

The fusion contract: `forward({name: (tokens, present)}) -> (B, out_dim)`, where `tokens` is
(B, n_tokens, d) or (B, d) with rows of absent patients zero-filled, and `present` is (B,) bool.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from fusion.errors import FusionError

FuserInput = dict[str, tuple[torch.Tensor, torch.Tensor]]


class Fuser(nn.Module):
    """Base class of the fusers: many modalities' tokens in, one patient embedding out.

    ``forward(inputs) -> (B, out_dim)``: `inputs` maps modality names to ``(tokens, present)``,
    ``tokens`` (B, T, d) or (B, d) with ``d = in_dims[name]`` and the rows of patients without that
    modality zero-filled, ``present`` (B,) bool. A fuser must mask absent modalities out (never read
    their zero rows as data) and fail with `MissingAllModalitiesError` for a patient with none.

    Args:
        in_dims: modality name -> feature size of its encoder's tokens (`Modality.out_dim`).
        out_dim: size of the fused embedding (what the heads receive).

    Subclasses call ``super().__init__(in_dims, out_dim)`` before building their layers. This sets
    plain attributes only (``in_dims``, ``names`` = sorted modality names, ``out_dim``), no
    parameters or buffers, so a subclass's ``state_dict`` keys are exactly its own modules'.
    """

    def __init__(self, in_dims: Mapping[str, int], out_dim: int):
        super().__init__()
        self.in_dims: dict[str, int] = dict(in_dims)
        self.names: list[str] = sorted(self.in_dims)
        self.out_dim = out_dim

    def forward(self, inputs: FuserInput) -> torch.Tensor:
        """``{name: (tokens (B, T, d) or (B, d), present (B,) bool)}`` -> (B, out_dim)."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward")


class MissingAllModalitiesError(FusionError, ValueError):
    """A sample reached the fuser with no modality at all: there is nothing to predict from."""


def as_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, d) -> (B, 1, d); (B, T, d) unchanged."""
    if x.dim() == 2:
        return x.unsqueeze(1)
    if x.dim() == 3:
        return x
    raise ValueError(f"encoder output must be (B, d) or (B, n_tokens, d), got shape {tuple(x.shape)}")


def check_every_patient_has_a_modality(present: torch.Tensor, names: list[str]) -> None:
    empty = (~present.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise MissingAllModalitiesError(
            f"batch rows {empty} have none of the modalities {names}; every patient needs at least one "
            "(fusion-validate lists such patients by id)"
        )


def drop_modalities(present: torch.Tensor, p: float) -> torch.Tensor:
    """Hide each present modality with probability p, never hiding all of a patient's modalities."""
    drop = torch.rand(present.shape, device=present.device) < p
    kept = present & ~drop
    lost_all = ~kept.any(dim=1) & present.any(dim=1)
    return torch.where(lost_all[:, None], present, kept)
