"""Reading and transforming 3D scans for `ImagingModality`: MONAI readers and transforms.

Kept apart from the modality class so each piece is testable on its own:
`read_volume` (one NIfTI file or DICOM series -> validated channel-first MetaTensor),
`find_sequence` (MRI sequence files in a folder), `intensity_transform` (per-kind scaling) and
`augmentation` (train-only random transforms).
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import torch
from monai.data import MetaTensor, NibabelReader, PydicomReader
from monai.transforms import (
    Compose,
    EnsureChannelFirst,
    LoadImage,
    NormalizeIntensity,
    RandAffine,
    RandFlip,
    RandGaussianNoise,
    RandScaleIntensity,
    ScaleIntensityRange,
    Transform,
)

# MONAI builds every DICOM reader it knows; the GPU one warns on each load where it is not installed.
warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader", category=UserWarning)

# pydicom's validation mode is process-global and `Dataset.to_json_dict` (which MONAI's reader calls
# for metadata) flips it to strict while it runs: a concurrent DICOM read in another thread then fails
# on a merely untidy value. DICOM reads are therefore serialised; NIfTI reads stay parallel.
_DICOM_READ_LOCK = threading.Lock()

KINDS = ("ct", "mri", "pet")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def dicom_files(folder: Path) -> list[Path]:
    """The files of a DICOM series folder (hidden files and sub-folders are ignored)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


class PositionSortedDicomReader(PydicomReader):
    """`PydicomReader` that orders a series by slice position, not by InstanceNumber.

    MONAI sorts slices by InstanceNumber, which exporters do not always keep in spatial order.
    Use with ``fname_regex=None`` so that non-DICOM files in the folder are skipped.
    Here each slice's ImagePositionPatient is projected on the slice normal (row x column
    direction cosines) and InstanceNumber is rewritten in memory (files are untouched) so that
    MONAI stacks -- and computes the affine from first/last slice -- in spatial order.
    """

    def read(self, data, **kwargs):  # type: ignore[override]
        img = super().read(data, **kwargs)
        if self.has_series and isinstance(img, list) and not isinstance(img[0], list):
            _order_by_position(img, str(data))
        return img


def _order_by_position(slices: list[pydicom.Dataset], where: str) -> None:
    series = {str(getattr(ds, "SeriesInstanceUID", "")) for ds in slices}
    if len(series) > 1:
        raise ValueError(f"DICOM folder '{where}' mixes {len(series)} series; give one series per folder")
    if not all(
        hasattr(ds, "ImagePositionPatient") and hasattr(ds, "ImageOrientationPatient") for ds in slices
    ):
        return  # no geometry: keep MONAI's InstanceNumber order
    cosines = np.asarray(slices[0].ImageOrientationPatient, dtype=float)
    normal = np.cross(cosines[:3], cosines[3:])
    positions = [float(np.dot(np.asarray(ds.ImagePositionPatient, dtype=float), normal)) for ds in slices]
    if len(set(np.round(positions, 4))) < len(positions):
        raise ValueError(
            f"DICOM folder '{where}' has several slices at the same position (duplicate slices?)"
        )
    for rank, index in enumerate(np.argsort(positions)):
        slices[index].InstanceNumber = rank + 1


def read_volume(path: Path) -> MetaTensor:
    """One scan (NIfTI file or DICOM series folder) as a channel-first float32 MetaTensor (C, X, Y, Z).

    Raises ValueError naming the file for anything broken: missing, empty, unreadable,
    not 3D, NaN/inf voxels, or a constant volume (an all-air or blank export).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"'{path}': path does not exist")
    if path.is_dir():
        files = dicom_files(path)
        if not files:
            raise ValueError(f"'{path}': DICOM folder is empty")
        if not any(pydicom.misc.is_dicom(str(f)) for f in files):
            raise ValueError(f"'{path}': folder holds no DICOM files ({len(files)} other file(s))")
        reader = PositionSortedDicomReader(fname_regex=None)
    elif is_nifti(path):
        reader = NibabelReader()
    elif pydicom.misc.is_dicom(str(path)):
        reader = PositionSortedDicomReader(fname_regex=None)
    else:
        raise ValueError(f"'{path}': unsupported file type (expected .nii, .nii.gz or a DICOM series folder)")
    lock = _DICOM_READ_LOCK if isinstance(reader, PydicomReader) else contextlib.nullcontext()
    try:
        with lock:
            image = LoadImage(reader=reader, image_only=True, dtype=np.float32)(str(path))
        image = EnsureChannelFirst()(image)
    except Exception as err:  # any reader failure is a broken file: say which and why
        raise ValueError(f"'{path}': cannot read image: {type(err).__name__}: {err}") from err
    check_volume(image, path)
    return image


def check_volume(image: torch.Tensor, path: Path) -> None:
    """ValueError naming `path` unless `image` is one finite, non-constant 3D volume (1, X, Y, Z)."""
    spatial = tuple(image.shape[1:])
    if len(spatial) != 3:
        raise ValueError(f"'{path}': expected a 3D volume, got {len(spatial)}D image of shape {spatial}")
    if image.shape[0] != 1:
        raise ValueError(
            f"'{path}': holds {image.shape[0]} volumes (4D image of shape {tuple(image.shape)}); "
            "expected one 3D volume"
        )
    if min(spatial) < 1:
        raise ValueError(f"'{path}': empty volume of shape {spatial}")
    data = image.as_tensor() if isinstance(image, MetaTensor) else image
    bad = ~torch.isfinite(data)
    if bad.any():
        raise ValueError(f"'{path}': {int(bad.sum())} NaN/inf voxel(s) of {data.numel()}")
    if torch.equal(data.amin(), data.amax()):
        raise ValueError(f"'{path}': constant volume (every voxel is {float(data.flatten()[0]):g})")


def find_sequence(folder: Path, sequence: str) -> Path | None:
    """`<sequence>.nii.gz`, `<sequence>.nii` or a `<sequence>/` DICOM folder inside `folder`, else None."""
    for candidate in (folder / f"{sequence}.nii.gz", folder / f"{sequence}.nii", folder / sequence):
        if candidate.exists():
            return candidate
    return None


def intensity_transform(kind: str, ct_window: Sequence[float], pet_suv_max: float) -> Transform:
    """Per-kind intensity handling: CT window -> [0, 1]; MRI z-score of foreground; PET SUV clip -> [0, 1]."""
    if kind == "ct":
        low, high = (float(v) for v in ct_window)
        return ScaleIntensityRange(a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)
    if kind == "mri":
        # MRI intensities have no absolute scale: z-score each sequence over its nonzero (foreground) voxels.
        return NormalizeIntensity(nonzero=True, channel_wise=True)
    if kind == "pet":
        return ScaleIntensityRange(a_min=0.0, a_max=float(pet_suv_max), b_min=0.0, b_max=1.0, clip=True)
    raise ValueError(f"unknown imaging kind '{kind}'; known: {list(KINDS)}")


def augmentation() -> Compose:
    """Cheap train-time augmentation for (C, D, H, W) volumes: flip, small affine, noise, intensity scale."""
    return Compose(
        [
            RandFlip(prob=0.5, spatial_axis=0),
            RandAffine(
                prob=0.3,
                rotate_range=(0.1, 0.1, 0.1),
                scale_range=(0.1, 0.1, 0.1),
                padding_mode="zeros",
            ),
            RandScaleIntensity(factors=0.1, prob=0.3),
            RandGaussianNoise(prob=0.3, std=0.02),
        ]
    )
