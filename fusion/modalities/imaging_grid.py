"""Where the model's input grid lies in the world: the voxel -> world (RAS mm) affine of the grid that
`ImagingModality.load` returns, for maps drawn back onto the scan (`fusion.attribution.imaging`).

`load` resamples the scan to `pixdim` in RAS (the affine after Orientation and Spacing is known from
MONAI's MetaTensor) and then brings it to `spatial_size` with voxel index arithmetic only: a centre
crop/pad, a lesion-centred box (`imaging_roi.crop_around`), or a resize. Each of those maps an output
voxel index linearly onto an index of the resampled scan; `fitted_affine` composes that map with the
resampled scan's affine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def centre_crop_pad_start(size: int, target: int) -> int:
    """Index in an axis of `size` voxels of output voxel 0 after MONAI's `ResizeWithPadOrCrop` to `target`.

    MONAI crops first (centre ``size // 2``, start ``size // 2 - target // 2``), then pads symmetrically
    (``(target - size) // 2`` voxels before): a negative start is padding.
    """
    if size >= target:
        return size // 2 - target // 2
    return -((target - size) // 2)


def box_start(centre: float, target: int) -> int:
    """Index of output voxel 0 of `crop_around`'s box of `target` voxels around continuous index `centre`."""
    return math.floor(float(centre) - (target - 1) / 2.0 + 0.5)


def fitted_affine(
    affine: np.ndarray,
    shape: Sequence[int],
    spatial_size: Sequence[int],
    resize_mode: str,
    centre: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """Voxel -> world affine of the (spatial_size) grid `load` returns.

    affine, shape: the scan after Orientation and Spacing (RAS, `pixdim`), spatial shape (X, Y, Z).
    resize_mode: ``crop`` or ``resize`` (ignored when `centre` is given: the box is cut at true scale).
    centre: the lesion centre as a continuous voxel index of that grid (`world_to_voxel`), or None.
    """
    to_input = np.eye(4)  # output voxel index -> index of the resampled scan
    for axis, (n, s) in enumerate(zip(shape, spatial_size, strict=True)):
        n, s = int(n), int(s)
        if centre is not None:
            to_input[axis, 3] = box_start(float(centre[axis]), s)
        elif resize_mode == "crop":
            to_input[axis, 3] = centre_crop_pad_start(n, s)
        else:  # torch interpolate, align_corners=False: output j samples input (j + 0.5) * n / s - 0.5
            to_input[axis, axis] = n / s
            to_input[axis, 3] = 0.5 * n / s - 0.5
    return np.asarray(affine, dtype=float) @ to_input
