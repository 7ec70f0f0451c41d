"""Test helper: write small pyramidal TIFFs that tiffslide opens like a real whole-slide image.

Level 0 is the main page; lower levels are SubIFDs (each half the size of the one above), tiled
and uncompressed (no imagecodecs needed). The resolution tags carry the mpp, which tiffslide
reports as `tiffslide.mpp-x`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from PIL import Image


def write_pyramidal_tiff(
    path: str | Path, rgb: np.ndarray, mpp: float | None = 0.25, levels: int = 3, tile: int = 256
) -> Path:
    """Write `rgb` (H, W, 3) uint8 as a `levels`-level tiled pyramid; `mpp=None` leaves resolution out."""
    path = Path(path)
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"write_pyramidal_tiff: expected (H, W, 3) uint8, got {rgb.shape}")
    if tile % 16:
        raise ValueError(f"write_pyramidal_tiff: tile must be a multiple of 16, got {tile}")
    pyramid = [rgb]
    for _ in range(1, levels):
        h, w = pyramid[-1].shape[:2]
        if min(h, w) < 2:
            break
        pyramid.append(
            np.asarray(Image.fromarray(pyramid[-1]).resize((w // 2, h // 2), Image.Resampling.BOX))
        )
    options: dict[str, object] = {"photometric": "rgb", "tile": (tile, tile), "compression": None}
    resolution: dict[str, object] = {}
    if mpp is not None:
        per_cm = 1e4 / mpp
        resolution = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path) as tif:
        tif.write(pyramid[0], subifds=len(pyramid) - 1, **resolution, **options)
        for level, image in enumerate(pyramid[1:], start=1):
            extra = {}
            if mpp is not None:
                per_cm = 1e4 / (mpp * 2**level)
                extra = {"resolution": (per_cm, per_cm), "resolutionunit": "CENTIMETER"}
            tif.write(image, subfiletype=1, **extra, **options)
    return path


def he_like_image(width: int = 2048, height: int = 1536, seed: int = 0) -> np.ndarray:
    """White glass with one pink, textured, H&E-like elliptical blob in the middle-left."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 242, dtype=np.float32) + rng.normal(0, 3, (height, width, 3))
    yy, xx = np.mgrid[0:height, 0:width]
    blob = ((xx - width * 0.4) / (width * 0.25)) ** 2 + ((yy - height * 0.5) / (height * 0.3)) ** 2 <= 1.0
    pink = np.array([225, 140, 185], dtype=np.float32) + rng.normal(0, 12, (height, width, 3))
    nuclei = rng.random((height, width)) < 0.05
    pink[nuclei] = np.array([110, 60, 150], dtype=np.float32)
    img[blob] = pink[blob]
    return np.clip(img, 0, 255).astype(np.uint8)


def blob_mask(width: int = 2048, height: int = 1536) -> np.ndarray:
    """The ground-truth (H, W) bool mask of `he_like_image`'s blob."""
    yy, xx = np.mgrid[0:height, 0:width]
    return ((xx - width * 0.4) / (width * 0.25)) ** 2 + ((yy - height * 0.5) / (height * 0.3)) ** 2 <= 1.0
