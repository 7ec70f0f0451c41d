"""Tile maps as PNG: a mosaic of tile images (Pillow), or tile squares on a slide or its plane (matplotlib).

Plain data in, one PNG out. Attention is drawn with a sequential colour map from 0; attributions with
a diverging one centred on 0 (red raises the target, blue lowers it).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.colors import Colormap, Normalize  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from fusion.attribution.png_canvas import colour_bar, coloured, font, save, with_title  # noqa: E402

#: at most this many tiles in a mosaic (the highest-ranked ones: a tile folder has no layout to keep)
MOSAIC_MAX_TILES = 64
BORDER = 4  # mosaic border width, in pixels
MOSAIC_TILE_PX = 128  # tiles are enlarged (nearest neighbour) to about this size (room for a file name)
CAPTION_FONT = 11


def colour_range(values: np.ndarray, diverging: bool) -> tuple[str, float, float]:
    """(colour map name, low, high): attention viridis over [0, max]; attribution RdBu_r over +-max |v|."""
    top = float(np.nanmax(np.abs(values))) if values.size else 1.0
    top = top if top > 0 else 1.0
    return ("RdBu_r", -top, top) if diverging else ("viridis", 0.0, top)


def colour_scale(values: np.ndarray, diverging: bool) -> tuple[Colormap, Normalize]:
    """`colour_range` as a matplotlib colour map and norm."""
    name, low, high = colour_range(values, diverging)
    return plt.get_cmap(name), Normalize(low, high)


def mosaic_order(values: np.ndarray, diverging: bool, limit: int = MOSAIC_MAX_TILES) -> np.ndarray:
    """Which tiles a mosaic shows, in reading order: by value, highest first; beyond `limit` the top
    `limit` (attention) or the most positive and most negative halves (attribution)."""
    order = np.argsort(-values, kind="stable")
    if len(order) <= limit:
        return order
    if not diverging:
        return order[:limit]
    half = limit // 2
    return np.concatenate([order[:half], order[-(limit - half) :]])


def mosaic_png(
    images: list[np.ndarray], values: np.ndarray, labels: list[str], title: str, path: Path, diverging: bool
) -> Path:
    """Tiles (each (s, s, 3) uint8, all one size) in a grid, in the given order, each framed in the
    colour of its value and captioned with its label and value (drawn with Pillow: `png_canvas`)."""
    cmap, low, high = colour_range(values, diverging)
    zoom = max(1, MOSAIC_TILE_PX // images[0].shape[0])
    tile = images[0].shape[0] * zoom
    side = tile + 2 * BORDER
    caption = 2 * (CAPTION_FONT + 5) + 4  # two lines: the name and the value
    columns = min(8, len(images))
    rows = math.ceil(len(images) / columns)
    body = Image.new("RGB", (columns * side, rows * (side + caption)), "white")
    draw = ImageDraw.Draw(body)
    frames = coloured(np.asarray(values, dtype=float), cmap, low, high)
    for i, (image, value, label) in enumerate(zip(images, values, labels, strict=True)):
        r, c = divmod(i, columns)
        x, y = c * side, r * (side + caption)
        draw.rectangle((x, y, x + side - 1, y + side - 1), fill=tuple(int(v * 255) for v in frames[i]))
        body.paste(
            Image.fromarray(image).resize((tile, tile), Image.Resampling.NEAREST), (x + BORDER, y + BORDER)
        )
        draw.text((x + 2, y + side + 1), f"{label}\n{value:.3g}", fill="black", font=font(CAPTION_FONT))
    return save(with_title(body, title, colour_bar(body.height, cmap, low, high)), path)


def slide_map_png(
    coords: np.ndarray,
    footprint: float,
    values: np.ndarray,
    title: str,
    path: Path,
    diverging: bool,
    thumbnail: tuple[np.ndarray, float] | None = None,
) -> Path:
    """Each tile a square of side `footprint` at its level-0 (x, y) corner, coloured by its value; over
    the slide `thumbnail` ``(rgb, level-0 px per thumbnail px)`` when given, else on a blank plane."""
    cmap, norm = colour_scale(values, diverging)
    fig, ax = plt.subplots(figsize=(7.0, 6.0))
    if thumbnail is not None:
        image, downsample = thumbnail
        height, width = image.shape[0] * downsample, image.shape[1] * downsample
        ax.imshow(image, extent=(0, width, height, 0))
    squares = [Rectangle((float(x), float(y)), footprint, footprint) for x, y in coords]
    patches = PatchCollection(squares, cmap=cmap, norm=norm, alpha=0.55 if thumbnail is not None else 1.0)
    patches.set_array(np.asarray(values, dtype=float))
    patches.set_edgecolor("none")
    ax.add_collection(patches)
    if thumbnail is None:
        low, high = coords.min(axis=0), coords.max(axis=0) + footprint
        pad = 0.02 * float(max(high - low)) + footprint
        ax.set_xlim(low[0] - pad, high[0] + pad)
        ax.set_ylim(high[1] + pad, low[1] - pad)  # image convention: y grows downwards
    ax.set_aspect("equal")
    ax.set_xlabel("x (level-0 px)")
    ax.set_ylabel("y (level-0 px)")
    ax.set_title(title, fontsize=9)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.04)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
