"""Histology: a folder of RGB tiles per patient -> tile CNN -> gated attention MIL -> one embedding.

The manifest column (default ``histology``) holds, per patient, a folder of tile images
(``.png``, ``.jpg``, ``.jpeg``, ``.tif``, ``.tiff``; hidden files are ignored). The number of tiles
varies per patient, so a batch is a padded bag plus a mask, and the encoder attends only to real
tiles: a patient's embedding does not depend on who else is in the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from fusion.modalities.base import Modality
from fusion.nn.mil import GatedAttentionMIL
from fusion.nn.tile_cnn import TileCNN

TILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
#: Channel statistics used until `fit` has seen the training tiles (ImageNet's, in [0, 1] units).
DEFAULT_MEAN = (0.485, 0.456, 0.406)
DEFAULT_STD = (0.229, 0.224, 0.225)
# Ruifrok & Johnston haematoxylin / eosin / DAB stain vectors (as in scikit-image's rgb2hed).
_RGB_FROM_HED = torch.tensor(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64
)
_HED_FROM_RGB = torch.linalg.inv(_RGB_FROM_HED)
_OD_MAX = math.log(256.0)  # optical density of an 8-bit black pixel, with the +1 offset below


def is_tile(path: Path) -> bool:
    """A tile image by suffix (case-insensitive); hidden files such as macOS ``._x.png`` are not."""
    return path.suffix.lower() in TILE_SUFFIXES and not path.name.startswith(".")


def tile_files(folder: Path) -> list[Path]:
    """The tile images of a folder, sorted by name."""
    return sorted((p for p in folder.iterdir() if is_tile(p)), key=lambda p: p.name)


def read_tiles(folder: str | Path, tile_size: int) -> torch.Tensor:
    """All tiles of ``folder`` as uint8 (N, 3, tile_size, tile_size); ValueError naming the bad path."""
    folder = Path(folder)
    if not folder.exists():
        raise ValueError(f"tile folder does not exist: {folder}")
    if not folder.is_dir():
        raise ValueError(f"expected a folder of tile images, got a file: {folder}")
    files = tile_files(folder)
    if not files:
        raise ValueError(f"no tile images ({', '.join('*' + s for s in TILE_SUFFIXES)}) in folder: {folder}")
    out = np.empty((len(files), tile_size, tile_size, 3), dtype=np.uint8)
    for i, file in enumerate(files):
        try:
            with Image.open(file) as image:
                rgb = image.convert("RGB")
                if rgb.size != (tile_size, tile_size):
                    rgb = rgb.resize((tile_size, tile_size), Image.Resampling.BILINEAR)
                out[i] = np.asarray(rgb)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise ValueError(f"cannot read tile image '{file}': {exc}") from exc
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def dihedral_augment(tiles: torch.Tensor) -> torch.Tensor:
    """Random horizontal flip and 90-degree rotation, drawn independently per tile (a new tensor)."""
    n = tiles.shape[0]
    flip = torch.rand(n) < 0.5
    out = torch.where(flip.view(n, 1, 1, 1), tiles.flip(-1), tiles)
    turns = torch.randint(0, 4, (n,))
    for k in (1, 2, 3):  # one call per rotation, not per tile
        chosen = turns == k
        if bool(chosen.any()):
            out[chosen] = torch.rot90(out[chosen], k, dims=(-2, -1))
    return out


def hed_jitter(tiles: torch.Tensor, strength: float) -> torch.Tensor:
    """Mild stain augmentation (Tellez et al. 2018): per tile, scale and shift each H&E(+DAB) stain.

    Tiles are uint8 (n, 3, h, w); in optical density units normalised to [0, 1], each stain
    concentration becomes ``c * U(1 - s, 1 + s) + U(-s, s)``. ``strength`` 0 returns the input.
    """
    if strength <= 0 or tiles.shape[0] == 0:
        return tiles
    n = tiles.shape[0]
    density = -torch.log((tiles.float() + 1.0) / 256.0) / _OD_MAX
    stains = torch.einsum("nihw,ij->njhw", density, _HED_FROM_RGB.float())
    alpha = 1.0 + (torch.rand(n, 3, 1, 1) * 2 - 1) * strength
    beta = (torch.rand(n, 3, 1, 1) * 2 - 1) * strength
    density = torch.einsum("njhw,jk->nkhw", stains * alpha + beta, _RGB_FROM_HED.float())
    rgb = torch.exp(-density * _OD_MAX) * 256.0 - 1.0
    return rgb.round().clamp(0, 255).to(torch.uint8)


def pad_bags(items: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Bags (N_i, 3, h, w) -> ``{"tiles": (n, Nmax, 3, h, w), "mask": bool (n, Nmax)}``, True = real tile."""
    if not items:
        raise ValueError("histology collate got no items (collate only the patients who have the modality)")
    shapes = {tuple(x.shape[1:]) for x in items}
    if len(shapes) > 1:
        raise ValueError(f"histology collate: tiles of different shapes in one batch: {sorted(shapes)}")
    lengths = torch.tensor([x.shape[0] for x in items])
    tiles = nn.utils.rnn.pad_sequence(list(items), batch_first=True, padding_value=0)
    mask = torch.arange(tiles.shape[1]).unsqueeze(0) < lengths.unsqueeze(1)
    return {"tiles": tiles, "mask": mask}


