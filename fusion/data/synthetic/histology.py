"""H&E-like histology tiles (RGB PNG) whose nuclei follow the hidden tumour state.

Eosin-pink stroma with fibre texture; haematoxylin-purple nuclei. In tumour tiles the nuclear
density follows proliferation, and nuclear size, pleomorphism and darkness follow
aggressiveness. About a quarter of the tiles are stroma (sparse, small, elongated fibroblast
nuclei), so a patient-level model has to pool over tiles (multiple-instance learning).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy.special import expit

from fusion.data.synthetic.latent import patient_rng

EOSIN_RGB = np.array([236.0, 165.0, 198.0])
HAEMATOXYLIN_RGB = np.array([72.0, 36.0, 122.0])
STROMA_TILE_FRACTION = 0.25
REFERENCE_TILE = 32


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth fibre-like texture in [-1, 1] from a few random plane waves."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    tex = np.zeros((size, size))
    for _ in range(4):
        fx, fy = rng.normal(0.0, 4.0, size=2)
        tex += np.sin(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi))
    return tex / 4.0


def _nuclei_alpha(
    size: int, n: int, radius: float, pleomorphism: float, elongation: float, rng: np.random.Generator
) -> np.ndarray:
    """Opacity map of `n` elliptic nuclei with soft edges (max over nuclei)."""
    if n == 0:
        return np.zeros((size, size))
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    cy, cx = rng.uniform(0, size, size=(2, n, 1, 1))
    theta = rng.uniform(0, np.pi, size=(n, 1, 1))
    ra = radius * np.exp(rng.normal(0.0, pleomorphism, size=(n, 1, 1))) * elongation
    rb = radius * np.exp(rng.normal(0.0, pleomorphism, size=(n, 1, 1))) / np.sqrt(elongation)
    dx, dy = xx - cx, yy - cy
    u = (dx * np.cos(theta) + dy * np.sin(theta)) / ra
    v = (-dx * np.sin(theta) + dy * np.cos(theta)) / np.maximum(rb, 0.5)
    alpha = np.clip((1.0 - (u**2 + v**2)) * 2.5, 0.0, 1.0)
    return alpha.max(axis=0)


def render_tile(
    size: int, proliferation: float, atypia: float, stroma: bool, rng: np.random.Generator
) -> np.ndarray:
    """One (size, size, 3) uint8 tile. `proliferation` and `atypia` are in [0, 1]."""
    scale = size / REFERENCE_TILE
    if stroma:
        n = rng.poisson(3.0 * scale**2)
        alpha = _nuclei_alpha(size, n, 1.0 * scale, 0.1, 3.0, rng) * 0.6
    else:
        n = rng.poisson((4.0 + 18.0 * proliferation) * scale**2)
        radius = (1.2 + 2.0 * atypia) * scale
        alpha = _nuclei_alpha(size, n, radius, 0.08 + 0.3 * atypia, 1.0 + 0.5 * rng.uniform(), rng)
        alpha *= 0.6 + 0.35 * atypia
    background = EOSIN_RGB[None, None, :] + 14.0 * _texture(size, rng)[..., None] * np.array([0.4, 1.0, 0.6])
    chromatin = 0.85 + 0.15 * rng.uniform(size=(size, size))
    alpha = (alpha * chromatin)[..., None]
    img = background * (1 - alpha) + HAEMATOXYLIN_RGB * alpha + rng.normal(0.0, 4.0, size=(size, size, 3))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def write_tiles(
    folder: Path, seed: int, index: int, latents: dict[str, float], n_tiles: int, tile_size: int
) -> list[tuple[Path, bool]]:
    """Write `tile_0000.png` ... for one patient; returns (file written, tumour) per tile: the truth
    tile explanations are checked against (True = tumour tile, False = stroma)."""
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("tile_*.png"):  # a rerun must not leave extra tiles behind
        stale.unlink()
    rng = patient_rng(seed, index, "histology")
    z = rng.standard_normal(2)
    proliferation = float(expit(1.2 * (latents["proliferation"] + 0.5 * z[0])))
    atypia = float(expit(1.2 * (latents["aggressiveness"] + 0.5 * z[1])))
    files = []
    for t in range(n_tiles):
        stroma = bool(rng.uniform() < STROMA_TILE_FRACTION)
        tile = render_tile(tile_size, proliferation, atypia, stroma, rng)
        path = folder / f"tile_{t:04d}.png"
        Image.fromarray(tile).save(path, compress_level=1)
        files.append((path, not stroma))
    return files
