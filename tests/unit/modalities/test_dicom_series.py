"""DICOM as exported from PACS: several series per folder, multi-frame files, slice-grid checks.

Every file is written here with pydicom from its CT_small.dcm sample (128 x 128, 0.661468 mm pixels).
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch
from monai.transforms import Orientation
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import EnhancedCTImageStorage, generate_uid

from fusion.io.dicom_series import scan_folder
from fusion.modalities.imaging_transforms import read_volume

TEMPLATE = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
AXIAL = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
CORONAL = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]  # rows run feet-ward; the slice normal is +y (posterior)
SECRET = "Secretname^Jane"


def pixels(k: int) -> np.ndarray:
    """Stored values of slice k: a level of 100 * k with a ramp along the columns and a dark corner."""
    raw = np.full((TEMPLATE.Rows, TEMPLATE.Columns), 1024 + 100 * k, dtype=np.int16)
    raw += np.arange(TEMPLATE.Columns, dtype=np.int16)[None, :]
    raw[:4, :6] = 0
    return raw


def slice_ds(
    k: int,
    position: float,
    uid: str = "1.2.3.1",
    description: str = "AX CT",
    orientation: list[float] = AXIAL,
) -> Dataset:
    """Slice k of a series: CT_small's header at `position` mm along the slice normal."""
    ds = copy.deepcopy(TEMPLATE)
    normal = np.cross(orientation[:3], orientation[3:])
    ds.ImagePositionPatient = [float(v) for v in np.array([-80.0, -90.0, 0.0]) + position * normal]
    ds.ImageOrientationPatient = list(orientation)
    ds.SeriesInstanceUID, ds.SeriesDescription, ds.SeriesNumber = uid, description, 2
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.InstanceNumber = 7 - k
    ds.PatientName = SECRET
    ds.PixelData = pixels(k).tobytes()
    return ds


def write_series(folder: Path, positions: list[float], **kwargs) -> Path:
    """One file per slice, file names not in position order."""
    folder.mkdir(parents=True, exist_ok=True)
    uid = kwargs.get("uid", "1.2.3.1")
    for k, position in enumerate(positions):
        slice_ds(k, position, **kwargs).save_as(folder / f"{uid[-1]}_{(5 * k + 2) % 11:03d}.dcm")
    return folder


