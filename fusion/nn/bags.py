"""Bags of instances (one patient's tiles or tile features), shared by the MIL aggregators.

A bag is a variable-size set; bags of a batch are padded to one length with a mask (True = real
instance). `pad_feature_bags` builds such a batch from feature files' bags; `checked_bag_mask`
checks a padded batch before an aggregator (`fusion.nn.mil`, `fusion.nn.transmil`) pools it.
"""

from __future__ import annotations

import torch
from torch import nn


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
