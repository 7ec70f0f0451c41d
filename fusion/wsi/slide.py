"""`Slide`: a thin, typed wrapper over `tiffslide.TiffSlide`.

Why a wrapper: every read returns RGB uint8 numpy (never PIL, never RGBA), the microns-per-pixel is
one property (`None` when the file does not say), and every failure is a `ValueError` that names
the file — so a bad slide in a cohort of thousands is found by name, not by a stack trace.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import TracebackType

import numpy as np

# Formats tiffslide reads (OME-TIFF and generic pyramidal TIFF fall under .tif / .tiff).
SLIDE_SUFFIXES: tuple[str, ...] = (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".qptiff")

_MPP_KEYS = ("tiffslide.mpp-x", "openslide.mpp-x")


def to_rgb(arr: np.ndarray) -> np.ndarray:
    """(H, W, C) array of any depth -> (H, W, 3) uint8; transparent pixels become white (background)."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    channels = arr.shape[-1]
    if channels == 1:
        return np.repeat(arr, 3, axis=-1)
    if channels == 4:
        rgb, alpha = arr[..., :3].astype(np.float32), arr[..., 3:4].astype(np.float32) / 255.0
        return np.round(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return np.ascontiguousarray(arr[..., :3])


class Slide:
    """A whole-slide image opened read-only; use as a context manager (`with Slide(p) as s:`)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"{self.path}: slide file not found")
        try:
            import tiffslide

            self._slide = tiffslide.TiffSlide(self.path)
            # Touch the metadata now, so a truncated or non-slide file fails here, by name.
            _ = self._slide.properties, self._slide.level_dimensions
        except Exception as exc:  # tifffile / zarr raise many types for a broken file
            raise ValueError(
                f"{self.path}: not a readable whole-slide image ({type(exc).__name__}: {exc})"
            ) from exc

    # ---- metadata -------------------------------------------------------------------------------
    @property
    def properties(self) -> dict[str, object]:
        return dict(self._slide.properties)

    @property
    def mpp(self) -> float | None:
        """Level-0 microns per pixel, or None when the file does not record a usable value."""
        props = self._slide.properties
        for key in _MPP_KEYS:
            value = props.get(key)
            if value is None:
                continue
            try:
                mpp = float(value)
            except (TypeError, ValueError):
                continue
            if math.isfinite(mpp) and mpp > 0:
                return mpp
        return None

    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height) of level 0."""
        w, h = self._slide.dimensions
        return int(w), int(h)

    @property
    def level_count(self) -> int:
        return int(self._slide.level_count)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        return tuple((int(w), int(h)) for w, h in self._slide.level_dimensions)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        return tuple(float(d) for d in self._slide.level_downsamples)

    def best_level_for_downsample(self, downsample: float) -> int:
        """The coarsest level whose downsample is at or below `downsample` (0.1% rounding slack)."""
        best = 0
        for level, ds in enumerate(self.level_downsamples):
            if ds <= downsample * 1.001:
                best = level if ds >= self.level_downsamples[best] else best
        return best

    # ---- pixels ---------------------------------------------------------------------------------
    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 (h, w, 3) of `size` (w, h) pixels at `level`, top-left at level-0 `location` (x, y).

        Parts outside the slide are padded (black, as tiffslide does)."""
        if not 0 <= level < self.level_count:
            raise ValueError(f"{self.path}: level {level} out of range (slide has {self.level_count})")
        try:
            arr = self._slide.read_region(
                (int(location[0]), int(location[1])), level, (int(size[0]), int(size[1])), as_array=True
            )
        except Exception as exc:
            raise ValueError(
                f"{self.path}: cannot read region at {tuple(location)} level {level} size {tuple(size)} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        return to_rgb(arr)

    def read_level(self, level: int, max_pixels_per_read: int = 2**24) -> np.ndarray:
        """A whole level as RGB uint8, read in horizontal strips so no single read is huge."""
        w, h = self.level_dimensions[level]
        ds = self.level_downsamples[level]
        rows = max(1, max_pixels_per_read // max(w, 1))
        strips = [
            self.read_region((0, round(y * ds)), level, (w, min(rows, h - y))) for y in range(0, h, rows)
        ]
        return np.concatenate(strips, axis=0)

    # ---- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        self._slide.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"Slide({str(self.path)!r}, dimensions={self.dimensions}, mpp={self.mpp}, "
            f"levels={self.level_count})"
        )
