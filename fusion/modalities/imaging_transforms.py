"""Reading and transforming 3D scans for `ImagingModality`: MONAI readers and transforms.

Kept apart from the modality class so each piece is testable on its own:
`read_volume` (one NIfTI file or DICOM series -> validated channel-first MetaTensor; DICOM series
selection, slice-grid checks and multi-frame files in `fusion.io.dicom_series`, PET SUV in `pet_suv`),
`find_sequence` (MRI sequence files in a folder), `intensity_transform` (per-kind scaling) and
`augmentation` (train-only random transforms).
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import nibabel as nib
import numpy as np
import pydicom
import torch
from monai.data import MetaTensor, NibabelReader
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
from nibabel.spatialimages import SpatialImage
from pydicom.pixels import pixel_array

from fusion.io.dicom_series import (
    Series,
    affine_ras,
    dicom_files,  # noqa: F401  (re-exported: imaging.py checks folders with it)
    geometry_tensor,
    order_planes,
    read_header,
    read_multiframe,
    scan_folder,
    select_series,
    slice_plane,
)
from fusion.modalities.pet_suv import to_suv

# MONAI registers a GPU (nvImageCodec) decoder with pydicom and, where it is not installed, logs a warning
# on every DICOM pixel read; pydicom's own decoders do the work. Keep real MONAI warnings, drop that one.
logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader", category=UserWarning)

# pydicom's validation mode is process-global and `Dataset.to_json_dict` (which MONAI's DICOM readers
# call for metadata) flips it to strict while it runs: a concurrent DICOM read in another thread then
# fails on a merely untidy value. `read_slices` no longer goes through MONAI, but DICOM reads stay
# serialised (pydicom's global state, and one large series in memory at a time); NIfTI reads stay parallel.
_DICOM_READ_LOCK = threading.Lock()

KINDS = ("ct", "mri", "pet")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def _slice_pixels(path: Path, ds: pydicom.Dataset, where: Path) -> np.ndarray:
    """One slice's stored values (rows, columns), read from `path`: its (header) dataset `ds` keeps no
    pixels. ValueError naming the series folder `where` and the slice file, saying what is wrong."""
    try:
        pixels = pixel_array(str(path))
    except Exception as err:  # whatever the decoder raises: say which slice, and why in words if we can
        raise ValueError(f"'{where}': slice file '{path}' {slice_read_problem(path, ds, err)}") from err
    if pixels.ndim != 2:
        raise ValueError(
            f"'{where}': slice file '{path}': pixel data of shape {pixels.shape}, "
            "expected one (rows, columns) image"
        )
    return pixels


def slice_read_problem(path: Path, ds: pydicom.Dataset, err: Exception) -> str:
    """Why a slice's pixels could not be read, in words: truncated, or the decoder's own error."""
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    bits = int(ds.get("BitsAllocated") or 0)
    if syntax is not None and not syntax.is_compressed and bits and bits % 8 == 0:
        expected = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel") or 1) * bits // 8
        try:
            found = len(pydicom.dcmread(str(path)).PixelData)
        except Exception:  # cut inside a header: the decoder's error says the rest
            found = None
        if found is not None and found < expected:
            return (
                f"is truncated: pixel data shorter than Rows x Columns ({found} of the {expected} bytes "
                f"{ds.Rows} x {ds.Columns} pixels of {bits} bits need); the file was cut short "
                "(an interrupted copy or export?): copy or export it again"
            )
    return f"has unreadable pixel data ({type(err).__name__}: {err})"


def read_slices(datasets: Sequence[pydicom.Dataset], files: Sequence[Path], where: Path) -> MetaTensor:
    """A single-frame series, slices already in order, as a float32 (X, Y, Z) MetaTensor.

    Fills one preallocated float32 volume slice by slice (rescale slope/intercept applied per slice)
    instead of MONAI's `PydicomReader`, which holds every slice, their stack and its transposed copy at
    once (about 7x the volume). Values, layout (X = columns, Y = rows, Z = slices) and RAS affine are
    those `PydicomReader` gives: first/last slice positions, or, without geometry, its identity (axes
    swapped). The metadata holds geometry only.
    """
    planes = [slice_plane(ds, f.name) for ds, f in zip(datasets, files, strict=True)]
    volume: np.ndarray | None = None
    for k, (ds, path) in enumerate(zip(datasets, files, strict=True)):
        pixels = _slice_pixels(path, ds, where)
        if volume is None:
            volume = np.empty((pixels.shape[1], pixels.shape[0], len(datasets)), dtype=np.float32)
        elif pixels.shape != volume.shape[1::-1]:
            raise ValueError(
                f"'{where}': slice file '{path}' has {pixels.shape[0]} x {pixels.shape[1]} pixels "
                f"in a series of {volume.shape[1]} x {volume.shape[0]} (rows x columns)"
            )
        target = volume[:, :, k]
        target[...] = pixels.T  # (rows, columns) -> (columns, rows), as MONAI's swap_ij
        if "RescaleSlope" in ds or "RescaleIntercept" in ds:
            target *= float(ds.get("RescaleSlope", 1.0))  # float32 arithmetic, as PydicomReader
            target += float(ds.get("RescaleIntercept", 0.0))
    assert volume is not None  # a chosen series has at least one slice
    if len(datasets) == 1:  # as `check_volume` says of the 2D image PydicomReader gives
        raise ValueError(f"'{where}': expected a 3D volume, got 2D image of shape {volume.shape[:2]}")
    # no geometry: PydicomReader's identity affine, with i and j swapped
    swapped_identity = np.eye(4)[[1, 0, 2, 3]]
    first, last = planes[0], planes[-1]
    if first is None:
        affine = swapped_identity
    else:
        assert last is not None  # `_ordered_slices` refuses a series where only some slices have geometry
        affine = affine_ras(first, last, len(planes))
    if not np.isfinite(affine).all():
        raise ValueError(f"'{where}': non-finite ImagePositionPatient/ImageOrientationPatient/PixelSpacing")
    return geometry_tensor(volume, affine, where)


def _choose_series(path: Path, selector: str | None) -> Series:
    """The series to read from a DICOM folder (or the one series of a single DICOM file)."""
    if path.is_dir():
        return select_series(scan_folder(path), selector, path)
    ds = read_header(path)
    found = Series(str(ds.get("SeriesInstanceUID", "")), str(ds.get("SeriesDescription", "") or ""), "")
    found.files, found.datasets = [path], [ds]
    return select_series([found], selector, path)


def _ordered_slices(chosen: Series, path: Path) -> tuple[list[pydicom.Dataset], list[Path]]:
    """A single-frame series' slices in position order, after the geometry checks of `order_planes`."""
    planes = [slice_plane(ds, f.name) for ds, f in zip(chosen.datasets, chosen.files, strict=True)]
    located = [p for p in planes if p is not None]
    if len(located) == len(planes):
        order = order_planes(located, path)
    elif located:
        lacking = [f.name for f, p in zip(chosen.files, planes, strict=True) if p is None]
        raise ValueError(
            f"'{path}': {len(lacking)} of {len(planes)} slices lack ImagePositionPatient/"
            f"ImageOrientationPatient: {lacking[:5]}"
        )
    else:  # no geometry at all: InstanceNumber order, and MONAI gives an identity affine
        order = sorted(range(len(planes)), key=lambda i: int(chosen.datasets[i].get("InstanceNumber") or 0))
    return [chosen.datasets[i] for i in order], [chosen.files[i] for i in order]


