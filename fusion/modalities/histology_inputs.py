"""Histology inputs per patient: a folder of tile images or a precomputed feature file.

Checking, augmenting and padding bags of tiles or of tile features (tile images are read by
`fusion.io.tiles`, feature files by `fusion.io.feature_files`); `HistologyModality`
(fusion/modalities/histology.py) chooses between them by its `input` setting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from fusion.io.feature_files import FEATURE_SUFFIXES, is_feature_file, read_features, read_header
from fusion.io.tiles import TILE_SUFFIXES, is_tile

#: Channel statistics used until `fit` has seen the training tiles (ImageNet's, in [0, 1] units).
DEFAULT_MEAN = (0.485, 0.456, 0.406)
DEFAULT_STD = (0.229, 0.224, 0.225)
# Ruifrok & Johnston haematoxylin / eosin / DAB stain vectors (as in scikit-image's rgb2hed).
_RGB_FROM_HED = torch.tensor(
    [[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], dtype=torch.float64
)
_HED_FROM_RGB = torch.linalg.inv(_RGB_FROM_HED)
_OD_MAX = math.log(256.0)  # optical density of an 8-bit black pixel, with the +1 offset below
INPUTS = ("tiles", "features")
#: Used when `fusion.wsi` is not importable; the error for a slide path needs only the names.
# whole-slide formats (broader than fusion.wsi reads): named only to tell the user to extract features first
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide")


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


def feature_file_dim(path: Path) -> int:
    """The feature dimension D of a feature file, read from its header only (no features loaded)."""
    shape = read_header(path).shape
    if len(shape) != 2:
        raise ValueError(f"feature file '{path}': features must be (N, D), got shape {shape}")
    return int(shape[1])


def reference_problem(path: Path, input_kind: str, feature_dim: int | None) -> str | None:
    """What is wrong with ``path`` as this modality's input (None = fine), without decoding tiles."""
    if not path.exists():
        kind = "tile folder" if input_kind == "tiles" else "feature file"
        return f"{kind} does not exist: {path}"
    mixing = "one cohort cannot mix tile folders and feature files (their encoders differ)"
    if path.is_file() and not is_feature_file(path) and path.name.lower().endswith(SLIDE_SUFFIXES):
        return (
            f"'{path}' is a whole-slide image, which the histology modality does not read: run "
            "fusion-extract-features first and point the manifest at the feature files (input: features)"
        )
    if input_kind == "tiles":
        if is_feature_file(path):
            return (
                f"'{path}' is a feature file but modality input is 'tiles'; set input=features and "
                f"feature_dim ({mixing})"
            )
        if not path.is_dir():
            return f"expected a folder of tile images, got a file: {path}"
        if not any(is_tile(p) for p in path.iterdir()):
            return f"no tile images ({', '.join('*' + s for s in TILE_SUFFIXES)}) in folder: {path}"
        return None
    if path.is_dir():
        return f"'{path}' is a folder but modality input is 'features' (expects a feature file; {mixing})"
    if not is_feature_file(path):
        return f"'{path}': unsupported feature file type (use one of {', '.join(FEATURE_SUFFIXES)})"
    found = feature_file_dim(path)
    if feature_dim is not None and found != feature_dim:
        return f"feature file '{path}' has feature dimension {found}, expected feature_dim={feature_dim}"
    return None


def load_feature_bag(path: Path, feature_dim: int | None) -> dict[str, torch.Tensor]:
    """``{"features": float16/32 (N, D), "coords": int64 (N, 2)}`` from a feature file."""
    bag = read_features(path)
    found = int(bag.features.shape[1])
    if feature_dim is not None and found != feature_dim:
        raise ValueError(
            f"feature file '{path}' has feature dimension {found}, expected feature_dim={feature_dim}"
        )
    features = bag.features
    if features.dtype not in (torch.float16, torch.float32):
        features = features.float()
    return {"features": features, "coords": bag.coords}