def write_multiframe(
    path: Path,
    positions: list[float],
    frame_order: list[int],
    rescale_at: str,
    orientation: list[float] = AXIAL,
) -> Path:
    """Enhanced CT: frames stored in `frame_order`, values `hu` stored with slope 2 / intercept -1024."""
    ds = copy.deepcopy(TEMPLATE)
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceLocation"):
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = EnhancedCTImageStorage
    ds.SeriesDescription, ds.PatientName, ds.NumberOfFrames = "AX CT ENHANCED", SECRET, len(frame_order)
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([Dataset()])
    shared.PixelMeasuresSequence[0].PixelSpacing = list(TEMPLATE.PixelSpacing)
    shared.PixelMeasuresSequence[0].SliceThickness = 5.0
    shared.PlaneOrientationSequence = Sequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = list(orientation)
    transform = Dataset()
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 2, -1024, "HU"
    if rescale_at == "shared":
        shared.PixelValueTransformationSequence = Sequence([transform])
    elif rescale_at == "top":
        ds.RescaleSlope, ds.RescaleIntercept = 2, -1024
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames, groups = [], []
    for k in frame_order:
        reference = slice_ds(k, positions[k], orientation=orientation)
        group = Dataset()
        group.PlanePositionSequence = Sequence([Dataset()])
        group.PlanePositionSequence[0].ImagePositionPatient = reference.ImagePositionPatient
        if rescale_at == "per-frame":
            group.PixelValueTransformationSequence = Sequence([transform])
        groups.append(group)
        frames.append(pixels(k) // 2)
    ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        if rescale_at != "top" and keyword in ds:
            delattr(ds, keyword)
    ds.PixelData = np.stack(frames).astype(np.int16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path)
    return path


def hu(k: int) -> np.ndarray:
    """Slice k in HU as the multi-frame file stores it (stored * 2 - 1024); the reference series agrees."""
    return ((pixels(k) // 2).astype(np.float32) * 2 - 1024).astype(np.float32)


def single_frame_reference(folder: Path, positions: list[float], orientation: list[float]) -> Path:
    """The single-frame series holding exactly the multi-frame file's values."""
    write_series(folder, positions, orientation=orientation)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        k = 7 - int(ds.InstanceNumber)
        ds.PixelData = (hu(k) + 1024).astype(np.int16).tobytes()
        ds.save_as(path)
    return folder


# ----------------------------------------------------------------------------- several series
@pytest.fixture(scope="module")
def pacs_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("pacs") / "export"
    write_series(folder, [0, 5, 10, 15], uid="1.2.3.1", description="AX T1 post")
    write_series(folder, [0, 3, 6], uid="1.2.3.2", description="Sag T2")
    write_series(folder, [0, 4, 8, 12, 16], uid="1.2.3.3", description="AX T1")
    (folder / "README.txt").write_text("exported by PACS")
    report = Dataset()  # a DICOM object without pixel data (like a structured report): skipped
    report.file_meta = TEMPLATE.file_meta.copy()
    report.SeriesInstanceUID, report.Modality = "1.2.3.9", "SR"
    report.save_as(folder / "report.dcm", enforce_file_format=True)
    return folder


def test_scan_groups_images_by_series_and_skips_other_files(pacs_folder: Path) -> None:
    found = {s.description: s.n_slices for s in scan_folder(pacs_folder)}
    assert found == {"AX T1 post": 4, "Sag T2": 3, "AX T1": 5}


def test_several_series_without_selector_lists_each(pacs_folder: Path) -> None:
    with pytest.raises(ValueError, match="3 DICOM series") as err:
        read_volume(pacs_folder)
    message = str(err.value)
    assert str(pacs_folder) in message
    for listed in ("'AX T1 post' (4 slices)", "'Sag T2' (3 slices)", "'AX T1' (5 slices)"):
        assert listed in message


@pytest.mark.parametrize("selector, n_slices", [("sag", 3), ("^ax t1$", 5), ("POST", 4)])
def test_selector_picks_one_series_case_insensitively(
    pacs_folder: Path, selector: str, n_slices: int
) -> None:
    assert read_volume(pacs_folder, series=selector).shape == (1, 128, 128, n_slices)


@pytest.mark.parametrize(
    "selector, problem",
    [("ax t1", "2 DICOM series match"), ("flair", "no DICOM series"), ("ax[", "not a valid regular")],
)
def test_selector_matching_several_or_none_is_an_error(
    pacs_folder: Path, selector: str, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem) as err:
        read_volume(pacs_folder, series=selector)
    assert str(pacs_folder) in str(err.value)
    if "regular" not in problem:
        assert "'AX T1 post' (4 slices)" in str(err.value)


def test_folder_of_non_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="no DICOM images"):
        read_volume(tmp_path)


# ----------------------------------------------------------------------------- slice grid checks
def test_regular_series_with_rounding_jitter_reads(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "ok", [0.0, 5.02, 9.98, 15.01, 20.0])
    ras = Orientation(axcodes="RAS", labels=None)(read_volume(folder))
    assert ras.shape == (1, 128, 128, 5)
    assert [float(ras[0, 64, 64, k]) for k in range(5)] == [100.0 * k + 63 for k in range(5)]  # ramp: col 63


GRID_PROBLEMS = {  # case -> (positions, per-slice header changes {k: {keyword: value}}, words expected)
    "missing slice": (
        [0, 5, 10, 20, 25, 30],
        {},
        ["missing slice", "10 and 20 mm", "median slice spacing 5"],
    ),
    "uneven spacing": ([0, 4, 8, 12, 17, 22, 27, 32], {}, ["uneven slice spacing", "from 4 to 5 mm"]),
    "duplicate": ([0, 5, 5, 10], {}, ["same position", "5 mm"]),
    "pixel spacing": ([0, 5, 10], {2: {"PixelSpacing": [0.7, 0.7]}}, ["PixelSpacing differs", "0.7"]),
    "rows": (
        [0, 5, 10],
        {1: {"Rows": 64, "PixelData": b"\0" * 128 * 64 * 2}},
        ["Rows x Columns", "(64, 128)"],
    ),
    "orientation": (
        [0, 5, 10],
        {1: {"ImageOrientationPatient": [1, 0, 0, 0, 0.9, 0.43589]}},
        ["Orientation"],
    ),
}


@pytest.mark.parametrize("case", sorted(GRID_PROBLEMS))
def test_irregular_slice_grid_is_an_error_naming_folder_and_values(tmp_path: Path, case: str) -> None:
    positions, changes, words = GRID_PROBLEMS[case]
    folder = write_series(tmp_path / case, positions)
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        for keyword, value in changes.get(7 - int(ds.InstanceNumber), {}).items():
            setattr(ds, keyword, value)
        ds.save_as(path)
    with pytest.raises(ValueError) as err:
        read_volume(folder)
    assert str(folder) in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_slices_partly_without_position_are_an_error(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "partial", [0, 5, 10])
    path = sorted(folder.iterdir())[0]
    ds = pydicom.dcmread(path)
    del ds.ImagePositionPatient
    ds.save_as(path)
    with pytest.raises(ValueError, match="1 of 3 slices lack ImagePositionPatient") as err:
        read_volume(folder)
    assert path.name in str(err.value)


# ----------------------------------------------------------------------------- multi-frame
@pytest.mark.parametrize("orientation", [AXIAL, CORONAL], ids=["axial", "coronal"])
@pytest.mark.parametrize("rescale_at", ["per-frame", "shared", "top"])
def test_multiframe_matches_the_single_frame_series_of_the_same_data(
    tmp_path: Path, rescale_at: str, orientation: list[float]
) -> None:
    positions = [0.0, 5.0, 10.0, 15.0]
    multi = write_multiframe(tmp_path / "enhanced.dcm", positions, [2, 0, 3, 1], rescale_at, orientation)
    single = single_frame_reference(tmp_path / "series", positions, orientation)
    got, want = read_volume(multi), read_volume(single)
    assert got.shape == want.shape == (1, 128, 128, 4)
    assert torch.equal(got.as_tensor(), want.as_tensor())
    assert np.allclose(got.affine.numpy(), want.affine.numpy(), atol=1e-6)
    ras = Orientation(axcodes="RAS", labels=None)(got)
    assert np.allclose(sorted(np.abs(ras.affine.numpy()).max(axis=0)[:3]), [0.661468, 0.661468, 5.0])
    if orientation == AXIAL:  # S runs from the first position up: frames come back in position order
        assert [float(ras[0, 100, 64, k]) for k in range(4)] == [float(hu(k)[63, 27]) for k in range(4)]


def test_multiframe_values_geometry_and_no_patient_fields(tmp_path: Path) -> None:
    volume = read_volume(
        write_multiframe(tmp_path / "mf" / "IM0001", [0.0, 5.0, 10.0], [1, 2, 0], "per-frame")
    )
    assert volume.dtype == torch.float32
    assert np.allclose(volume.meta["spacing"], [0.661468, 0.661468, 5.0])
    for k in range(3):  # (X = column, Y = row, Z = slice)
        assert np.array_equal(volume[0, :, :, k].numpy(), hu(k).T)
    assert float(volume.min()) == -1024.0
    assert SECRET.encode() not in pickle.dumps(dict(volume.meta))
    assert read_volume(tmp_path / "mf", series="enhanced").shape == volume.shape  # as a folder, by selector


def test_multiframe_without_frame_positions_is_an_error(tmp_path: Path) -> None:
    path = write_multiframe(tmp_path / "mf.dcm", [0.0, 5.0], [0, 1], "shared")
    ds = pydicom.dcmread(path)
    del ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence
    ds.save_as(path)
    with pytest.raises(ValueError, match="frame 2 of 2 has no ImagePositionPatient") as err:
        read_volume(path)
    assert str(path) in str(err.value)


def test_multiframe_with_a_missing_frame_is_an_error(tmp_path: Path) -> None:
    path = write_multiframe(tmp_path / "mf.dcm", [0.0, 5.0, 10.0, 20.0], [0, 1, 2, 3], "shared")
    with pytest.raises(ValueError, match="missing slice"):
        read_volume(path)


# ----------------------------------------------------------------------------- memory-lean reading
def monai_reference(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(values, affine) as MONAI's PydicomReader reads `folder`, slices stacked by true position order."""
    from monai.data import PydicomReader
    from monai.transforms import LoadImage

    def along_normal(ds: Dataset) -> float:
        cosines = np.asarray(ds.ImageOrientationPatient, dtype=float)
        return float(np.asarray(ds.ImagePositionPatient, dtype=float) @ np.cross(cosines[:3], cosines[3:]))

    datasets = sorted((pydicom.dcmread(p) for p in folder.iterdir()), key=along_normal)
    for rank, ds in enumerate(datasets):  # PydicomReader stacks in InstanceNumber order
        ds.InstanceNumber = rank + 1

    class Given(PydicomReader):
        def read(self, data, **kwargs):
            self.has_series, self.filenames = True, [[str(folder)] * len(datasets)]
            return datasets

    image = LoadImage(reader=Given(fname_regex=None), image_only=True, dtype=np.float32)(str(folder))
    return image.numpy(), image.affine.numpy()


@pytest.mark.parametrize("orientation", [AXIAL, CORONAL], ids=["axial", "coronal"])
def test_slice_by_slice_reader_matches_monai_pydicom_reader(tmp_path: Path, orientation: list[float]) -> None:
    folder = write_series(tmp_path / "s", [0.0, 5.0, 10.0, 15.0, 20.0], orientation=orientation)
    for path in sorted(folder.iterdir())[:2]:  # per-slice rescale: each slice's own slope/intercept
        ds = pydicom.dcmread(path)
        ds.RescaleSlope, ds.RescaleIntercept = 2.5, -1000
        ds.save_as(path)
    want, want_affine = monai_reference(folder)
    got = read_volume(folder)
    assert got.dtype == torch.float32 and got.is_contiguous()
    assert np.array_equal(got[0].numpy(), want)
    assert np.allclose(got.affine.numpy(), want_affine, rtol=0, atol=1e-9)
    assert set(np.unique(got[0, 7, 5].numpy() % 1)) == {0.0, 0.5}  # odd values: some x 2.5
    assert SECRET.encode() not in pickle.dumps(dict(got.meta))


def test_slice_by_slice_reader_hard_coded_geometry(tmp_path: Path) -> None:
    """Values and RAS affine written out: X = column, Y = row, Z = slice; LPS origin (-80, -90, 0) -> RAS."""
    folder = write_series(tmp_path / "s", [0.0, 5.0, 10.0])
    volume = read_volume(folder)
    assert volume.shape == (1, 128, 128, 3)
    spacing = float(TEMPLATE.PixelSpacing[0])
    want = np.array(
        [[-spacing, 0, 0, 80.0], [0, -spacing, 0, 90.0], [0, 0, 5.0, 0.0], [0, 0, 0, 1]], dtype=float
    )
    assert np.allclose(volume.affine.numpy(), want, atol=1e-9)
    slope, intercept = float(TEMPLATE.RescaleSlope), float(TEMPLATE.RescaleIntercept)
    for k in range(3):
        assert np.array_equal(
            volume[0, :, :, k].numpy(), (pixels(k).astype(np.float32) * slope + intercept).T
        )


def test_series_without_geometry_gets_monai_swapped_identity(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "s", [0.0, 5.0])
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        del ds.ImagePositionPatient, ds.ImageOrientationPatient
        ds.save_as(path)
    volume = read_volume(folder)
    assert np.array_equal(volume.affine.numpy(), np.eye(4)[[1, 0, 2, 3]])
    assert float(volume[0, 63, 10, 0]) > float(volume[0, 63, 10, 1])  # InstanceNumber order: slice 1 first


def test_slice_by_slice_reader_keeps_no_pixel_data_in_the_headers(tmp_path: Path) -> None:
    from fusion.modalities.imaging_transforms import _choose_series, _ordered_slices, read_slices

    folder = write_series(tmp_path / "s", [0.0, 5.0, 10.0])
    datasets, files = _ordered_slices(_choose_series(folder, None), folder)
    read_slices(datasets, files, folder)
    assert all(ds.get_item("PixelData", keep_deferred=True).value is None for ds in datasets)  # deferred


def test_float32_resampling_agrees_with_float64() -> None:
    from monai.data import MetaTensor
    from monai.transforms import Spacing

    rng = np.random.default_rng(0)
    data = torch.as_tensor(rng.normal(0, 300, (1, 40, 36, 24)).astype(np.float32))
    affine = torch.as_tensor(np.diag([-0.8, -0.8, 2.5, 1.0]))
    got32 = Spacing(pixdim=(1.1, 1.3, 1.7), mode="bilinear", dtype=torch.float32)(
        MetaTensor(data, affine=affine)
    )
    got64 = Spacing(pixdim=(1.1, 1.3, 1.7), mode="bilinear")(MetaTensor(data, affine=affine))
    assert got32.shape == got64.shape
    scale = float(got64.abs().max())
    assert float((got32.as_tensor().double() - got64.as_tensor().double()).abs().max()) / scale < 1e-4
    assert np.allclose(got32.affine.numpy(), got64.affine.numpy())


def test_in_place_windows_equal_monai_scale_intensity_range() -> None:
    from fusion.modalities.imaging_transforms import apply_intensity, intensity_transform

    data = torch.as_tensor(np.random.default_rng(1).normal(0, 700, (2, 9, 8, 7)).astype(np.float32))
    for windows in ([(-200.0, 300.0)], [(-200.0, 300.0), (-1000.0, 400.0)]):
        transforms = [intensity_transform("ct", w, 10.0) for w in windows]
        want = torch.stack([torch.as_tensor(t(data)) for t in transforms], dim=1)
        assert torch.equal(apply_intensity(transforms, data.clone()), want)
    mri = [intensity_transform("mri", (0.0, 1.0), 10.0)]
    assert torch.equal(apply_intensity(mri, data.clone()), torch.as_tensor(mri[0](data)).unsqueeze(1))


def test_single_slice_series_is_not_a_volume(tmp_path: Path) -> None:
    folder = write_series(tmp_path / "one", [5.0])
    with pytest.raises(ValueError, match="expected a 3D volume, got 2D image of shape") as err:
        read_volume(folder)
    assert str(folder) in str(err.value)
