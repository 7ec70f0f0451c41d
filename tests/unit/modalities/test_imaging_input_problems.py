"""Broken scans are named in words: a truncated DICOM slice (the slice file and its folder), a NIfTI
whose affine is all zeros or singular (the file, before MONAI's Orientation fails on it). Files are
written with pydicom and nibabel; through the item store each is a problem of `fusion-validate`."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fusion.data.cohort import CohortError
from fusion.data.item_store import ItemStore
from fusion.data.records import PatientRecord
from fusion.modalities.imaging import ImagingModality
from fusion.modalities.imaging_roi import check_mask
from tests.unit.modalities.test_dicom_series import write_series

TRUNCATED = r"is truncated: pixel data shorter than Rows x Columns \(\d+ of the 32768 bytes"
ZEROS = r"its affine \(orientation matrix, voxel -> world mm\) is all zeros.*fix the header"
SINGULAR = r"its affine \(orientation matrix, voxel -> world mm\) is singular.*fix the header"


def _modality() -> ImagingModality:
    return ImagingModality("ct", pixdim=(2.0, 2.0, 2.0), spatial_size=(8, 8, 8))


def truncated_series(folder: Path) -> Path:
    """A 4-slice CT series whose second file (by name) lost its last 5000 bytes."""
    write_series(folder, [0.0, 5.0, 10.0, 15.0])
    victim = sorted(folder.iterdir())[1]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 5000])
    return victim


def nifti_with_affine(path: Path, affine: np.ndarray) -> Path:
    """A NIfTI whose header affine (sform, no qform) is `affine`, written as a broken converter would."""
    volume = np.random.default_rng(0).uniform(-100, 100, (16, 16, 16)).astype(np.float32)
    image = nib.Nifti1Image(volume, np.eye(4))
    image.header.set_qform(None, code=0)
    image.header.set_sform(affine, code=1)
    image.update_header = lambda: None  # keep the broken affine: nibabel would refuse to decompose it
    nib.save(image, str(path))
    assert np.array_equal(nib.load(str(path)).affine[:3, :3], affine[:3, :3])
    return path


ZERO_AFFINE = np.zeros((4, 4))
SINGULAR_AFFINE = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [1.0, 1.0, 0, 0], [0, 0, 0, 1.0]])


def test_a_truncated_dicom_slice_names_the_slice_file_and_the_folder(tmp_path):
    folder = tmp_path / "ct"
    victim = truncated_series(folder)
    with pytest.raises(ValueError, match=TRUNCATED) as caught:
        _modality().load(folder)
    assert f"'{folder}'" in str(caught.value) and f"slice file '{victim}'" in str(caught.value)
    assert "reshape" not in str(caught.value)


def test_a_slice_cut_inside_its_header_is_named_not_skipped(tmp_path):
    """pydicom reads such a file without complaint, as an object without pixels: it must not be
    skipped as a non-image file (the volume would silently lose a slice)."""
    folder = tmp_path / "ct"
    write_series(folder, [0.0, 5.0, 10.0, 15.0])
    victim = sorted(folder.iterdir())[2]
    victim.write_bytes(victim.read_bytes()[:600])
    with pytest.raises(ValueError, match=r"is truncated or damaged: a CT Image Storage object without") as e:
        _modality().load(folder)
    assert f"'{folder}'" in str(e.value) and f"DICOM file '{victim}'" in str(e.value)


@pytest.mark.parametrize(("affine", "words"), [(ZERO_AFFINE, ZEROS), (SINGULAR_AFFINE, SINGULAR)])
def test_a_nifti_with_a_zero_or_singular_affine_is_named_when_loading(tmp_path, affine, words):
    path = nifti_with_affine(tmp_path / "ct.nii.gz", affine)
    with pytest.raises(ValueError, match=words) as caught:
        _modality().load(path)
    assert str(path) in str(caught.value) and "Orientation" not in str(caught.value)


@pytest.mark.parametrize(("affine", "words"), [(ZERO_AFFINE, ZEROS), (SINGULAR_AFFINE, SINGULAR)])
def test_the_cheap_check_finds_a_broken_affine_of_a_scan_or_a_mask(tmp_path, affine, words):
    path = nifti_with_affine(tmp_path / "ct.nii.gz", affine)
    (problem,) = _modality().check(path)
    assert str(path) in problem
    assert re.search(words, problem)
    (mask_problem,) = check_mask(path)
    assert str(path) in mask_problem


def test_a_good_affine_passes_every_check(tmp_path):
    path = nifti_with_affine(tmp_path / "ct.nii.gz", np.diag([-2.0, 2.0, 2.0, 1.0]))
    assert _modality().check(path) == []
    assert _modality().load(path).shape == (1, 8, 8, 8)


def test_every_broken_scan_is_a_problem_at_once_naming_patient_column_and_file(tmp_path):
    victim = truncated_series(tmp_path / "p1")
    nan_volume = np.random.default_rng(1).uniform(-100, 100, (16, 16, 16)).astype(np.float32)
    nan_volume[0, 0, 0] = np.nan
    nib.save(nib.Nifti1Image(nan_volume, np.eye(4)), str(tmp_path / "p3.nii.gz"))
    refs = {
        "p1": tmp_path / "p1",
        "p2": nifti_with_affine(tmp_path / "p2.nii.gz", ZERO_AFFINE),
        "p3": tmp_path / "p3.nii.gz",
        "p4": nifti_with_affine(tmp_path / "p4.nii.gz", np.eye(4)),
    }
    records = [PatientRecord(pid, refs={"ct": ref}) for pid, ref in refs.items()]
    with pytest.raises(CohortError) as caught:
        ItemStore({"ct": _modality()}, threads=2).load_all(records)
    problems = {p.patient_id: p for p in caught.value.problems}
    assert sorted(problems) == ["p1", "p2", "p3"]
    assert all(problems[pid].file == str(refs[pid]) and problems[pid].column == "ct" for pid in problems)
    assert f"slice file '{victim}' is truncated" in problems["p1"].message
    assert "is all zeros" in problems["p2"].message
    assert "NaN/inf voxel" in problems["p3"].message
