"""`write_tile_maps`: one patient's tile explanations as files under ``<out_dir>/tiles/``.

    <stem>.csv          the `tile_attributions` frame (one row per tile and (head, target))
    <stem>.png          attention
    <stem>_<head>.png   attribution of the head's `primary_target` (grade: the highest class's probability)

``<stem>`` is the patient id for the modality named ``histology`` (the default), ``<pid>_<modality>``
for any other name, so two histology modalities never overwrite each other. The picture depends on
the input: a **tile mosaic** for tile folders (the tiles themselves, highest value first, framed in
the colour of their value; at most `MOSAIC_MAX_TILES`), and for feature bags a **slide map**: each
tile a square at its stored level-0 coordinates, over the slide's thumbnail when the slide is found
(the feature file's ``source`` metadata, looked for as an absolute path, next to the feature file, in
its parent folder and in `slide_dirs`), else on a blank plane (several slides side by side).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from fusion.attribution.context import PatientContext
from fusion.attribution.tile_figures import mosaic_order, mosaic_png, slide_map_png
from fusion.io.feature_files import read_header
from fusion.io.tiles import read_tile_image
from fusion.modalities.histology import HistologyModality
from fusion.wsi import SLIDE_SUFFIXES, Slide
from fusion.wsi.tissue import read_thumbnail

#: tiles are read at this size (one size for the grid), then enlarged by nearest neighbour (`tile_figures`)
TILE_READ_PX = 64
THUMBNAIL_PX = 1024  # the slide thumbnail's long side


def write_tile_maps(
    frame: pd.DataFrame,
    ctx: PatientContext,
    name: str,
    modality: HistologyModality,
    out_dir: str | Path,
    slide_dirs: Sequence[str | Path] = (),
) -> list[Path]:
    """Write the CSV and the PNGs above for one patient's `tile_attributions` frame; returns the paths
    (nothing for an empty frame or a modality that is not histology)."""
    if frame.empty or not isinstance(modality, HistologyModality):
        return []
    folder = Path(out_dir) / "tiles"
    folder.mkdir(parents=True, exist_ok=True)
    stem = ctx.patient_id if name == "histology" else f"{ctx.patient_id}_{name}"
    written = [folder / f"{stem}.csv"]
    frame.to_csv(written[0], index=False)
    first = frame[["head", "target"]].iloc[0]
    tiles = frame[(frame["head"] == first["head"]) & (frame["target"] == first["target"])]
    maps = [(tiles, "attention", f"{stem}.png", f"{ctx.patient_id}: {name} attention", False)]
    for head_name, head in ctx.heads.items():
        rows = frame[(frame["head"] == head_name) & (frame["target"] == head.primary_target)]
        if not rows.empty:
            title = f"{ctx.patient_id}: {name} attribution of {head.primary_target}"
            maps.append((rows, "attribution", f"{stem}_{head_name}.png", title, True))
    ref = ctx.refs.get(name)
    if modality.input == "tiles":
        read = _tile_reader(ref)
        for rows, column, file_name, title, diverging in maps:
            values = rows[column].to_numpy(dtype=float)
            order = mosaic_order(values, diverging)
            names = [str(rows["tile"].iloc[i]) for i in order]
            shown = [read(n) for n in names]
            written.append(mosaic_png(shown, values[order], names, title, folder / file_name, diverging))
        return written
    coords = tiles[["x", "y"]].to_numpy(dtype=float)
    slides = tiles["slide_index"].to_numpy(dtype=int)
    metadata = read_header(Path(str(ref))).metadata if ref is not None else {}
    footprint = _footprint(metadata, coords)
    thumbnail = _thumbnail(metadata, ref, slide_dirs) if len(set(slides.tolist())) == 1 else None
    if thumbnail is None:
        coords = _side_by_side(coords, slides, footprint)
    for rows, column, file_name, title, diverging in maps:
        values = rows[column].to_numpy(dtype=float)  # every map lists the tiles in the same order
        path = folder / file_name
        written.append(slide_map_png(coords, footprint, values, title, path, diverging, thumbnail))
    return written


def _tile_reader(ref: object) -> Callable[[str], np.ndarray]:
    """Tile name -> its image at `TILE_READ_PX`, each file read at most once (the maps show the top tiles of
    different rankings); grey squares stand in when no folder is recorded."""
    cache: dict[str, np.ndarray] = {}

    def read(tile: str) -> np.ndarray:
        if tile not in cache:
            cache[tile] = (
                np.full((TILE_READ_PX, TILE_READ_PX, 3), 200, dtype=np.uint8)
                if ref is None
                else read_tile_image(Path(str(ref)) / tile, TILE_READ_PX)
            )
        return cache[tile]

    return read


def _thumbnail(
    metadata: dict[str, str], ref: object, slide_dirs: Sequence[str | Path]
) -> tuple[np.ndarray, float] | None:
    """The thumbnail of the slide the feature file came from, when it is found (`_find_slide`)."""
    slide = _find_slide(metadata, Path(str(ref)), slide_dirs) if ref is not None else None
    if slide is None:
        return None
    with Slide(slide) as opened:
        return read_thumbnail(opened, max(opened.dimensions) / THUMBNAIL_PX)


def _footprint(metadata: dict[str, str], coords: np.ndarray) -> float:
    """A tile's side in level-0 pixels: tile_size * mpp / slide_mpp when the file records them, else the
    smallest step between stored coordinates (1 when there is none)."""
    try:
        return float(metadata["tile_size"]) * float(metadata["mpp"]) / float(metadata["slide_mpp"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        steps = [np.diff(np.unique(coords[:, axis])) for axis in (0, 1)]
        positive = np.concatenate(steps)
        positive = positive[positive > 0]
        return float(positive.min()) if positive.size else 1.0


def _find_slide(
    metadata: dict[str, str], feature_file: Path, slide_dirs: Sequence[str | Path]
) -> Path | None:
    """The slide a feature file was extracted from, when its ``source`` is a slide that still exists."""
    source = metadata.get("source", "")
    if not source.lower().endswith(SLIDE_SUFFIXES) or ";" in source:
        return None
    candidates = [Path(source)] if Path(source).is_absolute() else []
    folders = [feature_file.parent, feature_file.parent.parent, *map(Path, slide_dirs)]
    candidates += [folder / Path(source).name for folder in folders]
    return next((c for c in candidates if c.is_file()), None)


def _side_by_side(coords: np.ndarray, slides: np.ndarray, footprint: float) -> np.ndarray:
    """Coordinates with each slide shifted right of the previous one (slide_index order)."""
    out = coords.copy()
    offset = 0.0
    for index in sorted(set(slides.tolist())):
        rows = slides == index
        out[rows, 0] += offset - coords[rows, 0].min()
        offset = float(out[rows, 0].max()) + 4 * footprint
    return out