class HistologyEncoder(nn.Module):
    """``{"tiles", "mask"}`` -> (n, embed_dim): tile CNN on real tiles, gated attention MIL, linear.

    ``last_attention`` holds the per-tile attention of the last forward, (n, Nmax), 0 at padding
    (detached; for heatmaps and inspection).
    """

    def __init__(
        self,
        embed_dim: int = 64,
        tile_channels: Sequence[int] = (16, 32, 64),
        attention_dim: int = 64,
        dropout: float = 0.1,
        mean: Sequence[float] = DEFAULT_MEAN,
        std: Sequence[float] = DEFAULT_STD,
        norm: str = "group",
    ):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.tile_cnn = TileCNN(tile_channels, out_dim=embed_dim, norm=norm)
        self.mil = GatedAttentionMIL(embed_dim, attention_dim, dropout)
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
        real = tiles[mask]  # (number of real tiles, 3, h, w): one CNN call, padding never computed
        x = real.float() / 255.0 if real.dtype == torch.uint8 else real.float()
        features = self.tile_cnn((x - self.mean) / self.std)
        h = features.new_zeros(*mask.shape, features.shape[-1]).masked_scatter(mask.unsqueeze(-1), features)
        pooled, attention = self.mil(h, mask)
        self.last_attention = attention.detach()
        return self.proj(self.dropout(pooled))


class HistologyModality(Modality):
    """Folders of H&E tiles -> attention-MIL patient embedding of size ``embed_dim``.

    Args:
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
    """

    needs_fit = True  # per-channel intensity statistics of the training tiles

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
    ):
        super().__init__(name=name, column=column, on_error=on_error)
        for key, value in (("max_tiles_train", max_tiles_train), ("max_tiles_eval", max_tiles_eval)):
            if value is not None and int(value) < 1:
                raise ValueError(f"modality '{name}': {key} must be a positive int or null, got {value}")
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
        """The folder exists and holds at least one tile image (nothing is decoded)."""
        if ref is None:
            return []
        folder = Path(ref)
        if not folder.exists():
            return [f"tile folder does not exist: {folder}"]
        if not folder.is_dir():
            return [f"expected a folder of tile images, got a file: {folder}"]
        if not any(is_tile(p) for p in folder.iterdir()):
            return [f"no tile images ({', '.join('*' + s for s in TILE_SUFFIXES)}) in folder: {folder}"]
        return []

    # ----------------------------------------------------------------- data side
    def load(self, ref: Any) -> torch.Tensor:
        """All tiles of the patient's folder, sorted by name: uint8 (N, 3, tile_size, tile_size)."""
        return read_tiles(ref, self.tile_size)

    def fit(self, items: list[torch.Tensor]) -> None:
        """Per-channel mean / std of the training tiles (exact, from 256-bin histograms)."""
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

    def transform(self, item: torch.Tensor, train: bool) -> torch.Tensor:
        """Train: random subsample to ``max_tiles_train`` + augmentation. Eval: evenly spaced cap."""
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

    def collate(self, items: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        """Pad the bags to the largest in the batch: ``{"tiles": uint8, "mask": bool}``."""
        return pad_bags(items)

    # ----------------------------------------------------------------- model side
    def build_encoder(self) -> HistologyEncoder:
        return HistologyEncoder(
            embed_dim=self.embed_dim,
            tile_channels=self.tile_channels,
            attention_dim=self.attention_dim,
            dropout=self.dropout,
            mean=self.mean,
            std=self.std,
            norm=self.norm,
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