def _read_dicom(path: Path, series: str | None, kind: str | None) -> MetaTensor:
    """One DICOM series (folder or file) as a MetaTensor (C, X, Y, Z); the caller holds the DICOM lock."""
    chosen = _choose_series(path, series)
    if chosen.is_multiframe and len(chosen.datasets) > 1:
        raise ValueError(f"'{path}': series {chosen} is split over {len(chosen.datasets)} multi-frame files")
    try:
        if chosen.is_multiframe:
            image = read_multiframe(chosen.datasets[0], path)
        else:
            image = read_slices(*_ordered_slices(chosen, path), path)
        image = cast(MetaTensor, EnsureChannelFirst()(image))  # MONAI types it Tensor: MetaTensor in, out
    except Exception as err:  # any reader failure is a broken file: say which and why
        if isinstance(err, ValueError) and str(err).startswith(f"'{path}'"):
            raise  # our own geometry checks already say which file and why
        raise ValueError(f"'{path}': cannot read image: {type(err).__name__}: {err}") from err
    check_volume(image, path)
    if kind == "pet":
        image = cast(MetaTensor, to_suv(image, chosen.datasets, path))  # MetaTensor * factor: a MetaTensor
    return image


def read_volume(path: Path, series: str | None = None, kind: str | None = None) -> MetaTensor:
    """One scan (NIfTI file or DICOM series folder/file) as a channel-first float32 MetaTensor (C, X, Y, Z).

    `series` picks one series of a DICOM folder holding several: a regular expression searched
    case-insensitively in SeriesDescription (see `fusion.io.dicom_series.select_series`). `kind` ``pet``
    converts DICOM PET to body-weight SUV from its header (`pet_suv.to_suv`; warns and keeps the
    stored values when the header lacks what SUV needs); NIfTI PET is taken to hold SUV already.
    Raises ValueError naming the file for anything broken: missing, empty, unreadable, several
    series and no selector, an irregular slice grid, not 3D, NaN/inf voxels, or a constant volume.
    """
    path = Path(path)
    if kind is not None and kind not in KINDS:
        raise ValueError(f"'{path}': unknown imaging kind '{kind}'; known: {list(KINDS)}")
    if not path.exists():
        raise ValueError(f"'{path}': path does not exist")
    if path.is_dir() or (not is_nifti(path) and pydicom.misc.is_dicom(str(path))):
        with _DICOM_READ_LOCK:
            return _read_dicom(path, series, kind)
    if not is_nifti(path):
        raise ValueError(f"'{path}': unsupported file type (expected .nii, .nii.gz or a DICOM series folder)")
    problem = nifti_affine_problem(path)
    if problem is not None:
        raise ValueError(f"'{path}': {problem}")
    try:
        image = LoadImage(reader=NibabelReader(), image_only=True, dtype=np.float32)(str(path))
        image = cast(MetaTensor, EnsureChannelFirst()(image))  # MONAI types it Tensor: MetaTensor in, out
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


