"""Folders of tile images (one folder per patient): which files are tiles, and reading them as RGB.

Used by the histology modality (`fusion.modalities.histology`, input ``tiles``) and by feature
extraction from tile folders (`fusion.features.sources`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

TILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


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
        out[i] = read_tile_image(file, tile_size)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def read_tile_image(file: Path, size: int) -> np.ndarray:
    """One tile as RGB uint8 (size, size, 3), resized if needed; ValueError naming the file if unreadable."""
    try:
        with Image.open(file) as image:
            rgb = image.convert("RGB")
            if rgb.size != (size, size):
                rgb = rgb.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(rgb)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read tile image '{file}': {exc}") from exc
