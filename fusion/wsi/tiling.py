"""Grid tiling of a whole slide at a fixed physical resolution, keeping only tissue tiles.

A tile is `tile_size` pixels at `target_mpp` microns/pixel, i.e. a square of
`tile_size * target_mpp / slide_mpp` level-0 pixels (its footprint). Coordinates are always level-0
(x, y) of the top-left corner, so they mean the same thing whatever level the pixels come from.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image

from fusion.wsi.slide import Slide
from fusion.wsi.tissue import slide_tissue_mask

MASK_PX_PER_TILE = 16  # tissue-mask resolution: about this many mask pixels along one tile side
MAX_MASK_SIDE = 16384  # never build a mask longer than this on its long side


@dataclass(frozen=True)
class TilingSpec:
    """How to tile: output tile side in pixels, at which microns/pixel, and how much tissue a tile needs.

    `fallback_mpp` is used only for slides that do not record their resolution.
    """

    tile_size: int = 224
    target_mpp: float = 0.5
    tissue_threshold: float = 0.5
    fallback_mpp: float | None = None

    def __post_init__(self) -> None:
        try:  # accept config values such as "0.5" or 224.0, store canonical types
            for name, cast in (("target_mpp", float), ("tissue_threshold", float)):
                object.__setattr__(self, name, cast(getattr(self, name)))
            if self.fallback_mpp is not None:
                object.__setattr__(self, "fallback_mpp", float(self.fallback_mpp))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"TilingSpec: non-numeric setting ({exc})") from exc
        if int(self.tile_size) != self.tile_size or self.tile_size < 1:
            raise ValueError(f"TilingSpec: tile_size must be a positive integer, got {self.tile_size}")
        if not (math.isfinite(self.target_mpp) and self.target_mpp > 0):
            raise ValueError(f"TilingSpec: target_mpp must be > 0, got {self.target_mpp}")
        if not 0.0 <= self.tissue_threshold <= 1.0:
            raise ValueError(f"TilingSpec: tissue_threshold must be in [0, 1], got {self.tissue_threshold}")
        if self.fallback_mpp is not None and not (math.isfinite(self.fallback_mpp) and self.fallback_mpp > 0):
            raise ValueError(f"TilingSpec: fallback_mpp must be > 0 or None, got {self.fallback_mpp}")


def slide_mpp(slide: Slide, spec: TilingSpec) -> float:
    """The slide's level-0 mpp, else `spec.fallback_mpp`, else a ValueError saying how to fix it."""
    if slide.mpp is not None:
        return slide.mpp
    if spec.fallback_mpp is not None:
        return float(spec.fallback_mpp)
    raise ValueError(
        f"{slide.path}: the slide does not record its microns per pixel (mpp); "
        f"set fallback_mpp (e.g. TilingSpec(fallback_mpp=0.25)) to tile it at target_mpp={spec.target_mpp}"
    )


def tile_footprint(slide: Slide, spec: TilingSpec) -> int:
    """Side of one tile in level-0 pixels."""
    return max(1, round(spec.tile_size * spec.target_mpp / slide_mpp(slide, spec)))


def tissue_fractions(mask: np.ndarray, mask_ds: float, coords: np.ndarray, footprint: int) -> np.ndarray:
    """Fraction of tissue-mask pixels inside each level-0 square (x, y, footprint), via an integral image."""
    h, w = mask.shape
    integral = np.zeros((h + 1, w + 1), dtype=np.int64)
    integral[1:, 1:] = np.cumsum(np.cumsum(mask, axis=0, dtype=np.int64), axis=1)
    x0 = np.clip(np.floor(coords[:, 0] / mask_ds).astype(np.int64), 0, w - 1)
    y0 = np.clip(np.floor(coords[:, 1] / mask_ds).astype(np.int64), 0, h - 1)
    x1 = np.clip(np.ceil((coords[:, 0] + footprint) / mask_ds).astype(np.int64), x0 + 1, w)
    y1 = np.clip(np.ceil((coords[:, 1] + footprint) / mask_ds).astype(np.int64), y0 + 1, h)
    inside = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return inside / ((x1 - x0) * (y1 - y0))


def tile_coordinates(slide: Slide, spec: TilingSpec) -> np.ndarray:
    """(N, 2) int64 level-0 (x, y) top-left corners of the tissue tiles, row-major (by y, then x).

    Non-overlapping grid of whole tiles inside the slide; a tile is kept when its tissue fraction
    (from a low-resolution tissue mask) is >= `spec.tissue_threshold`.
    """
    footprint = tile_footprint(slide, spec)
    w0, h0 = slide.dimensions
    if footprint > w0 or footprint > h0:
        raise ValueError(
            f"{slide.path}: slide ({w0}x{h0} px) is smaller than one tile "
            f"({footprint} level-0 px = {spec.tile_size} px at {spec.target_mpp} mpp)"
        )
    ys, xs = np.meshgrid(
        np.arange(0, h0 - footprint + 1, footprint),
        np.arange(0, w0 - footprint + 1, footprint),
        indexing="ij",
    )
    grid = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.int64)  # row-major by construction
    mask_ds = max(1.0, footprint / MASK_PX_PER_TILE, max(w0, h0) / MAX_MASK_SIDE)
    mask, mask_ds = slide_tissue_mask(slide, mask_ds)
    keep = tissue_fractions(mask, mask_ds, grid, footprint) >= spec.tissue_threshold
    if not keep.any():
        raise ValueError(
            f"{slide.path}: no tissue found ({len(grid)} tiles of {footprint} level-0 px checked, "
            f"none with tissue fraction >= {spec.tissue_threshold})"
        )
    return np.ascontiguousarray(grid[keep])


def iter_tiles(
    slide: Slide, coords: np.ndarray, spec: TilingSpec, batch_size: int = 64
) -> Iterator[np.ndarray]:
    """Yield batches (b, tile_size, tile_size, 3) uint8 of the tiles at `coords`, in order.

    Pixels come from the coarsest level at or below the needed downsample, then PIL-resized
    (Lanczos) to exactly `tile_size`, so a tile always shows the same physical area.
    """
    coords = np.asarray(coords)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"{slide.path}: coords must have shape (N, 2), got {coords.shape}")
    if batch_size < 1:
        raise ValueError(f"iter_tiles: batch_size must be >= 1, got {batch_size}")
    footprint = tile_footprint(slide, spec)
    level = slide.best_level_for_downsample(footprint / spec.tile_size)
    read_side = max(1, round(footprint / slide.level_downsamples[level]))
    size = spec.tile_size
    for start in range(0, len(coords), batch_size):
        batch = np.empty((min(batch_size, len(coords) - start), size, size, 3), dtype=np.uint8)
        for i, (x, y) in enumerate(coords[start : start + batch_size]):
            region = slide.read_region((int(x), int(y)), level, (read_side, read_side))
            if read_side != size:
                region = np.asarray(Image.fromarray(region).resize((size, size), Image.Resampling.LANCZOS))
            batch[i] = region
        yield batch
