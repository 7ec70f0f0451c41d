"""3D saliency maps of one patient's scan, written in the scan's own geometry.

`imaging_saliency` explains every (head, target) on the model's input grid by occlusion
(`imaging_occlusion`, the default) or gradient x input (`imaging_gradients`). `write_saliency_maps`
resamples each head's primary target's map by world coordinates onto the grid of the file the manifest
names (`imaging_geometry`; for an MRI folder, its first present sequence) and writes
``imaging/<patient_id>_<modality>_<head>.nii.gz`` with that file's shape and affine, so it opens over
the original in 3D Slicer or ITK-SNAP, plus a PNG of three orthogonal slices through its peak
(`imaging_png`). Outside the model's field of view (a crop) the map is 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from fusion.attribution.context import PatientContext, TargetKey
from fusion.attribution.imaging_geometry import Scan, read_scan, resample
from fusion.attribution.imaging_gradients import gradient_saliency
from fusion.attribution.imaging_occlusion import default_patch, occlusion_saliency
from fusion.attribution.imaging_png import saliency_png
from fusion.errors import FusionError
from fusion.modalities.base import Modality
from fusion.modalities.imaging import ImagingModality

METHODS = ("occlusion", "gradients")


class ImagingMapError(FusionError, ValueError):
    """A saliency map cannot be made or placed: names the patient, modality and file."""


def imaging_saliency(
    ctx: PatientContext,
    name: str,
    modality: Modality,
    method: str = "occlusion",
    patch: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
) -> dict[TargetKey, np.ndarray]:
    """(head, target) -> float32 saliency (X, Y, Z) on the model's input grid, for every target of `ctx`.

    method: ``occlusion`` (drop of the target when a box is blanked; `patch`/`stride` in voxels, default a
        quarter of each axis at half-box stride) or ``gradients`` (gradient x input, summed over channels).
    An instance that is not an `ImagingModality` gives {} (the runner dispatches by type).
    """
    if not isinstance(modality, ImagingModality):
        return {}
    if method not in METHODS:
        raise ImagingMapError(f"unknown imaging saliency method '{method}'; known: {list(METHODS)}")
    data = _patient_volume(ctx, name)
    if method == "gradients":
        return gradient_saliency(ctx, name, data)
    default = default_patch(data.shape[2:])
    return occlusion_saliency(ctx, name, data, patch or default[0], stride or default[1])


def write_saliency_maps(
    maps: dict[TargetKey, np.ndarray],
    ctx: PatientContext,
    name: str,
    modality: Modality,
    out_dir: str | Path,
) -> list[Path]:
    """Write each head's primary-target map of `maps` onto the scan's own grid, under ``out_dir/imaging/``:
    ``<patient_id>_<name>_<head>.nii.gz`` (the scan's shape and affine; float32) and ``.png``. Returns the
    files written (none for a non-imaging modality or when `maps` lacks every primary target)."""
    if not isinstance(modality, ImagingModality):
        return []
    chosen = {
        head: maps[(head, module.primary_target)]
        for head, module in ctx.heads.items()
        if (head, module.primary_target) in maps
    }
    if not chosen:
        return []
    grid, scan = model_grid_and_scan(ctx, name, modality)
    folder = Path(out_dir) / "imaging"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for head, saliency in chosen.items():
        on_scan = resample(saliency, grid, scan.affine, scan.shape)
        stem = f"{ctx.patient_id}_{name}_{head}"
        written.append(_write_nifti(on_scan, scan, folder / f"{stem}.nii.gz"))
        title = f"{ctx.patient_id} {name}: {ctx.heads[head].primary_target}"
        written.append(saliency_png(scan.image, on_scan, scan.affine, title, folder / f"{stem}.png"))
    return written


def model_grid_and_scan(ctx: PatientContext, name: str, modality: ImagingModality) -> tuple[np.ndarray, Scan]:
    """The model grid's voxel -> world affine for this patient, and the scan the maps are drawn on."""
    ref = ctx.refs.get(name)
    if ref is None:
        raise ImagingMapError(
            f"patient '{ctx.patient_id}', modality '{name}': no scan path to draw the map on (refs lack it)"
        )
    try:
        data, grid = modality.load_on_grid(ref)
        scan = read_scan(modality, ref)
    except ValueError as err:
        raise ImagingMapError(f"patient '{ctx.patient_id}', modality '{name}': {err}") from err
    expected = tuple(_patient_volume(ctx, name).shape[1:])
    if tuple(data.shape) != expected:
        raise ImagingMapError(
            f"patient '{ctx.patient_id}', modality '{name}': '{ref}' loads as {tuple(data.shape)}, "
            f"but the model's input is {expected}"
        )
    return grid, scan


def _write_nifti(volume: np.ndarray, scan: Scan, path: Path) -> Path:
    header = None if scan.header is None else scan.header.copy()
    image = nib.Nifti1Image(volume.astype(np.float32), scan.affine, header=header)
    image.set_data_dtype(np.float32)
    image.header.set_slope_inter(1.0, 0.0)
    image.set_sform(scan.affine, code=1 if header is None else max(1, int(header["sform_code"])))
    image.set_qform(scan.affine, code=1 if header is None else max(1, int(header["qform_code"])))
    image.header["descrip"] = b"fusion saliency map"
    nib.save(image, str(path))
    return path


def _patient_volume(ctx: PatientContext, name: str) -> torch.Tensor:
    """The patient's collated input of modality `name`: (1, C, X, Y, Z)."""
    item = ctx.inputs.get(name)
    if item is None or not bool(item["present"][0]):
        raise ImagingMapError(f"patient '{ctx.patient_id}' has no '{name}' input to explain")
    data = item["data"]
    if not isinstance(data, torch.Tensor) or data.dim() != 5 or data.shape[0] != 1:
        shape = tuple(data.shape) if isinstance(data, torch.Tensor) else type(data).__name__
        raise ImagingMapError(
            f"patient '{ctx.patient_id}', modality '{name}': expected one (1, C, X, Y, Z) volume, got {shape}"
        )
    return data
