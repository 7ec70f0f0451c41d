"""Tile sources for feature extraction: one patient's tiles, read in index ranges, with coordinates.

Two kinds: a whole slide read through `fusion.wsi` (tissue tiles at a target resolution), or a
folder of tile images whose level-0 coordinates are parsed from names like ``tile_x{X}_y{Y}.png``
(else the tile index i becomes (i, 0)). Sources are picklable and open their files lazily, so each
DataLoader worker reads on its own.
"""

from __future__ import annotations

import contextlib
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from fusion.io.tiles import TILE_SUFFIXES, read_tile_image, tile_files
from fusion.wsi import SLIDE_SUFFIXES

_COORD_NAME = re.compile(r"(?:^|[^a-z0-9])x(\d+)[_\-]y(\d+)(?:[^0-9]|$)", re.IGNORECASE)


class TileSource(ABC):
    """Tiles of one patient: `coords` (N, 2) int64 level-0 (x, y) and `read(start, stop)` -> uint8 RGB."""

    path: Path
    coords: np.ndarray
    tile_size: int

    def __len__(self) -> int:
        return int(self.coords.shape[0])

    @property
    def mpp(self) -> float | None:
        """Microns per pixel of the tiles as read, when known."""
        return None

    def metadata(self) -> dict[str, Any]:
        return {"source": self.path.name, "mpp": self.mpp}

    @abstractmethod
    def read(self, start: int, stop: int) -> np.ndarray:
        """Tiles [start, stop) as uint8 (b, tile_size, tile_size, 3); ValueError naming the bad file."""


def parse_coords(names: list[str]) -> np.ndarray:
    """(x, y) from names like ``tile_x512_y1024.png`` when every name has them and they are unique,
    else the tile index as (i, 0): coordinates must identify tiles, so partial parses are not mixed in."""
    parsed = [_COORD_NAME.search(Path(n).stem) for n in names]
    matches = [m for m in parsed if m is not None]
    if parsed and len(matches) == len(parsed):
        coords = np.array([[int(m.group(1)), int(m.group(2))] for m in matches], dtype=np.int64)
        if len({tuple(c) for c in coords.tolist()}) == len(names):
            return coords
    return np.stack([np.arange(len(names)), np.zeros(len(names))], axis=1).astype(np.int64)


class FolderSource(TileSource):
    """A folder of PNG/JPEG/TIF tiles, sorted by name and resized to `tile_size` when needed."""

    def __init__(self, folder: str | Path, tile_size: int):
        self.path = Path(folder)
        self.tile_size = int(tile_size)
        if not self.path.is_dir():
            raise ValueError(f"tile folder does not exist or is not a folder: {self.path}")
        self.files = tile_files(self.path)
        if not self.files:
            raise ValueError(f"no tile images ({', '.join('*' + s for s in TILE_SUFFIXES)}) in {self.path}")
        self.coords = parse_coords([f.name for f in self.files])

    def read(self, start: int, stop: int) -> np.ndarray:
        size = self.tile_size
        out = np.empty((stop - start, size, size, 3), dtype=np.uint8)
        for i, file in enumerate(self.files[start:stop]):
            out[i] = read_tile_image(file, size)
        return out


class SlideSource(TileSource):
    """Tissue tiles of a whole slide at `spec.target_mpp`, via `fusion.wsi` (tiffslide)."""

    def __init__(self, path: str | Path, spec: Any):
        from fusion.wsi import Slide, tile_coordinates

        self.path = Path(path)
        self.spec = spec
        self.tile_size = int(spec.tile_size)
        with Slide(self.path) as slide:
            self.slide_mpp = slide.mpp
            self.dimensions = tuple(int(d) for d in slide.dimensions)
            self.coords = np.asarray(tile_coordinates(slide, spec), dtype=np.int64).reshape(-1, 2)
        if len(self.coords) == 0:
            raise ValueError(f"no tissue found in slide: {self.path}")
        self._slide: Any = None

    @property
    def mpp(self) -> float | None:
        known = self.slide_mpp is not None or getattr(self.spec, "fallback_mpp", None) is not None
        return float(self.spec.target_mpp) if known else self.slide_mpp

    def metadata(self) -> dict[str, Any]:
        return {**super().metadata(), "slide_mpp": self.slide_mpp, "slide_dimensions": list(self.dimensions)}

    def read(self, start: int, stop: int) -> np.ndarray:
        from fusion.wsi import Slide, iter_tiles

        if self._slide is None:
            self._slide = Slide(self.path).__enter__()
        try:
            batches = list(
                iter_tiles(self._slide, self.coords[start:stop], self.spec, batch_size=stop - start)
            )
        except Exception as err:  # tiffslide/tifffile raise many types for a damaged slide
            raise ValueError(f"cannot read tiles {start}-{stop} of slide '{self.path}': {err}") from err
        return np.concatenate(batches, axis=0) if len(batches) != 1 else batches[0]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_slide"] = None  # an open file handle does not cross process boundaries
        return state

    def __del__(self) -> None:
        if getattr(self, "_slide", None) is not None:
            with contextlib.suppress(Exception):  # closing at interpreter shutdown is best effort
                self._slide.__exit__(None, None, None)


class MultiSource(TileSource):
    """Several slides (or tile folders) of one patient as one bag; `slide_index` names each tile's slide."""

    def __init__(self, sources: list[TileSource]):
        self.sources = sources
        self.path = sources[0].path
        self.tile_size = sources[0].tile_size
        if any(s.tile_size != self.tile_size for s in sources):
            raise ValueError("a patient's slides must be read at one tile size")
        self.coords = np.concatenate([s.coords for s in sources])
        self.slide_index = np.concatenate([np.full(len(s), i, dtype=np.int64) for i, s in enumerate(sources)])
        self.offsets = np.cumsum([0] + [len(s) for s in sources])

    @property
    def mpp(self) -> float | None:
        return self.sources[0].mpp

    def metadata(self) -> dict[str, Any]:
        return {
            "source": ";".join(s.path.name for s in self.sources),
            "mpp": self.mpp,
            "slides": [s.path.name for s in self.sources],
        }

    def read(self, start: int, stop: int) -> np.ndarray:
        parts = []
        for i, source in enumerate(self.sources):
            lo, hi = max(start, self.offsets[i]), min(stop, self.offsets[i + 1])
            if lo < hi:
                parts.append(source.read(int(lo - self.offsets[i]), int(hi - self.offsets[i])))
        return np.concatenate(parts) if len(parts) != 1 else parts[0]


def make_source(path: str | Path, tile_size: int, spec: Any | None = None) -> TileSource:
    """A folder -> FolderSource; a slide file -> SlideSource (needs `spec`, a `fusion.wsi.TilingSpec`)."""
    path = Path(path)
    if path.is_dir():
        return FolderSource(path, tile_size)
    if not path.exists():
        raise ValueError(f"file or folder does not exist: {path}")
    if path.name.lower().endswith(SLIDE_SUFFIXES):
        if spec is None:
            raise ValueError(f"'{path}' is a slide: a tiling spec is needed to tile it")
        return SlideSource(path, spec)
    raise ValueError(f"'{path}' is neither a folder of tiles nor a slide ({', '.join(SLIDE_SUFFIXES)})")
