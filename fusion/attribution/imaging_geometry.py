"""Moving a volume between grids by world coordinates, and the scan a saliency map is drawn back onto.

A map computed on the model's input grid (`ImagingModality.load_on_grid`: RAS, `pixdim`, cropped or
resized) is resampled onto the scan's own grid (`read_scan`: the file the manifest names, as stored)
voxel by voxel: each scan voxel's centre is carried into world (RAS mm) coordinates by the scan's
affine, and from there into a continuous index of the source grid. Outside the source's field of view
(beyond the outer faces of its edge voxels) the result is 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import nibabel as nib
import numpy as np
from nibabel.spatialimages import SpatialImage
from scipy.ndimage import map_coordinates

from fusion.modalities.imaging import ImagingModality
from fusion.modalities.imaging_roi import ImagingRef
from fusion.modalities.imaging_transforms import find_sequence, is_nifti, read_volume

#: scan voxels resampled per chunk of slices (bounds the coordinate arrays' memory, ~200 MB)
_CHUNK_VOXELS = 1 << 23


@dataclass(frozen=True)
class Scan:
    """The scan a map is drawn onto: its voxels as stored (X, Y, Z), voxel -> world RAS affine, and the
    NIfTI header to copy (None for a DICOM series)."""

    path: Path
    image: np.ndarray
    affine: np.ndarray
    header: Any | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        x, y, z = self.image.shape
        return int(x), int(y), int(z)


def scan_path(modality: ImagingModality, ref: Any) -> Path:
    """The file or DICOM folder whose grid maps are drawn on: the scan itself, or for `sequences` the first
    sequence present in the folder (the grid `load` aligns the other sequences to)."""
    path = Path(ref.image if isinstance(ref, ImagingRef) else ref)
    if modality.sequences is None:
        return path
    for sequence in modality.sequences:
        found = find_sequence(path, sequence)
        if found is not None:
            return found
    raise ValueError(f"'{path}': none of the sequences {modality.sequences} found")


def read_scan(modality: ImagingModality, ref: Any) -> Scan:
    """The scan as stored (NIfTI voxel order and header affine; a DICOM series as (columns, rows, slices) with
    its RAS affine, as `read_volume`, MONAI and nibabel place it). ValueError naming the file if broken."""
    path = scan_path(modality, ref)
    volume = read_volume(path, series=modality.series, kind=modality.kind)
    header = cast(SpatialImage, nib.load(str(path))).header if is_nifti(path) else None
    affine = np.asarray(volume.affine, dtype=float)
    return Scan(path, volume.as_tensor()[0].numpy(), affine, header)


def resample(
    volume: np.ndarray,
    source_affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: tuple[int, int, int],
    order: int = 1,
) -> np.ndarray:
    """`volume` (on the grid of `source_affine`) sampled at every voxel centre of the target grid: float32
    (target_shape); linear (`order` 1) or nearest (0, for masks); 0 outside the source's field of view."""
    volume = np.asarray(volume, dtype=np.float32)
    to_source = np.linalg.solve(np.asarray(source_affine, float), np.asarray(target_affine, float))
    out = np.zeros(target_shape, dtype=np.float32)
    nx, ny, nz = target_shape
    step = max(1, _CHUNK_VOXELS // max(1, nx * ny))
    i, j = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float), indexing="ij")
    extent = np.asarray(volume.shape, dtype=float)[:, None]
    for k0 in range(0, nz, step):
        k = np.arange(k0, min(k0 + step, nz), dtype=float)
        ijk = np.stack(
            [
                np.repeat(i[..., None], len(k), 2),
                np.repeat(j[..., None], len(k), 2),
                np.broadcast_to(k, i.shape + k.shape),
            ]
        ).reshape(3, -1)
        src = to_source[:3, :3] @ ijk + to_source[:3, 3:4]
        inside = np.all((src >= -0.5) & (src <= extent - 0.5), axis=0)
        values = map_coordinates(volume, src, order=order, mode="nearest")
        out[:, :, k0 : k0 + len(k)] = np.where(inside, values, 0.0).reshape(nx, ny, len(k))
    return out
