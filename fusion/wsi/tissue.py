"""Tissue detection on a low-resolution view of a slide.

Stained tissue is coloured (high HSV saturation); glass is near-white and grey (low saturation).
So: Otsu's threshold on saturation (floored, so an empty slide's noise is not called tissue),
minus near-white pixels, then optional removal of specks and filling of holes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from fusion.wsi.slide import Slide


def otsu_threshold(
    values: np.ndarray, bins: int = 256, value_range: tuple[float, float] = (0.0, 1.0)
) -> float:
    """Otsu's threshold: the cut maximising between-class variance of a 1-D sample (numpy only)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("otsu_threshold: empty input")
    hist, edges = np.histogram(values, bins=bins, range=value_range)
    centers = (edges[:-1] + edges[1:]) / 2.0
    weight0 = np.cumsum(hist).astype(np.float64)  # pixels at or below each cut
    weight1 = weight0[-1] - weight0
    sum0 = np.cumsum(hist * centers)
    mean0 = np.divide(sum0, weight0, out=np.zeros_like(sum0), where=weight0 > 0)
    mean1 = np.divide(sum0[-1] - sum0, weight1, out=np.zeros_like(sum0), where=weight1 > 0)
    between = weight0 * weight1 * (mean0 - mean1) ** 2
    if not np.any(between > 0):  # constant image: no split exists
        return float(values[0])
    return float(edges[1:][int(np.argmax(between))])


def saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation in [0, 1]: (max - min) / max per pixel, 0 for black."""
    rgb = np.asarray(rgb, dtype=np.float32)
    cmax, cmin = rgb.max(axis=-1), rgb.min(axis=-1)
    return np.divide(cmax - cmin, cmax, out=np.zeros_like(cmax), where=cmax > 0)


def tissue_mask(
    rgb: np.ndarray,
    min_saturation: float = 0.05,
    white_level: int = 220,
    min_object_px: int = 16,
    fill_holes: bool = True,
) -> np.ndarray:
    """Boolean (H, W) tissue mask of an RGB uint8 (H, W, 3) image.

    `min_saturation` floors the Otsu cut so a blank slide yields no tissue; pixels whose three
    channels are all >= `white_level` are background; connected components smaller than
    `min_object_px` pixels are dropped (0 disables) and holes inside tissue filled.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"tissue_mask: expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    sat = saturation(rgb)
    cut = max(otsu_threshold(sat), min_saturation)
    mask = (sat > cut) & ~np.all(rgb >= white_level, axis=-1)
    if min_object_px > 0 or fill_holes:
        from scipy import ndimage

        if min_object_px > 0 and mask.any():
            labels, n = ndimage.label(mask)
            sizes = np.bincount(labels.ravel(), minlength=n + 1)
            keep = sizes >= min_object_px
            keep[0] = False
            mask = keep[labels]
        if fill_holes:
            mask = ndimage.binary_fill_holes(mask)
    return mask.astype(bool)


def read_thumbnail(
    slide: Slide, downsample: float, max_pixels_per_read: int = 2**24
) -> tuple[np.ndarray, float]:
    """RGB view of the whole slide at about `downsample` (level-0 px per thumbnail px).

    Reads the best pyramid level in strips and shrinks each with PIL, so even a slide without a
    pyramid never needs its full level 0 in memory. Returns (image, actual downsample).
    """
    downsample = max(float(downsample), 1.0)
    level = slide.best_level_for_downsample(downsample)
    level_ds = slide.level_downsamples[level]
    lw, lh = slide.level_dimensions[level]
    w0, h0 = slide.dimensions
    out_w, out_h = max(1, round(w0 / downsample)), max(1, round(h0 / downsample))
    scale = out_h / lh  # thumbnail rows per level row
    rows = max(1, max_pixels_per_read // max(lw, 1))
    strips, done = [], 0
    for y in range(0, lh, rows):
        strip = slide.read_region((0, round(y * level_ds)), level, (lw, min(rows, lh - y)))
        target_h = round(min(y + rows, lh) * scale) - done
        if target_h <= 0:
            continue
        img = Image.fromarray(strip).resize((out_w, target_h), Image.Resampling.BOX)
        strips.append(np.asarray(img))
        done += target_h
    thumb = np.concatenate(strips, axis=0)
    return thumb, w0 / out_w


def slide_tissue_mask(slide: Slide, downsample: float = 16.0, **mask_kwargs: Any) -> tuple[np.ndarray, float]:
    """Tissue mask of a slide at about `downsample`; returns (mask (h, w) bool, actual downsample)."""
    thumb, actual = read_thumbnail(slide, downsample)
    return tissue_mask(thumb, **mask_kwargs), actual
