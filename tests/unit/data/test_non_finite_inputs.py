"""Non-finite values never reach the network silently: each is a ModalityError naming the patient,
the modality and the file, found before training (and, after `transform`, when the batch is built);
a modality that marks missing values with NaN on purpose (`missing_as_nan`: EHR, genomics) keeps them.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from fusion.data.cohort import CohortError
from fusion.data.dataset import FusionDataset
from fusion.data.item_store import ItemStore
from fusion.data.records import PatientRecord
from fusion.modalities.base import Modality, ModalityError
from fusion.modalities.ehr import EHRModality
from fusion.modalities.genomics import GenomicsModality
from fusion.modalities.imaging import ImagingModality


class NpyModality(Modality):
    """Reads a .npy vector; `shift` is added in `transform` (a fitted state gone wrong, when NaN)."""

    def __init__(self, name: str = "vec", missing_nan: bool = False, shift: float = 0.0):
        super().__init__(name=name)
        self.missing_as_nan = missing_nan
        self.shift = shift

    def load(self, ref):
        return torch.as_tensor(np.load(ref))

    def transform(self, item, train):
        return item + self.shift

    def build_encoder(self) -> nn.Module:
        return nn.Identity()

    @property
    def out_dim(self) -> int:
        return 3


def _npy(tmp_path: Path, pid: str, values: list[float]) -> PatientRecord:
    path = tmp_path / f"{pid}.npy"
    np.save(path, np.array(values, dtype=np.float32))
    return PatientRecord(pid, refs={"vec": path})


@pytest.mark.parametrize("cache", ["memory", "disk", "none"])
def test_nan_in_a_loaded_item_is_a_problem_naming_patient_modality_and_file(tmp_path, cache):
    records = [
        _npy(tmp_path, "p0", [1.0, 2.0, 3.0]),
        _npy(tmp_path, "p1", [1.0, np.nan, 3.0]),
        _npy(tmp_path, "p2", [np.inf, 2.0, 3.0]),
    ]
    store = ItemStore({"vec": NpyModality()}, threads=1, cache=cache, cache_dir=tmp_path / "cache")
    with pytest.raises(CohortError) as caught:
        store.load_all(records)
    problems = {p.patient_id: p for p in caught.value.problems}
    assert set(problems) == {"p1", "p2"}  # every broken input at once
    assert problems["p1"].column == "vec" and problems["p1"].file == str(tmp_path / "p1.npy")
    assert "1 NaN/inf value(s)" in problems["p1"].message and "missing_as_nan" in problems["p1"].message
    written = list((tmp_path / "cache").rglob("*.pt"))
    assert len(written) == (1 if cache == "disk" else 0)  # only the good input reaches the disk cache


def test_a_modality_with_nan_for_missing_keeps_nan_but_not_inf(tmp_path):
    records = [_npy(tmp_path, "p0", [1.0, np.nan, 3.0]), _npy(tmp_path, "p1", [1.0, -np.inf, 3.0])]
    store = ItemStore({"vec": NpyModality(missing_nan=True)}, threads=1)
    with pytest.raises(CohortError) as caught:
        store.load_all(records)
    assert [p.patient_id for p in caught.value.problems] == ["p1"]
    assert "1 infinite value(s)" in caught.value.problems[0].message
    assert torch.isnan(store.get(records[0], "vec")[1])


def test_table_modalities_mark_missing_values_with_nan_and_others_do_not():
    assert EHRModality.missing_as_nan and GenomicsModality.missing_as_nan
    assert not ImagingModality.missing_as_nan and not Modality.missing_as_nan


def test_drop_modality_treats_a_non_finite_input_as_missing(tmp_path):
    records = [_npy(tmp_path, "p0", [1.0, np.nan, 3.0])]
    modality = NpyModality()
    modality.on_error = "drop_modality"
    store = ItemStore({"vec": modality}, threads=1)
    store.load_all(records)
    assert store.get(records[0], "vec") is None


def test_nan_made_by_transform_stops_the_batch_naming_the_patient(tmp_path):
    records = [_npy(tmp_path, "p0", [1.0, 2.0, 3.0])]
    modality = NpyModality(shift=float("nan"))
    store = ItemStore({"vec": modality}, threads=1)
    store.load_all(records)
    dataset = FusionDataset(records, store, train=True)
    with pytest.raises(ModalityError, match=r"patient 'p0', modality 'vec'.*transformed input holds 3"):
        dataset[0]
    modality.shift = 0.0
    assert torch.equal(dataset[0]["items"]["vec"], torch.tensor([1.0, 2.0, 3.0]))


def test_a_nifti_with_nan_voxels_is_a_problem_naming_patient_modality_and_file(tmp_path):
    volume = np.random.default_rng(0).uniform(-100, 100, (16, 16, 16)).astype(np.float32)
    volume[4, 5, 6] = np.nan
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), str(path))
    modality = ImagingModality("ct", pixdim=(2.0, 2.0, 2.0), spatial_size=(8, 8, 8))
    store = ItemStore({"ct": modality}, threads=1)
    with pytest.raises(CohortError) as caught:
        store.load_all([PatientRecord("p7", refs={"ct": path})])
    (problem,) = caught.value.problems
    assert (problem.patient_id, problem.column, problem.file) == ("p7", "ct", str(path))
    assert "1 NaN/inf voxel(s)" in problem.message
