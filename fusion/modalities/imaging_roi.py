"""Region of interest for `ImagingModality`: a tumour mask per patient and a lesion-centred crop.

With `mask_column`, the manifest names a NIfTI mask per patient (foreground = voxels > 0, in the
scan's world geometry but on any grid). The mask decides only *where* the fixed box of
`spatial_size` voxels is cut from the preprocessed scan: the bounding box of its foreground is taken
on the mask's own grid, its centre is carried into world coordinates (RAS mm) and from there into the
scan's grid after Orientation and Spacing, and the box is cut around it, zero-padded at the borders.

For a mask on the scan's grid (the usual case) this is exactly what resampling the mask with the
scan (same Orientation and Spacing, nearest neighbour) and taking its box there gives -- those
transforms only permute, flip and scale the axes -- but without a second resampling, and a lesion
smaller than one output voxel cannot vanish on the way.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
from monai.data import MetaTensor, NibabelReader
from monai.transforms import EnsureChannelFirst, LoadImage

from fusion.modalities.imaging_transforms import is_nifti, nifti_header_problems


@dataclass(frozen=True)
class ImagingRef:
    """One patient's scan and, when the manifest has one, its tumour mask.

    `os.fspath(ref)` and `str(ref)` give the scan's path, so messages about the input name it; a
    message about the mask names the mask itself.
    """

    image: Path
    mask: Path | None = None

    def __fspath__(self) -> str:
        return os.fspath(self.image)

    def __str__(self) -> str:
        return str(self.image)


def check_mask(path: Path) -> list[str]:
    """Cheap problems with a mask path (reads the NIfTI header only)."""
    if not path.exists():
        return [f"mask does not exist: {path}"]
    if path.is_dir() or not is_nifti(path):
        return [f"mask must be a NIfTI file (.nii, .nii.gz): {path}"]
    return nifti_header_problems(path, "mask")


def read_mask(path: Path) -> MetaTensor:
    """The mask as a channel-first MetaTensor (1, X, Y, Z) with its RAS affine; ValueError naming it."""
    problems = check_mask(path)
    if problems:
        raise ValueError(problems[0])
    try:
        mask = LoadImage(reader=NibabelReader(), image_only=True, dtype=np.float32)(str(path))
        mask = cast(MetaTensor, EnsureChannelFirst()(mask))  # MONAI types it Tensor: MetaTensor in, out
    except Exception as err:  # any reader failure is a broken file: say which and why
        raise ValueError(f"'{path}': cannot read mask: {type(err).__name__}: {err}") from err
    if mask.ndim != 4 or mask.shape[0] != 1:
        raise ValueError(f"'{path}': expected a 3D mask, got shape {tuple(mask.shape)}")
    return mask


def _affine(image: torch.Tensor, what: str) -> np.ndarray:
    if not isinstance(image, MetaTensor):
        raise TypeError(f"{what}: expected a MetaTensor with an affine, got {type(image).__name__}")
    return np.asarray(image.affine, dtype=float)


def lesion_centre(mask: MetaTensor, mask_path: Path, image: MetaTensor, image_path: Path) -> np.ndarray:
    """World (RAS mm) centre of the mask's foreground bounding box.

    ValueError naming the mask when it has no foreground, or when none of its foreground lies in
    the field of view of `image` (the scan as read, before any resampling).
    """
    foreground = np.argwhere(mask[0].cpu().numpy() > 0)
    if len(foreground) == 0:
        raise ValueError(f"'{mask_path}': mask is empty (no voxel > 0), so there is no lesion to crop around")
    mask_affine, image_affine = _affine(mask, str(mask_path)), _affine(image, str(image_path))
    world = foreground @ mask_affine[:3, :3].T + mask_affine[:3, 3]
    in_image = (world - image_affine[:3, 3]) @ np.linalg.inv(image_affine[:3, :3]).T
    extent = np.asarray(image.shape[1:4], dtype=float)
    inside = np.all((in_image >= -0.5) & (in_image <= extent - 0.5), axis=1)
    low, high = foreground.min(axis=0), foreground.max(axis=0)
    centre = mask_affine[:3, :3] @ ((low + high) / 2.0) + mask_affine[:3, 3]
    if not inside.any():
        corners = image_affine[:3, :3] @ np.stack([np.zeros(3), extent - 1]).T + image_affine[:3, 3:4]
        span = ", ".join(f"{a:.1f}..{b:.1f}" for a, b in np.sort(corners, axis=1))
        raise ValueError(
            f"'{mask_path}': mask does not overlap the image '{image_path}' (lesion centre at "
            f"{np.round(centre, 1).tolist()} mm RAS; image spans {span} mm)"
        )
    return centre


def world_to_voxel(point: np.ndarray, affine: np.ndarray | torch.Tensor) -> np.ndarray:
    """Continuous voxel index of a world point on a grid with this voxel -> world `affine`."""
    affine = np.asarray(affine, dtype=float)
    return np.linalg.solve(affine[:3, :3], np.asarray(point, dtype=float) - affine[:3, 3])


def crop_around(
    image: torch.Tensor, centre: Sequence[float] | np.ndarray, size: Sequence[int]
) -> torch.Tensor:
    """The (C, *size) box of `image` (C, X, Y, Z) whose middle is voxel `centre`; zeros outside `image`.

    The box's middle, index (s - 1) / 2 on an axis of s voxels, lands on `centre` rounded to the
    nearest voxel (exactly, for a half-integer centre and an even s).
    """
    out = image.new_zeros((image.shape[0], *(int(s) for s in size)))
    source, target = [slice(None)], [slice(None)]
    for c, n, s in zip(centre, image.shape[1:], size, strict=True):
        start = math.floor(float(c) - (int(s) - 1) / 2.0 + 0.5)
        low, high = max(start, 0), min(start + int(s), int(n))
        if low >= high:  # the box misses the image on this axis: all padding
            return out
        source.append(slice(low, high))
        target.append(slice(low - start, high - start))
    out[tuple(target)] = image[tuple(source)]
    return out
