"""DICOM as exported from PACS: find the series in a folder, pick one, check its geometry, read multi-frames.

A PACS export folder may hold several series (scout, axial, reformats, dose report) and files that are
not images at all. `scan_folder` groups the image files by SeriesInstanceUID, `select_series` picks one
by its SeriesDescription, `order_planes` refuses a series whose slices do not form one regular grid
(missing, duplicate or unevenly spaced slices, slices of another size, spacing or orientation) and
returns the slices in position order, and `read_multiframe` turns one Enhanced (multi-frame) CT/MR/PET
file into a volume with the same array layout and RAS affine as MONAI's `PydicomReader` gives a
single-frame series. Callers hold the DICOM read lock (see `imaging_transforms`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import pydicom
import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.utils import MetaKeys, SpaceKeys
from pydicom.dataset import Dataset

#: a gap between consecutive slices over this many median spacings means slices are missing
MISSING_SLICE_FACTOR = 1.5
#: a slice may lie at most this fraction of the median slice spacing away from the regular grid
SPACING_TOLERANCE = 0.1
#: values above this size (pixel data) are read from disk only when used: scanning reads headers only
DEFER_SIZE = "16 KB"
_SAME_POSITION_MM = 1e-4
_ORIENTATION_ATOL = 1e-3
_PIXEL_SPACING_ATOL = 1e-3


def dicom_files(folder: Path) -> list[Path]:
    """The files of a DICOM series folder (hidden files and sub-folders are ignored)."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


@dataclass
class Series:
    """The image files of one SeriesInstanceUID, with their (pixel-deferred) datasets."""

    uid: str
    description: str
    number: str
    files: list[Path] = field(default_factory=list)
    datasets: list[Dataset] = field(default_factory=list)

    @property
    def n_slices(self) -> int:
        return sum(int(ds.get("NumberOfFrames") or 1) for ds in self.datasets)

    @property
    def is_multiframe(self) -> bool:
        return any(int(ds.get("NumberOfFrames") or 1) > 1 for ds in self.datasets)

    def __str__(self) -> str:
        number = f"#{self.number} " if self.number else ""
        plural = "" if self.n_slices == 1 else "s"
        description = f"'{self.description}'" if self.description else "(no SeriesDescription)"
        return f"{number}{description} ({self.n_slices} slice{plural})"


def read_header(path: Path) -> Dataset:
    """One DICOM file, its pixel data left on disk until used; ValueError naming the file if unreadable."""
    try:
        return pydicom.dcmread(str(path), defer_size=DEFER_SIZE)
    except Exception as err:  # a corrupt or truncated file is broken, whatever pydicom raises
        raise ValueError(f"'{path}': cannot read DICOM file: {type(err).__name__}: {err}") from err


def scan_folder(folder: Path) -> list[Series]:
    """The image series in `folder`, in file-name order; non-DICOM files and non-image objects are skipped."""
    files = dicom_files(folder)
    if not files:
        raise ValueError(f"'{folder}': DICOM folder is empty")
    found: dict[str, Series] = {}
    n_dicom = 0
    for path in files:
        if not pydicom.misc.is_dicom(str(path)):
            continue  # notes, thumbnails, checksums exported beside the images
        n_dicom += 1
        ds = read_header(path)
        if "PixelData" not in ds:
            damaged = _image_without_pixels(ds)
            if damaged is not None:  # pydicom reads a file cut inside its header without complaint
                raise ValueError(
                    f"'{folder}': DICOM file '{path}' is truncated or damaged: {damaged} object without "
                    f"pixel data (the file ends after {path.stat().st_size} bytes); copy or export it "
                    "again, or remove it"
                )
            continue  # DICOMDIR, structured reports, presentation states: no image
        uid = str(ds.get("SeriesInstanceUID", ""))
        if uid not in found:
            description = str(ds.get("SeriesDescription", "") or "")
            found[uid] = Series(uid, description, str(ds.get("SeriesNumber", "") or ""))
        found[uid].files.append(path)
        found[uid].datasets.append(ds)
    if not found:
        what = f"{n_dicom} DICOM object(s) without pixel data" if n_dicom else "no DICOM files"
        raise ValueError(f"'{folder}': folder holds no DICOM images ({what}, {len(files)} file(s) in all)")
    return list(found.values())


def _image_without_pixels(ds: Dataset) -> str | None:
    """The SOP class name (e.g. "CT Image Storage") of an image object that lacks its pixel data.

    The dataset's SOPClassUID says; a file cut before it (no SOPClassUID, no Modality either) is
    judged by its file meta information, which precedes the dataset."""
    uid = ds.get("SOPClassUID")
    meta = getattr(ds, "file_meta", None)
    if uid is None and "Modality" not in ds and meta is not None:
        uid = meta.get("MediaStorageSOPClassUID")
    name = getattr(uid, "name", "")
    return f"a {name}" if "Image Storage" in str(name) else None


