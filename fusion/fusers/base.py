"""What every fuser receives, and the checks they share.

The fusion contract: `forward({name: (tokens, present)}) -> (B, out_dim)`, where `tokens` is
(B, n_tokens, d) or (B, d) with rows of absent patients zero-filled, and `present` is (B,) bool.
"""

from __future__ import annotations

import torch

FuserInput = dict[str, tuple[torch.Tensor, torch.Tensor]]


class MissingAllModalitiesError(ValueError):
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
