"""Body-weight SUV from PET DICOM headers: exact values, reference time, midnight, fallback warning."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import PositronEmissionTomographyImageStorage, generate_uid

from fusion.modalities.imaging_transforms import read_volume
from fusion.modalities.pet_suv import SUVWarning, body_weight_suv, suv_factor

WEIGHT_KG, DOSE_BQ, HALF_LIFE_S = 70.0, 370e6, 6586.2  # F-18 FDG
FACTOR_1H = WEIGHT_KG * 1000 / (DOSE_BQ * 2 ** (-3600 / HALF_LIFE_S))  # injected 08:00, scan 09:00
SLOPES = [0.5, 1.0, 2.0]  # per-slice RescaleSlope, as PET series have


def pet_header(**changes: object) -> Dataset:
    """A PET header injected at 08:00 and scanned from 09:00 on 2024-03-01; `changes` set (None deletes)."""
    ds = Dataset()
    ds.Modality, ds.Units, ds.DecayCorrection = "PT", "BQML", "START"
    ds.PatientWeight = WEIGHT_KG
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = "20240301"
    ds.SeriesTime, ds.AcquisitionTime = "090000", "090000"
    drug = Dataset()
    drug.RadionuclideTotalDose, drug.RadionuclideHalfLife = DOSE_BQ, HALF_LIFE_S
    drug.RadiopharmaceuticalStartTime = "080000"
    ds.RadiopharmaceuticalInformationSequence = Sequence([drug])
    for keyword, value in changes.items():
        target = (
            drug
            if keyword.startswith("Radio") and keyword != "RadiopharmaceuticalInformationSequence"
            else ds
        )
        if value is None:
            delattr(target, keyword)
        else:
            setattr(target, keyword, value)
    return ds


NO_DATES = {"StudyDate": None, "SeriesDate": None, "AcquisitionDate": None}
CONVERTED = {  # case -> (header changes, expected factor)
    "series time": ({}, FACTOR_1H),
    "units GML": ({"Units": "GML", "PatientWeight": None}, 1.0),
    "decay to administration": ({"DecayCorrection": "ADMIN", "SeriesTime": None}, WEIGHT_KG * 1000 / DOSE_BQ),
    "series time rewritten later": ({"SeriesTime": "120000"}, FACTOR_1H),  # earliest AcquisitionTime wins
    "no series time": ({"SeriesTime": None}, FACTOR_1H),
    "start date-time": (
        {"RadiopharmaceuticalStartTime": None, "RadiopharmaceuticalStartDateTime": "20240301080000"},
        FACTOR_1H,
    ),
    "start date-time with offset": (
        {"RadiopharmaceuticalStartDateTime": "20240301080000.000000+0100"},
        FACTOR_1H,
    ),
    "fractional seconds": (
        {"SeriesTime": "085959.5", "AcquisitionTime": "090000.5"},
        FACTOR_1H * 2 ** (-0.5 / HALF_LIFE_S),
    ),
    "midnight, times only": (
        {
            **NO_DATES,
            "RadiopharmaceuticalStartTime": "233000",
            "SeriesTime": "003000",
            "AcquisitionTime": "003000",
        },
        FACTOR_1H,
    ),
    "midnight, dated": (
        {
            "SeriesDate": "20240302",
            "AcquisitionDate": "20240302",
            "SeriesTime": "003000",
            "AcquisitionTime": "003000",
            "RadiopharmaceuticalStartDateTime": "20240301233000",
        },
        FACTOR_1H,
    ),
}


@pytest.mark.parametrize("case", sorted(CONVERTED))
def test_suv_factor(case: str) -> None:
    changes, expected = CONVERTED[case]
    factor, problems = body_weight_suv(pet_header(**changes))
    assert problems == [] and factor == pytest.approx(expected, rel=1e-9)


NOT_CONVERTED = {  # case -> (header changes, words naming what is missing or wrong)
    "no weight": ({"PatientWeight": None}, ["PatientWeight"]),
    "zero weight": ({"PatientWeight": 0}, ["PatientWeight is 0"]),
    "no dose, no half-life": (
        {"RadionuclideTotalDose": None, "RadionuclideHalfLife": None},
        ["RadionuclideTotalDose", "RadionuclideHalfLife"],
    ),
    "no injection time": ({"RadiopharmaceuticalStartTime": None}, ["RadiopharmaceuticalStartTime"]),
    "no scan time": ({"SeriesTime": None, "AcquisitionTime": None}, ["SeriesTime/AcquisitionTime"]),
    "no drug sequence": (
        {"RadiopharmaceuticalInformationSequence": None},
        ["RadiopharmaceuticalInformation"],
    ),
    "counts": ({"Units": "CNTS"}, ["Units is 'CNTS'"]),
    "no decay correction": ({"DecayCorrection": "NONE"}, ["DecayCorrection is 'NONE'"]),
    "injection after scan": (
        {"RadiopharmaceuticalStartDateTime": "20240301100000"},
        ["after the scan start"],
    ),
}


@pytest.mark.parametrize("case", sorted(NOT_CONVERTED))
def test_missing_or_wrong_fields_give_none_and_name_them(case: str) -> None:
    changes, words = NOT_CONVERTED[case]
    header = pet_header(**changes)
    factor, problems = body_weight_suv(header)
    assert factor is None and suv_factor(header) is None
    for word in words:
        assert any(word in problem for problem in problems), problems


def test_earliest_acquisition_time_across_slices_is_used() -> None:
    slices = [pet_header(SeriesTime="130000", AcquisitionTime=t) for t in ("091000", "090000", "092000")]
    assert suv_factor(slices[0], slices) == pytest.approx(FACTOR_1H, rel=1e-9)


# ----------------------------------------------------------------------------- through read_volume
def write_pet_series(folder: Path, **changes: object) -> Path:
    """Three PET slices (CT_small's pixels and geometry) with the header of `pet_header(**changes)`."""
    folder.mkdir(parents=True)
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for k, slope in enumerate(SLOPES):
        ds = copy.deepcopy(template)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = PositronEmissionTomographyImageStorage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.update(pet_header(**changes))
        ds.ImagePositionPatient = [0.0, 0.0, 4.0 * k]
        ds.RescaleSlope, ds.RescaleIntercept = slope, 0
        raw = (100 * (k + 1) + np.arange(ds.Columns, dtype=np.int16)[None, :]).repeat(ds.Rows, axis=0)
        ds.PixelData = raw.astype(np.int16).tobytes()
        ds.save_as(folder / f"PT{k:03d}")
    return folder


def stored_bqml() -> np.ndarray:
    """The activity concentration the series holds, (X = column, Y = row, Z = slice)."""
    columns = np.arange(128, dtype=np.float64)[:, None]
    return np.stack(
        [np.repeat(slope * (100 * (k + 1) + columns), 128, axis=1) for k, slope in enumerate(SLOPES)], -1
    )


def test_pet_series_becomes_exact_suv(tmp_path: Path) -> None:
    folder = write_pet_series(tmp_path / "pet")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SUVWarning)
        suv = read_volume(folder, kind="pet")
    assert suv.dtype == torch.float32 and suv.shape == (1, 128, 128, 3)
    np.testing.assert_allclose(suv[0].numpy(), stored_bqml() * FACTOR_1H, rtol=1e-6)
    np.testing.assert_allclose(read_volume(folder)[0].numpy(), stored_bqml(), rtol=1e-7)  # no kind: as stored


def test_missing_weight_warns_once_naming_file_and_keeps_stored_values(tmp_path: Path) -> None:
    folder = write_pet_series(tmp_path / "pet", PatientWeight=None, RadionuclideHalfLife=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        volume = read_volume(folder, kind="pet")
    suv_warnings = [w for w in caught if issubclass(w.category, SUVWarning)]
    assert len(suv_warnings) == 1
    message = str(suv_warnings[0].message)
    assert str(folder) in message and "PatientWeight" in message and "RadionuclideHalfLife" in message
    np.testing.assert_allclose(volume[0].numpy(), stored_bqml(), rtol=1e-7)


def test_nifti_pet_is_taken_as_suv_already(tmp_path: Path) -> None:
    data = np.random.default_rng(0).uniform(0, 12, (6, 6, 6)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "pet.nii.gz"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SUVWarning)
        assert np.array_equal(read_volume(tmp_path / "pet.nii.gz", kind="pet")[0].numpy(), data)


def test_unknown_kind_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown imaging kind 'spect'"):
        read_volume(tmp_path, kind="spect")