def select_series(found: list[Series], selector: str | None, where: Path) -> Series:
    """The one series whose SeriesDescription matches `selector` (case-insensitive regular expression search).

    Without a selector the folder must hold exactly one series. Errors list every series found.
    """
    listing = ", ".join(str(s) for s in found)
    if selector is None:
        if len(found) == 1:
            return found[0]
        raise ValueError(
            f"'{where}': folder holds {len(found)} DICOM series: {listing}; choose one with `series` "
            "(a regular expression searched case-insensitively in SeriesDescription)"
        )
    try:
        pattern = re.compile(selector, re.IGNORECASE)
    except re.error as err:
        raise ValueError(
            f"'{where}': series selector {selector!r} is not a valid regular expression: {err}"
        ) from err
    chosen = [s for s in found if pattern.search(s.description)]
    if len(chosen) == 1:
        return chosen[0]
    if not chosen:
        raise ValueError(
            f"'{where}': no DICOM series' SeriesDescription matches {selector!r}; found {listing}"
        )
    raise ValueError(
        f"'{where}': {len(chosen)} DICOM series match {selector!r}: {', '.join(str(s) for s in chosen)}; "
        "make the expression narrower (anchor it with ^...$)"
    )


@dataclass(frozen=True)
class Plane:
    """Where one 2D image (a slice file or a frame) lies in patient space (LPS, mm)."""

    label: str
    position: np.ndarray  # ImagePositionPatient: centre of the first transmitted pixel
    orientation: np.ndarray  # ImageOrientationPatient: row direction cosines, then column direction cosines
    spacing: tuple[float, float]  # PixelSpacing: between rows, between columns
    shape: tuple[int, int]  # Rows, Columns

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.orientation[:3], self.orientation[3:])


def _plane(label: str, position, orientation, spacing, ds: Dataset) -> Plane:
    return Plane(
        label,
        np.asarray(position, dtype=float),
        np.asarray(orientation, dtype=float),
        # PixelSpacing holds 2 values (between rows, between columns); another count is not refused here
        cast(tuple[float, float], tuple(float(v) for v in spacing or (1.0, 1.0))),
        (int(ds.Rows), int(ds.Columns)),
    )


def slice_plane(ds: Dataset, label: str) -> Plane | None:
    """A single-frame image's plane, or None when it carries no position/orientation."""
    if "ImagePositionPatient" not in ds or "ImageOrientationPatient" not in ds:
        return None
    return _plane(label, ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.get("PixelSpacing"), ds)


def _functional(frame: Dataset, shared: Dataset, sequence: str, keyword: str, default=None):
    """`keyword` from the frame's functional group `sequence`, else from the shared one, else `default`."""
    for group in (frame, shared):
        items = group.get(sequence)
        if items and keyword in items[0]:
            return items[0][keyword].value
    return default


