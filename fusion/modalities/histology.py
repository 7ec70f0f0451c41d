"""Histology: per patient a bag of tiles -> attention MIL (ABMIL or TransMIL) -> one embedding.

The manifest column (default ``histology``) holds, per patient, either (``input: tiles``) a folder
of tile images (``.png``, ``.jpg``, ``.jpeg``, ``.tif``, ``.tiff``; hidden files are ignored),
embedded end to end by a tile CNN, or (``input: features``) a feature file written by
``fusion-extract-features`` (`fusion.io.feature_files`), embedded by a linear projection. One cohort
uses one kind (the encoders differ). Whole slides are not read here: extract features first.
The number of tiles varies per patient, so a batch is a padded bag plus a mask, and the encoder
attends only to real tiles: a patient's embedding does not depend on who else is in the batch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusion.io.feature_files import is_feature_file
from fusion.io.tiles import read_tiles
from fusion.modalities.base import Modality
from fusion.modalities.histology_inputs import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    INPUTS,
    dihedral_augment,
    hed_jitter,
    load_feature_bag,
    pad_bags,
    reference_problem,
)
from fusion.modalities.privacy import MIN_GROUP, checked_min_group
from fusion.nn.bag_encoder import AGGREGATORS, FeatureBagEncoder, make_aggregator
from fusion.nn.bags import pad_feature_bags
from fusion.nn.tile_cnn import TileCNN

log = logging.getLogger(__name__)


class HistologyEncoder(nn.Module):
    """``{"tiles", "mask"}`` -> (n, embed_dim): tile CNN on real tiles, MIL aggregator, linear.

    In eval mode the CNN runs over the real tiles in chunks of ``eval_chunk``, so a large bag never
    holds every tile's activations at once (training keeps one call: autograd stores them anyway,
    and BatchNorm statistics must see the whole bag). ``last_attention`` holds the per-tile
    attention of the last forward, (n, Nmax), 0 at padding (detached; for heatmaps and inspection).
    """

    #: buffers (`register_buffer`), declared for type checkers (nn.Module types them Tensor | Module)
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        embed_dim: int = 64,
        tile_channels: Sequence[int] = (16, 32, 64),
        attention_dim: int = 64,
        dropout: float = 0.1,
        mean: Sequence[float] = DEFAULT_MEAN,
        std: Sequence[float] = DEFAULT_STD,
        norm: str = "group",
        aggregator: str = "abmil",
        eval_chunk: int = 512,
        **aggregator_kwargs: int,
    ):
        super().__init__()
        self.eval_chunk = int(eval_chunk)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.tile_cnn = TileCNN(tile_channels, out_dim=embed_dim, norm=norm)
        self.mil = make_aggregator(aggregator, embed_dim, attention_dim, dropout, **aggregator_kwargs)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(embed_dim, embed_dim)
        self.last_attention: torch.Tensor | None = None

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        tiles, mask = batch["tiles"], batch["mask"].bool()
        if tiles.dim() != 5 or tiles.shape[:2] != mask.shape:
            raise ValueError(
                f"histology encoder expects tiles (n, N, 3, h, w) and mask (n, N), "
                f"got {tuple(tiles.shape)} and {tuple(mask.shape)}"
            )
        real = tiles[mask]  # (number of real tiles, 3, h, w): padding is never computed
        if self.training or real.shape[0] <= self.eval_chunk:
            features = self._embed(real)
        else:
            chunks = range(0, real.shape[0], self.eval_chunk)
            features = torch.cat([self._embed(real[s : s + self.eval_chunk]) for s in chunks])
        h = features.new_zeros(*mask.shape, features.shape[-1]).masked_scatter(mask.unsqueeze(-1), features)
        pooled, attention = self.mil(h, mask)
        self.last_attention = attention.detach()
        return self.proj(self.dropout(pooled))

    def _embed(self, tiles: torch.Tensor) -> torch.Tensor:
        x = tiles.float() / 255.0 if tiles.dtype == torch.uint8 else tiles.float()
        return self.tile_cnn((x - self.mean) / self.std)


class HistologyModality(Modality):
    """Folders of H&E tiles or feature files -> attention-MIL patient embedding of size ``embed_dim``.

    Args:
        input: ``tiles`` (a folder of tile images per patient; tile CNN trained end to end) or
            ``features`` (a feature file per patient; needs ``feature_dim``).
        feature_dim: D of the feature files (checked cheaply before training); required for features.
        tile_size: tiles are resized to ``tile_size`` x ``tile_size`` pixels when loaded.
        max_tiles_train: random subsample of at most this many tiles per patient in training
            (bounds memory; None = all).
        max_tiles_eval: at evaluation, at most this many evenly spaced tiles (None = all).
        augment: training-only random flips, 90-degree rotations and H&E stain jitter.
        hed_jitter: strength of the stain jitter (0 = off).
        embed_dim: size of the patient embedding (``out_dim``).
        tile_channels: conv widths of the tile CNN.
        attention_dim: hidden size of the attention network.
        dropout: dropout in the attention network and before the output projection.
        norm: tile CNN normalisation, ``group`` or ``batch``.
        aggregator: ``abmil`` (gated attention MIL) or ``transmil`` (CLS token + Nystrom transformer).
        eval_chunk: tiles per CNN call (or feature rows per projection) at evaluation.
        transmil_layers, transmil_heads, transmil_landmarks: TransMIL depth, heads, Nystrom landmarks.
        min_group: the fewest training patients behind the stored colour statistics (`privacy.py`);
            with fewer, the default H&E statistics are kept.
    """

    needs_fit = True  # per-channel intensity statistics of the training tiles (tiles input only)

    def __init__(
        self,
        name: str = "histology",
        column: str | None = None,
        on_error: str = "raise",
        tile_size: int = 32,
        max_tiles_train: int | None = 16,
        max_tiles_eval: int | None = None,
        augment: bool = True,
        hed_jitter: float = 0.05,
        embed_dim: int = 64,
        tile_channels: Sequence[int] = (16, 32, 64),
        attention_dim: int = 64,
        dropout: float = 0.1,
        norm: str = "group",
        input: str = "tiles",  # noqa: A002 - the config key users write
        feature_dim: int | None = None,
        aggregator: str = "abmil",
        eval_chunk: int = 512,
        transmil_layers: int = 2,
        transmil_heads: int = 4,
        transmil_landmarks: int = 64,
        min_group: int = MIN_GROUP,
    ):
        super().__init__(name=name, column=column, on_error=on_error)
        self.min_group = checked_min_group(min_group, f"modality '{name}'")
        if input not in INPUTS:
            raise ValueError(f"modality '{name}': input must be one of {INPUTS}, got '{input}'")
        if input == "features" and (feature_dim is None or int(feature_dim) < 1):
            raise ValueError(
                f"modality '{name}': input=features needs feature_dim (a positive int), got {feature_dim}"
            )
        if aggregator not in AGGREGATORS:
            raise ValueError(
                f"modality '{name}': aggregator must be one of {AGGREGATORS}, got '{aggregator}'"
            )
        if aggregator == "transmil" and int(embed_dim) % int(transmil_heads):
            raise ValueError(
                f"modality '{name}': embed_dim {embed_dim} must be divisible by "
                f"transmil_heads {transmil_heads}"
            )
        for key, value in (
            ("eval_chunk", eval_chunk),
            ("transmil_layers", transmil_layers),
            ("transmil_heads", transmil_heads),
            ("transmil_landmarks", transmil_landmarks),
        ):
            if int(value) < 1:
                raise ValueError(f"modality '{name}': {key} must be a positive int, got {value}")
        self.input = input
        self.feature_dim = None if feature_dim is None else int(feature_dim)
        self.aggregator = aggregator
        self.eval_chunk = int(eval_chunk)
        self.transmil_layers = int(transmil_layers)
        self.transmil_heads = int(transmil_heads)
        self.transmil_landmarks = int(transmil_landmarks)
        self.needs_fit = input == "tiles"  # feature bags have no fitted state
        for key, cap in (("max_tiles_train", max_tiles_train), ("max_tiles_eval", max_tiles_eval)):
            if cap is not None and int(cap) < 1:
                raise ValueError(f"modality '{name}': {key} must be a positive int or null, got {cap}")
        if int(tile_size) < 1:
            raise ValueError(f"modality '{name}': tile_size must be a positive int, got {tile_size}")
        self.tile_size = int(tile_size)
        self.max_tiles_train = None if max_tiles_train is None else int(max_tiles_train)
        self.max_tiles_eval = None if max_tiles_eval is None else int(max_tiles_eval)
        self.augment = bool(augment)
        self.hed_jitter = float(hed_jitter)
        self.embed_dim = int(embed_dim)
        self.tile_channels = tuple(int(c) for c in tile_channels)
        self.attention_dim = int(attention_dim)
        self.dropout = float(dropout)
        self.norm = norm
        self.mean: tuple[float, ...] = DEFAULT_MEAN
        self.std: tuple[float, ...] = DEFAULT_STD
        self.fitted = False

    # ----------------------------------------------------------------- cohort side
    def check(self, ref: Any) -> list[str]:
        """Tiles: the folder holds a tile image (nothing decoded). Features: a feature file whose
        header says D == feature_dim. Either: a slide, or the other kind of input, is an error."""
        if ref is None:
            return []
        try:
            problem = reference_problem(Path(ref), self.input, self.feature_dim)
        except ValueError as err:
            problem = str(err)
        return [] if problem is None else [problem]

    # ----------------------------------------------------------------- data side
    def load(self, ref: Any) -> torch.Tensor | dict[str, torch.Tensor]:
        """Tiles: uint8 (N, 3, tile_size, tile_size), sorted by name. Features: ``{"features" (N, D)
        float16/32, "coords" (N, 2) int64}``. ValueError naming the file for anything broken."""
        path = Path(ref)
        if self.input == "features":
            if not is_feature_file(path):  # missing, a folder, a slide or another file type
                raise ValueError(reference_problem(path, self.input, self.feature_dim))
            return load_feature_bag(path, self.feature_dim)
        if path.is_file():  # a feature file or a slide where a folder is expected
            raise ValueError(reference_problem(path, self.input, None))
        return read_tiles(ref, self.tile_size)

    def cache_key(self) -> str:
        """Only what `load` depends on, so changing the encoder (aggregator, widths) keeps the cache."""
        settings = {"input": self.input, "tile_size": self.tile_size, "feature_dim": self.feature_dim}
        return json.dumps(settings, sort_keys=True)

    def fit(self, items: list[torch.Tensor]) -> None:
        """Per-channel mean / std of the training tiles (exact, from 256-bin histograms), from at least
        `min_group` training patients; with fewer the default H&E statistics stay."""
        if self.input == "features":
            return
        if len(items) < self.min_group:
            log.info(
                "modality '%s': fewer than min_group=%d training patients; the default H&E colour "
                "statistics are used (none of fewer patients is stored)",
                self.name,
                self.min_group,
            )
            return
        counts = torch.zeros(3, 256, dtype=torch.float64)
        for item in items:
            for c in range(3):
                counts[c] += torch.bincount(item[:, c].reshape(-1), minlength=256).double()
        total = counts.sum(dim=1)
        if items and bool((total > 0).all()):
            values = torch.arange(256, dtype=torch.float64) / 255.0
            mean = (counts * values).sum(dim=1) / total
            var = (counts * values**2).sum(dim=1) / total - mean**2
            self.mean = tuple(float(v) for v in mean)
            self.std = tuple(float(v) for v in var.clamp_min(1e-6).sqrt())
            self.fitted = True

    def transform(self, item: Any, train: bool) -> Any:
        """Train: random subsample to ``max_tiles_train`` (+ augmentation for tiles). Eval: all tiles,
        or an evenly spaced ``max_tiles_eval`` cap. Feature bags keep features and coords aligned."""
        if isinstance(item, dict):
            n = item["features"].shape[0]
            keep = None
            if train and self.max_tiles_train is not None and n > self.max_tiles_train:
                keep = torch.randperm(n)[: self.max_tiles_train]
            elif not train and self.max_tiles_eval is not None and n > self.max_tiles_eval:
                keep = torch.linspace(0, n - 1, self.max_tiles_eval).round().long()
            return (
                item if keep is None else {"features": item["features"][keep], "coords": item["coords"][keep]}
            )
        n = item.shape[0]
        if train:
            if self.max_tiles_train is not None and n > self.max_tiles_train:
                item = item[torch.randperm(n)[: self.max_tiles_train]]
            if self.augment:
                item = hed_jitter(dihedral_augment(item), self.hed_jitter)
            return item
        if self.max_tiles_eval is not None and n > self.max_tiles_eval:
            item = item[torch.linspace(0, n - 1, self.max_tiles_eval).round().long()]
        return item

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        """Pad the bags to the largest in the batch: ``{"tiles": uint8, "mask": bool}``, or for
        feature bags ``{"features", "coords", "mask"}``."""
        kinds = {isinstance(x, dict) for x in items}
        if len(kinds) > 1:
            raise ValueError(
                f"modality '{self.name}': a batch mixes tile bags and feature bags; one cohort cannot mix "
                "tile folders and feature files"
            )
        return pad_feature_bags(items) if kinds == {True} else pad_bags(items)

    # ----------------------------------------------------------------- model side
    def build_encoder(self) -> HistologyEncoder | FeatureBagEncoder:
        """`FeatureBagEncoder` for ``input: features``, else the end-to-end `HistologyEncoder`."""
        transmil = {
            "layers": self.transmil_layers,
            "heads": self.transmil_heads,
            "landmarks": self.transmil_landmarks,
        }
        extra = transmil if self.aggregator == "transmil" else {}
        if self.input == "features":
            return FeatureBagEncoder(
                feature_dim=self.feature_dim or 0,
                hidden_dim=self.embed_dim,
                out_dim=self.embed_dim,
                aggregator=self.aggregator,
                attention_dim=self.attention_dim,
                dropout=self.dropout,
                chunk=self.eval_chunk,
                **extra,
            )
        return HistologyEncoder(
            embed_dim=self.embed_dim,
            tile_channels=self.tile_channels,
            attention_dim=self.attention_dim,
            dropout=self.dropout,
            mean=self.mean,
            std=self.std,
            norm=self.norm,
            aggregator=self.aggregator,
            eval_chunk=self.eval_chunk,
            **extra,
        )

    @property
    def out_dim(self) -> int:
        return self.embed_dim

    # ----------------------------------------------------------------- fitted state
    def state_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "fitted": self.fitted}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean = tuple(float(v) for v in state.get("mean", DEFAULT_MEAN))
        self.std = tuple(float(v) for v in state.get("std", DEFAULT_STD))
        self.fitted = bool(state.get("fitted", False))
