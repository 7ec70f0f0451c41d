"""A disk-cache entry is never trusted blindly: checksum, non-finite values, entries of older versions.

Scans are NIfTI files written with nibabel, preprocessed by the CT modality as in training.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from fusion.data.disk_cache import DiskCache, encode_item, pack_entry
from fusion.data.item_store import ItemStore
from fusion.data.records import PatientRecord
from fusion.modalities.imaging import ImagingModality

PATIENTS = ("p0", "p1", "p2")


class CountingCT(ImagingModality):
    """The CT modality, counting the scans it reads from source."""

    def __init__(self) -> None:
        super().__init__("ct", kind="ct", pixdim=(2.0, 2.0, 2.0), spatial_size=(16, 16, 16))
        self.calls = 0

    def load(self, ref):
        self.calls += 1
        return super().load(ref)


@pytest.fixture
def records(tmp_path: Path) -> list[PatientRecord]:
    rng = np.random.default_rng(0)
    out = []
    for pid in PATIENTS:
        path = tmp_path / "scans" / f"{pid}.nii.gz"
        path.parent.mkdir(exist_ok=True)
        volume = rng.uniform(-300.0, 400.0, (32, 32, 32)).astype(np.float32)
        nib.save(nib.Nifti1Image(volume, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))
        out.append(PatientRecord(pid, refs={"ct": path}))
    return out


def _store(cache_dir: Path) -> ItemStore:
    return ItemStore({"ct": CountingCT()}, threads=1, cache="disk", cache_dir=cache_dir)


def _entry(store: ItemStore, record: PatientRecord) -> Path:
    return store._on_disk.path("ct", store.keys[(record.patient_id, "ct")])


def _fresh(records: list[PatientRecord]) -> dict[str, torch.Tensor]:
    modality = CountingCT()
    return {r.patient_id: modality.load(r.refs["ct"]) for r in records}


def _payload(data: bytes) -> torch.Tensor:
    """What the entry's payload holds, read without any check (as the cache did before checksums)."""
    return torch.load(io.BytesIO(data.split(b"\n", 1)[1]), weights_only=True)


def test_an_entry_corrupted_without_changing_its_size_is_recomputed_and_rewritten(records, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    first = _store(cache_dir)
    first.load_all(records)
    victim = records[1]
    path = _entry(first, victim)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0x5A for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))
    assert path.stat().st_size == len(data)
    # the flip hit the values: a reader without a checksum would use a wrong volume
    assert not torch.equal(_payload(bytes(data)), _fresh([victim])["p1"])

    rerun = _store(cache_dir)
    rerun.load_all(records)
    assert rerun.modalities["ct"].calls == 0  # entries are found; the check is on read
    with caplog.at_level(logging.WARNING, logger="fusion.data.disk_cache"):
        items = {r.patient_id: rerun.get(r, "ct") for r in records}
    fresh = _fresh(records)
    for pid in PATIENTS:
        assert torch.equal(items[pid], fresh[pid]), pid
    assert rerun.modalities["ct"].calls == 1  # only the corrupt entry came from source
    assert "patient 'p1', modality 'ct'" in caplog.text and "checksum mismatch" in caplog.text
    assert "p0" not in caplog.text and "p2" not in caplog.text
    assert path.read_bytes() != bytes(data)  # rewritten

    caplog.clear()
    third = _store(cache_dir)
    third.load_all(records)
    with caplog.at_level(logging.WARNING, logger="fusion.data.disk_cache"):
        assert torch.equal(third.get(victim, "ct"), fresh["p1"])
    assert third.modalities["ct"].calls == 0 and caplog.text == ""


def test_an_entry_without_a_checksum_is_recomputed_once(records, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    first = _store(cache_dir)
    first.load_all(records)
    path = _entry(first, records[0])
    wrong = torch.zeros(1, 16, 16, 16)
    torch.save(encode_item(wrong), path)  # the entry format of older versions: no header

    with caplog.at_level(logging.WARNING, logger="fusion.data.disk_cache"):
        item = first.get(records[0], "ct")
    assert torch.equal(item, _fresh(records[:1])["p0"])
    assert "patient 'p0', modality 'ct'" in caplog.text and "without a checksum" in caplog.text

    caplog.clear()
    again = _store(cache_dir)
    again.load_all(records)
    with caplog.at_level(logging.WARNING, logger="fusion.data.disk_cache"):
        assert torch.equal(again.get(records[0], "ct"), item)
    assert again.modalities["ct"].calls == 0 and caplog.text == ""


def _forged(item: torch.Tensor, non_finite: int) -> bytes:
    """A well-formed entry (valid checksum) whose header claims `non_finite` NaN/inf values."""
    header, payload = pack_entry(item)
    fields = json.loads(header.split(b" ", 2)[2])
    fields["non_finite"] = non_finite
    return header.split(b" ", 2)[0] + b" 1 " + json.dumps(fields).encode() + b"\n" + bytes(payload)


def test_an_entry_with_nan_where_the_source_had_none_is_recomputed_naming_the_patient(
    records, tmp_path, caplog
):
    cache_dir = tmp_path / "cache"
    store = _store(cache_dir)
    store.load_all(records)
    path = _entry(store, records[2])
    poisoned = _fresh(records[2:])["p2"].clone()
    poisoned[0, 3, 3, 3] = float("nan")
    path.write_bytes(_forged(poisoned, non_finite=0))

    with caplog.at_level(logging.WARNING, logger="fusion.data.disk_cache"):
        item = store.get(records[2], "ct")
    assert torch.isfinite(item).all() and torch.equal(item, _fresh(records[2:])["p2"])
    assert "patient 'p2', modality 'ct'" in caplog.text and "NaN/inf" in caplog.text


def test_an_item_with_nan_for_missing_values_is_kept_as_written(tmp_path):
    cache = DiskCache(tmp_path)
    item = {"num": np.array([1.0, np.nan, 3.0], dtype=np.float32), "cat": ["a", None]}
    cache.put("ehr", "e" * 64, item)
    hit, back = cache.get("ehr", "e" * 64)
    assert hit and np.array_equal(back["num"], item["num"], equal_nan=True) and back["cat"] == ["a", None]