def frames(ds: Dataset, where: Path) -> list[tuple[Plane, float, float]]:
    """(plane, rescale slope, intercept) of every frame of a multi-frame image.

    Plane from PlanePosition/PlaneOrientation/PixelMeasuresSequence (per-frame, else shared functional
    groups, else the top-level tags); rescale from PixelValueTransformationSequence, else Rescale*.
    """
    n = int(ds.NumberOfFrames)
    per_frame = list(ds.get("PerFrameFunctionalGroupsSequence") or [Dataset()] * n)
    shared = (ds.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    if len(per_frame) != n:
        raise ValueError(f"'{where}': NumberOfFrames is {n} but {len(per_frame)} per-frame functional groups")
    out = []
    for i, frame in enumerate(per_frame):
        position = _functional(frame, shared, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _functional(
            frame,
            shared,
            "PlaneOrientationSequence",
            "ImageOrientationPatient",
            ds.get("ImageOrientationPatient"),
        )
        if position is None or orientation is None:
            raise ValueError(
                f"'{where}': frame {i + 1} of {n} has no ImagePositionPatient/ImageOrientationPatient "
                "(PlanePositionSequence/PlaneOrientationSequence): cannot place it in space"
            )
        spacing = _functional(frame, shared, "PixelMeasuresSequence", "PixelSpacing", ds.get("PixelSpacing"))
        transform = "PixelValueTransformationSequence"
        slope = _functional(frame, shared, transform, "RescaleSlope", ds.get("RescaleSlope", 1.0))
        intercept = _functional(frame, shared, transform, "RescaleIntercept", ds.get("RescaleIntercept", 0.0))
        out.append(
            (_plane(f"frame {i + 1}", position, orientation, spacing, ds), float(slope), float(intercept))
        )
    return out


def _differs(planes: list[Plane], what: str, get, atol: float, where: Path) -> None:
    reference = get(planes[0])
    odd = [p for p in planes if not np.allclose(get(p), reference, rtol=0, atol=atol)]
    if odd:
        more = f" (and {len(odd) - 1} more)" if len(odd) > 1 else ""
        raise ValueError(
            f"'{where}': {what} differs between slices: {reference} in {planes[0].label} "
            f"but {get(odd[0])} in {odd[0].label}{more}"
        )


def order_planes(planes: list[Plane], where: Path, tolerance: float = SPACING_TOLERANCE) -> list[int]:
    """Indices of `planes` in slice position order, after checking that they form one regular grid.

    ValueError naming `where` and the values involved for: another Rows x Columns, PixelSpacing or
    ImageOrientationPatient than the first slice; two slices at one position; a gap over
    `MISSING_SLICE_FACTOR` median spacings (missing slices); a slice more than `tolerance` median
    spacings off the regular grid that the volume's affine assumes (uneven spacing).
    """
    for what, get, atol in (
        ("Rows x Columns", lambda p: p.shape, 0.0),
        ("PixelSpacing", lambda p: list(p.spacing), _PIXEL_SPACING_ATOL),
        ("ImageOrientationPatient", lambda p: [round(float(v), 6) for v in p.orientation], _ORIENTATION_ATOL),
    ):
        _differs(planes, what, get, atol, where)
    distance = np.array([float(p.position @ planes[0].normal) for p in planes])
    order = [int(i) for i in np.argsort(distance, kind="stable")]
    along = distance[order]
    gaps = np.diff(along)
    same = [k for k, gap in enumerate(gaps) if gap < _SAME_POSITION_MM]
    if same:
        pairs = ", ".join(
            f"{along[k]:g} mm ({planes[order[k]].label}, {planes[order[k + 1]].label})" for k in same[:5]
        )
        raise ValueError(
            f"'{where}': several slices at the same position (duplicate slices, or several acquisitions "
            f"in one series?): {pairs}" + (f" and {len(same) - 5} more" if len(same) > 5 else "")
        )
    if len(planes) < 3:
        return order
    median = float(np.median(gaps))
    holes = [k for k, gap in enumerate(gaps) if gap > MISSING_SLICE_FACTOR * median]
    if holes:
        listed = ", ".join(f"{gaps[k]:g} mm between {along[k]:g} and {along[k + 1]:g} mm" for k in holes[:5])
        raise ValueError(
            f"'{where}': missing slice(s): gap of {listed} (median slice spacing {median:g} mm)"
            + (f" and {len(holes) - 5} more gaps" if len(holes) > 5 else "")
        )
    grid = along[0] + np.arange(len(along)) * (along[-1] - along[0]) / (len(along) - 1)
    off = np.abs(along - grid)
    worst = int(np.argmax(off))
    if off[worst] > tolerance * median:
        raise ValueError(
            f"'{where}': uneven slice spacing: spacing varies from {gaps.min():g} to {gaps.max():g} mm; "
            f"the slice at {along[worst]:g} mm ({planes[order[worst]].label}) lies {off[worst]:.3g} mm off "
            f"the regular grid (tolerance {tolerance:g} x {median:g} mm)"
        )
    return order


def affine_ras(first: Plane, last: Plane, n_slices: int) -> np.ndarray:
    """Voxel (column, row, slice) -> RAS mm, the affine MONAI's `PydicomReader` builds for a series.

    Columns run along the row direction cosines at the column spacing, rows along the column
    direction cosines at the row spacing, slices from the first to the last position; LPS -> RAS.
    """
    affine = np.eye(4)
    affine[:3, 0] = first.orientation[:3] * first.spacing[1]
    affine[:3, 1] = first.orientation[3:] * first.spacing[0]
    affine[:3, 2] = (last.position - first.position) / (n_slices - 1) if n_slices > 1 else first.normal
    affine[:3, 3] = first.position
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


def read_multiframe(ds: Dataset, where: Path, tolerance: float = SPACING_TOLERANCE) -> MetaTensor:
    """A multi-frame DICOM image as a float32 (X, Y, Z) MetaTensor: frames in position order, rescaled.

    Same layout as MONAI's `PydicomReader` gives a single-frame series (X = columns, Y = rows,
    Z = slices) and the same RAS affine; the metadata holds geometry only.
    """
    described = frames(ds, where)
    planes = [plane for plane, _, _ in described]
    order = order_planes(planes, where, tolerance)
    pixels = ds.pixel_array
    expected = (len(planes), *planes[0].shape)
    if pixels.shape != expected:
        raise ValueError(
            f"'{where}': pixel data of shape {pixels.shape}, expected (frames, rows, columns) {expected}"
        )
    rescaled = [pixels[i].astype(np.float32) * described[i][1] + described[i][2] for i in order]
    # (rows, columns, slices) -> (columns, rows, slices), as MONAI's swap_ij
    volume = np.ascontiguousarray(np.stack(rescaled, axis=-1).swapaxes(0, 1))
    return geometry_tensor(volume, affine_ras(planes[order[0]], planes[order[-1]], len(order)), where)


def geometry_tensor(volume: np.ndarray, affine: np.ndarray, where: Path) -> MetaTensor:
    """`volume` (X, Y, Z) as a MetaTensor whose metadata holds RAS geometry, nothing from the header."""
    meta = {
        MetaKeys.ORIGINAL_AFFINE: affine,
        MetaKeys.SPATIAL_SHAPE: volume.shape,
        MetaKeys.SPACE: SpaceKeys.RAS,
        MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan"),
        "spacing": affine_to_spacing(affine, r=3),
        "filename_or_obj": str(where),
    }
    return MetaTensor(torch.from_numpy(volume), affine=torch.as_tensor(affine), meta=meta)
