"""Which tiles of one patient's histology bag a prediction rests on: attention and Integrated Gradients.

``attention`` is the aggregator's own per-tile weight (`HistologyEncoder` / `FeatureBagEncoder`
``last_attention``: the ABMIL softmax, or TransMIL's last-layer CLS attention). ``attribution`` is
Integrated Gradients (captum) of every target w.r.t. the per-tile instance embeddings ``h`` (1, N, d)
that the aggregator pools, summed over d: the tile CNN (or feature projection) runs once, and the
interpolation steps only re-run the aggregator, the fuser and the heads. So both aggregators work
alike, and the attributions add up (IG completeness): sum over tiles = target(bag) - target(baseline).

Baseline: all-zero embeddings, a bag whose tiles show nothing (ABMIL pools it to exactly 0; feature-bag
embeddings are ReLU outputs, so 0 is their floor; a tile embedded as 0 gets exactly 0). A bag-mean
baseline (``baseline="mean"``) cancels what every tile shares: a bag of tumour tiles only gets nothing.

TransMIL caveat: its Nystrom attention backpropagates through ``pinv`` of the landmark kernel, whose
gradient is unreliable when that kernel is near singular (near-uniform attention, tiles alike), so IG
can then miss completeness; a warning says so. Attention is unaffected.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, cast

import pandas as pd
import torch
from torch import Tensor, nn

from fusion.attribution.context import PatientContext
from fusion.attribution.integrated import integrate
from fusion.errors import FusionError
from fusion.io.feature_files import read_header
from fusion.io.tiles import tile_files
from fusion.modalities.histology import HistologyEncoder, HistologyModality
from fusion.nn.bag_encoder import FeatureBagEncoder

#: IG completeness tolerance: |sum over tiles - (target(bag) - target(baseline))| <= ATOL + RTOL * |change|
COMPLETENESS_ATOL, COMPLETENESS_RTOL = 1e-3, 0.05
log = logging.getLogger(__name__)

#: the columns of `tile_attributions`, one row per tile and (head, target)
TILE_COLUMNS = ("tile", "slide_index", "x", "y", "attention", "attribution", "modality", "head", "target")


class TileAttributionError(FusionError, ValueError):
    """A patient's tiles cannot be explained as loaded (names the patient, the file and the problem)."""


def tile_attributions(
    ctx: PatientContext, name: str, modality: HistologyModality, n_steps: int = 32, baseline: str = "zero"
) -> pd.DataFrame:
    """Per-tile attention and Integrated Gradients attribution of every ``ctx.target_keys`` target.

    Columns `TILE_COLUMNS`. ``tile``: the tile's file name (tile folders, in the order the model saw
    them, ``max_tiles_eval`` subsampling included) or its row in the feature file (feature bags);
    ``x, y``: the stored level-0 coordinates (feature bags; empty for tile folders); ``slide_index``:
    the file's ``slide_index`` when it has one, else 0 (feature bags) or empty (tile folders).
    An empty frame for a modality that is not histology.
    """
    if not isinstance(modality, HistologyModality):
        return pd.DataFrame(columns=list(TILE_COLUMNS))
    encoder = ctx.model.encoders[name]
    h, mask, attention = instance_embeddings(encoder, ctx.inputs[name]["data"])
    attributions = integrated_gradients(ctx, name, h, mask, n_steps, baseline_bag(h, mask, baseline))
    index = tile_index(ctx, name, modality)
    index["attention"] = attention[0][mask[0]].cpu().numpy()
    frames = []
    for (head, target), values in attributions.items():
        frame = index.copy()
        frame["attribution"] = values.cpu().numpy()
        frame["modality"], frame["head"], frame["target"] = name, head, target
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)[list(TILE_COLUMNS)]


def aggregator_of(encoder: nn.Module) -> nn.Module:
    """The MIL aggregator of a histology encoder (``(h, mask) -> (pooled, attention)``)."""
    if isinstance(encoder, HistologyEncoder):
        return encoder.mil
    if isinstance(encoder, FeatureBagEncoder):
        return encoder.aggregator
    raise TypeError(f"not a histology encoder: {type(encoder).__name__}")


