"""Whole-slide images: open a slide, find its tissue, tile it at a fixed microns-per-pixel.

with Slide("case.svs") as slide:
    coords = tile_coordinates(slide, TilingSpec(tile_size=224, target_mpp=0.5))
    for batch in iter_tiles(slide, coords, TilingSpec(), batch_size=64):  # (b, 224, 224, 3) uint8
        ...
"""

from fusion.wsi.slide import SLIDE_SUFFIXES, Slide
from fusion.wsi.tiling import TilingSpec, iter_tiles, tile_coordinates

__all__ = ["SLIDE_SUFFIXES", "Slide", "TilingSpec", "iter_tiles", "tile_coordinates"]