def _unit_window(transform: Transform) -> tuple[float, float] | None:
    """(low, high) of a clipped ScaleIntensityRange onto [0, 1] (CT window, PET SUV clip), else None."""
    if not isinstance(transform, ScaleIntensityRange) or transform.dtype not in (None, torch.float32):
        return None
    low, high = transform.a_min, transform.a_max
    if (transform.b_min, transform.b_max, transform.clip) != (0.0, 1.0, True) or low == high:
        return None
    return float(low), float(high)


def apply_intensity(transforms: Sequence[Transform], data: torch.Tensor) -> torch.Tensor:
    """Every transform of `intensity_transform` on float32 `data` (C, X, Y, Z) -> (C, windows, X, Y, Z).

    CT windows and the PET clip are computed in place, into the output (`data` itself for one window),
    with the same float32 arithmetic as `ScaleIntensityRange`: no temporary copies of a large volume.
    May overwrite `data`; other transforms (MRI z-score) go through MONAI.
    """
    found = [_unit_window(t) for t in transforms]
    windows = [w for w in found if w is not None]
    if data.dtype != torch.float32 or len(windows) < len(found):
        return torch.stack([torch.as_tensor(t(data)) for t in transforms], dim=1)
    if len(windows) == 1:
        out = data.unsqueeze(1)
    else:
        out = torch.empty((data.shape[0], len(windows), *data.shape[1:]), dtype=torch.float32)
    for k, (low, high) in enumerate(windows):
        target = out[:, k]
        if len(windows) == 1:
            target.sub_(low)
        else:
            torch.sub(data, low, out=target)
        target.div_(high - low).clamp_(0.0, 1.0)
    return out


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


def nifti_header_problems(path: Path, what: str = "volume") -> list[str]:
    """Cheap problems with a NIfTI file (header only): unreadable, or not one 3D `what`."""
    try:
        # nibabel types load() as the FileBasedImage base, which has no shape; a NIfTI image has one
        image = cast(SpatialImage, nib.load(str(path)))
        shape, affine = image.shape, image.affine
    except Exception as err:  # a corrupt header is a broken file, whatever nibabel raises
        label = "" if what == "volume" else f"{what} "
        return [f"cannot read {label}NIfTI header ({type(err).__name__}: {err}): {path}"]
    if len(shape) != 3 and not (len(shape) == 4 and shape[3] == 1):
        return [f"expected a 3D {what}, NIfTI header has shape {tuple(shape)}: {path}"]
    problem = affine_problem(affine)
    return [] if problem is None else [f"{problem}: {path}"]


#: the affine's smallest singular value below this fraction of its largest: an axis has (almost) no length
_SINGULAR_RATIO = 1e-6


def affine_problem(affine: np.ndarray | None) -> str | None:
    """Why a NIfTI affine (voxel -> world mm) cannot place a scan in space, in words; None when it can.

    An all-zero, non-finite or singular (an axis of zero length, two axes along one line) 3 x 3 part
    cannot be reoriented to RAS or resampled (MONAI's `Orientation` fails on it with no file named).
    """
    if affine is None:
        return "its NIfTI header holds no affine (orientation matrix)"
    linear = np.asarray(affine, dtype=float)[:3, :3]
    if not np.isfinite(affine).all():
        what = "holds NaN/inf values"
    elif not linear.any():
        what = "is all zeros"
    else:
        values = np.linalg.svd(linear, compute_uv=False)
        if values.min() > _SINGULAR_RATIO * values.max():
            return None
        what = "is singular (a voxel axis of zero length, or two axes along one line)"
    return (
        f"its affine (orientation matrix, voxel -> world mm) {what}, so the scan cannot be placed in "
        "space or reoriented; fix the header, e.g. with nibabel: img = nib.load(path); "
        "img.set_sform(voxel_to_mm_4x4, code=1); img.set_qform(voxel_to_mm_4x4, code=1); "
        "nib.save(img, path) (or convert the scan from its DICOM again)"
    )


def nifti_affine_problem(path: Path) -> str | None:
    """`affine_problem` of a NIfTI file's header affine (sform, else qform, else from pixdim)."""
    try:
        affine = cast(SpatialImage, nib.load(str(path))).affine
    except Exception:  # an unreadable header: the reader says why, naming the file
        return None
    return affine_problem(affine)