def instance_embeddings(encoder: nn.Module, data: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """One encoder pass over a bag of one: (h (1, N, d) as the aggregator receives it, mask (1, N),
    attention (1, N)). ``h`` is captured by a hook on the aggregator, so it is exactly what
    ``forward`` pools (tile CNN chunking, dtype casts and all)."""
    captured: dict[str, Tensor] = {}

    def capture(_module: nn.Module, args: tuple[Any, ...]) -> None:
        captured["h"], captured["mask"] = args[0].detach(), args[1].detach()

    handle = aggregator_of(encoder).register_forward_pre_hook(capture)
    try:
        with torch.no_grad():
            encoder(data)
    finally:
        handle.remove()
    attention = cast(Tensor, encoder.last_attention)
    return captured["h"], captured["mask"], attention


def bag_tokens(encoder: nn.Module, h: Tensor, mask: Tensor) -> Tensor:
    """The encoder's output from instance embeddings ``h`` (S, N, d): aggregator, dropout, projection."""
    pooled, _ = aggregator_of(encoder)(h, mask)
    proj, dropout = cast(nn.Module, encoder.proj), cast(nn.Module, encoder.dropout)
    return cast(Tensor, proj(dropout(pooled)))


def baseline_bag(h: Tensor, mask: Tensor, kind: str) -> Tensor:
    """The IG baseline of bag ``h`` (1, N, d): ``mean`` (every tile replaced by the bag's mean embedding)
    or ``zero``."""
    if kind == "zero":
        return torch.zeros_like(h)
    if kind == "mean":
        weights = mask.to(h.dtype).unsqueeze(-1)
        mean = (h * weights).sum(dim=1, keepdim=True) / weights.sum(dim=1, keepdim=True).clamp_min(1)
        return mean.expand_as(h) * weights
    raise ValueError(f"tile attribution baseline must be 'mean' or 'zero', got {kind!r}")


def integrated_gradients(
    ctx: PatientContext, name: str, h: Tensor, mask: Tensor, n_steps: int, baseline: Tensor
) -> dict[tuple[str, str], Tensor]:
    """(head, target) -> (N real tiles,) IG attribution w.r.t. ``h`` (1, N, d) from ``baseline`` (1, N, d),
    summed over the embedding dimension."""
    encoder = ctx.model.encoders[name]
    keys = ctx.target_keys

    def targets(bags: Tensor) -> Tensor:  # (S, N, d) -> (S, K)
        tokens = bag_tokens(encoder, bags, mask.expand(bags.shape[0], -1))
        values = ctx.targets_with(name, tokens)
        return torch.stack([values[key] for key in keys], dim=1)

    # one captum call for all K targets (`integrate`: K copies of the bag, copy k explained for target k)
    attributions, _ = integrate(targets, (h,), (baseline,), len(keys), n_steps)
    with torch.no_grad():  # the two ends of the path in one pass, for the completeness check
        ends = targets(torch.cat([h, baseline]))
    per_tile = attributions.sum(dim=-1)[:, mask[0]].detach()
    out, missed = {}, []
    for k, key in enumerate(keys):
        out[key] = per_tile[k]
        change = float(ends[0, k] - ends[1, k])  # target(bag) - target(baseline)
        if abs(float(per_tile[k].sum()) - change) > COMPLETENESS_ATOL + COMPLETENESS_RTOL * abs(change):
            missed.append("/".join(key))
    if missed:
        log.warning(
            "modality '%s': tile attributions of %s do not add up to the change from the baseline bag "
            "(IG completeness): the aggregator's gradients are unreliable here (TransMIL: its Nystrom "
            "pinv is ill-conditioned); the attention column is not affected",
            name,
            ", ".join(missed),
        )
    return out


def tile_index(ctx: PatientContext, name: str, modality: HistologyModality) -> pd.DataFrame:
    """``tile, slide_index, x, y`` of the tiles the model saw, in bag order. The evaluation subsample
    (``max_tiles_eval``) is found by running the modality's own `transform` on the tile positions."""
    ref = ctx.refs.get(name)
    data = ctx.inputs[name]["data"]
    mask = data["mask"][0].bool().cpu()
    n = int(mask.sum())
    if modality.input == "tiles":
        empty = pd.array([pd.NA] * n, dtype="Int64")
        names: list[Any] = list(range(n))  # nothing recorded: the position in the bag names the tile
        if ref is not None:
            files = tile_files(Path(ref))
            keep = modality.transform(torch.arange(len(files)), train=False)
            names = [files[i].name for i in keep.tolist()]
        _check_count(ctx, name, n, len(names))
        return pd.DataFrame({"tile": names, "slide_index": empty, "x": empty, "y": empty})
    coords = data["coords"][0][mask].cpu().long()
    rows, slides = torch.arange(n), torch.zeros(n, dtype=torch.long)
    if ref is not None:
        header = read_header(Path(ref))
        total, slide_index = header.shape[0], header.slide_index
        bag = {
            "features": torch.arange(total).unsqueeze(1),
            "coords": torch.zeros(total, 2, dtype=torch.long),
        }
        rows = modality.transform(bag, train=False)["features"][:, 0]
        _check_count(ctx, name, n, len(rows))
        slides = torch.zeros_like(rows) if slide_index is None else slide_index[rows].long()
    return pd.DataFrame(
        {
            "tile": rows.numpy(),
            "slide_index": pd.array(slides.numpy(), dtype="Int64"),
            "x": pd.array(coords[:, 0].numpy(), dtype="Int64"),
            "y": pd.array(coords[:, 1].numpy(), dtype="Int64"),
        }
    )


def _check_count(ctx: PatientContext, name: str, in_model: int, on_disk: int) -> None:
    if in_model != on_disk:
        raise TileAttributionError(
            f"patient '{ctx.patient_id}': modality '{name}' has {in_model} tiles in the model input but "
            f"{on_disk} in '{ctx.refs.get(name)}' (did the files change since they were loaded?)"
        )
