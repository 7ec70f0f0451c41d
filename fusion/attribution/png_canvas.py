"""Small PNG pictures drawn straight with Pillow: colour-mapped arrays, captions, a colour bar.

Why not matplotlib: an explanation run writes several PNGs per patient (a slice view per imaging map, a
mosaic per tile map), and a matplotlib figure costs 0.15-0.3 s to lay out and save, more than computing
the explanation itself; composing the pixels here costs a few milliseconds. matplotlib still supplies the
colour maps (looked up as arrays, no figure).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

#: caption font size, in pixels
FONT_SIZE = 14
MARGIN = 8


def coloured(values: np.ndarray, cmap: str, low: float, high: float) -> np.ndarray:
    """(..., 3) float RGB in [0, 1] of `values` under the matplotlib colour map `cmap` over [low, high]."""
    span = high - low if high > low else 1.0
    scaled = np.clip((np.asarray(values, dtype=float) - low) / span, 0.0, 1.0)
    return np.asarray(matplotlib.colormaps[cmap](scaled))[..., :3]


def to_image(rgb: np.ndarray, size: tuple[int, int] | None = None) -> Image.Image:
    """A float RGB array in [0, 1] as an image, resized (nearest neighbour: pixels stay pixels) to (w, h)."""
    image = Image.fromarray(np.clip(np.rint(rgb * 255), 0, 255).astype(np.uint8))
    return image if size is None else image.resize(size, Image.Resampling.NEAREST)


def font(size: int = FONT_SIZE) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def colour_bar(height: int, cmap: str, low: float, high: float, width: int = 14) -> Image.Image:
    """A vertical bar, `high` at the top, with its two end values written beside it."""
    ramp = np.linspace(high, low, max(height - 2 * FONT_SIZE, 2))[:, None].repeat(width, axis=1)
    bar = to_image(coloured(ramp, cmap, low, high))
    canvas = Image.new("RGB", (width + 70, height), "white")
    canvas.paste(bar, (0, FONT_SIZE))
    draw = ImageDraw.Draw(canvas)
    draw.text((width + 4, FONT_SIZE - 2), f"{high:.3g}", fill="black", font=font(12))
    draw.text((width + 4, FONT_SIZE + bar.height - 12), f"{low:.3g}", fill="black", font=font(12))
    return canvas


def with_title(body: Image.Image, title: str, bar: Image.Image | None = None) -> Image.Image:
    """`body` under a title line, with an optional colour bar on its right."""
    top = FONT_SIZE + 2 * MARGIN
    width = body.width + (bar.width + MARGIN if bar is not None else 0) + 2 * MARGIN
    canvas = Image.new("RGB", (width, body.height + top + MARGIN), "white")
    canvas.paste(body, (MARGIN, top))
    if bar is not None:
        canvas.paste(bar.resize((bar.width, body.height)), (MARGIN + body.width + MARGIN, top))
    ImageDraw.Draw(canvas).text((MARGIN, MARGIN), title, fill="black", font=font())
    return canvas


def save(image: Image.Image, path: Path) -> Path:
    image.save(path, compress_level=1)
    return path
