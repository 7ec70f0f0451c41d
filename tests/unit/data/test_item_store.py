"""The item store: memory / disk / none caching, errors up front, recovery, and no patient data on disk."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import fusion
from fusion.data.cohort import Cohort, CohortError
from fusion.data.item_store import ItemStore
from fusion.data.records import PatientRecord
from fusion.data.synthetic import write_demo_cohort
from fusion.modalities.base import Modality
from fusion.modalities.imaging import ImagingModality
from fusion.pipeline import build_datamodule, build_heads, build_modalities

FAKE_PATIENT_FIELDS = (b"FAKE^PATIENT", b"MRN-FAKE", b"ACC-FAKE", b"Fake General Hospital", b"FAKE^DOCTOR")


class CountingModality(Modality):
    """Loads .npy files (or table rows) and counts the calls, so tests see what came from source."""

    def __init__(self, name: str = "vec", scale: float = 1.0, on_error: str = "raise"):
        super().__init__(name=name, on_error=on_error)
        self.scale = scale
        self.calls = 0

    def load(self, ref):
        self.calls += 1
        if isinstance(ref, pd.Series):
            return {"num": ref.to_numpy(dtype=np.float32), "cat": ["x", None]}
        return torch.as_tensor(np.load(ref)) * self.scale

    def build_encoder(self) -> nn.Module:
        return nn.Identity()

    @property
    def out_dim(self) -> int:
        return 1


@pytest.fixture
def files(tmp_path: Path) -> list[PatientRecord]:
    records = []
    for i in range(4):
        path = tmp_path / "in" / f"p{i}.npy"
        path.parent.mkdir(exist_ok=True)
        np.save(path, np.full(5, i, dtype=np.float32))
        records.append(PatientRecord(f"p{i}", refs={"vec": path}))
    return records


def _store(mode: str, cache_dir: Path | None, **kwargs) -> ItemStore:
    return ItemStore({"vec": CountingModality(**kwargs)}, threads=2, cache=mode, cache_dir=cache_dir)


def _entries(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.rglob("*.pt"))


def test_memory_mode_loads_each_input_once_and_keeps_it(files):
    store = _store("memory", None)
    store.load_all(files)
    assert torch.equal(store.get(files[2], "vec"), torch.full((5,), 2.0))
    store.get(files[2], "vec")
    assert store.modalities["vec"].calls == 4 and len(store.items) == 4


def test_disk_mode_writes_entries_keeps_nothing_in_memory_and_serves_the_next_run(files, tmp_path):
    cache_dir = tmp_path / "cache"
    first = _store("disk", cache_dir)
    first.load_all(files)
    assert first.modalities["vec"].calls == 4 and len(_entries(cache_dir)) == 4
    assert first.items == {}  # bounded memory: items are read back on access
    assert torch.equal(first.get(files[1], "vec"), torch.full((5,), 1.0))

    second = _store("disk", cache_dir)  # a new run
    second.load_all(files)
    assert second.modalities["vec"].calls == 0
    assert second.counts["disk_found"] == 4
    for i, record in enumerate(files):
        assert torch.equal(second.get(record, "vec"), torch.full((5,), float(i)))
    assert second.modalities["vec"].calls == 0 and second.counts["disk_reads"] == 4


def test_a_changed_file_or_setting_is_reloaded(files, tmp_path):
    cache_dir = tmp_path / "cache"
    _store("disk", cache_dir).load_all(files)
    np.save(files[0].refs["vec"], np.full(5, 7, dtype=np.float32))
    rerun = _store("disk", cache_dir)
    rerun.load_all(files)
    assert rerun.modalities["vec"].calls == 1
    assert torch.equal(rerun.get(files[0], "vec"), torch.full((5,), 7.0))

    scaled = _store("disk", cache_dir, scale=10.0)
    scaled.load_all(files)
    assert scaled.modalities["vec"].calls == 4
    assert torch.equal(scaled.get(files[1], "vec"), torch.full((5,), 10.0))


def test_a_corrupt_entry_is_reloaded_from_source_during_training(files, tmp_path, caplog):
    cache_dir = tmp_path / "cache"
    store = _store("disk", cache_dir)
    store.load_all(files)
    for entry in _entries(cache_dir):
        entry.write_bytes(entry.read_bytes()[:40])  # e.g. a disk that filled up
    with caplog.at_level(logging.WARNING):
        item = store.get(files[3], "vec")
    assert torch.equal(item, torch.full((5,), 3.0))
    assert "not used" in caplog.text and "patient 'p3', modality 'vec'" in caplog.text
    assert store.modalities["vec"].calls == 5
    assert torch.equal(_store("disk", cache_dir).get(files[3], "vec"), item)  # rewritten whole


def test_a_run_starts_cleanly_when_entries_vanish(files, tmp_path):
    cache_dir = tmp_path / "cache"
    store = _store("disk", cache_dir)
    store.load_all(files)
    for entry in _entries(cache_dir):
        entry.unlink()
    assert torch.equal(store.get(files[0], "vec"), torch.zeros(5))


def test_a_disk_store_survives_pickling_for_dataloader_workers(files, tmp_path):
    store = _store("disk", tmp_path / "cache")
    store.load_all(files)
    copy = pickle.loads(pickle.dumps(store))  # what a spawned DataLoader worker receives
    assert torch.equal(copy.get(files[2], "vec"), torch.full((5,), 2.0))
    assert copy.modalities["vec"].calls == 4  # read from disk, not loaded again


def test_none_mode_keeps_nothing(files):
    store = _store("none", None)
    for _ in range(2):
        assert torch.equal(store.get(files[1], "vec"), torch.ones(5))
    assert store.modalities["vec"].calls == 2 and store.items == {}


def test_broken_inputs_are_all_reported_up_front_with_disk_cache(files, tmp_path):
    files[1].refs["vec"].write_bytes(b"not numpy")
    files[3].refs["vec"].unlink()
    store = _store("disk", tmp_path / "cache")
    with pytest.raises(CohortError) as err:
        store.load_all(files)
    message = str(err.value)
    assert "p1" in message and "p3" in message and "p1.npy" in message
    assert len(_entries(tmp_path / "cache")) == 2

    dropping = _store("disk", tmp_path / "cache", on_error="drop_modality")
    dropping.load_all(files)
    assert dropping.get(files[1], "vec") is None and dropping.get(files[0], "vec") is not None


def test_table_rows_stay_in_memory_with_disk_cache(tmp_path):
    rows = [
        PatientRecord(f"p{i}", refs={"vec": pd.Series({"a": i, "b": 2.0}, name=f"p{i}")}) for i in range(3)
    ]
    store = _store("disk", tmp_path / "cache")
    store.load_all(rows)
    assert not _entries(tmp_path / "cache") and len(store.items) == 3
    assert store.get(rows[2], "vec")["num"][0] == 2.0


def test_items_the_disk_cannot_hold_stay_in_memory(files, tmp_path, caplog):
    class SetModality(CountingModality):
        def load(self, ref):
            return {1, 2}

    store = ItemStore({"vec": SetModality()}, cache="disk", cache_dir=tmp_path / "cache")
    with caplog.at_level(logging.WARNING):
        store.load_all(files)
    assert store.get(files[0], "vec") == {1, 2}
    assert caplog.text.count("kept in memory") == 1  # once per modality, not per patient


def test_an_unwritable_cache_folder_degrades_to_memory(files, tmp_path, caplog):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    store = _store("disk", blocker / "cache")
    with caplog.at_level(logging.WARNING):
        store.load_all(files)
    assert torch.equal(store.get(files[2], "vec"), torch.full((5,), 2.0))
    assert "cannot write" in caplog.text and len(store.items) == 4


def test_disk_mode_needs_a_folder():
    with pytest.raises(ValueError, match="data.cache_dir"):
        ItemStore({}, cache="disk")


def test_config_selects_the_cache(tmp_path):
    cfg = fusion.compose()
    assert cfg.data.cache == "memory" and cfg.data.cache_dir.endswith("/preprocessed")
    cfg = fusion.compose(
        [f"data.manifest={tmp_path / 'm.csv'}", "data.cache=disk", f"data.cache_dir={tmp_path}"]
    )
    datamodule = build_datamodule(cfg, _empty_cohort(tmp_path), build_modalities(cfg), build_heads(cfg))
    assert datamodule.store.mode == "disk" and datamodule.store.disk.root == tmp_path
    legacy = fusion.compose(["data.cache=false"])
    assert build_datamodule(legacy, _empty_cohort(tmp_path), {}, {}).store.mode == "none"


def _empty_cohort(tmp_path: Path) -> Cohort:
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"patient_id": ["a"]}).to_csv(manifest, index=False)
    return Cohort.load(manifest)


def test_cached_demo_inputs_hold_no_dicom_patient_fields(tmp_path):
    manifest = write_demo_cohort(
        tmp_path / "cohort",
        n_patients=4,
        seed=2,
        volume_shape=(12, 12, 12),
        tiles_per_patient=(1, 2),
        tile_size=16,
        n_genes=8,
        modality_missing_rate=0.0,
    )
    raw = b"".join(p.read_bytes() for p in (tmp_path / "cohort" / "ct").rglob("*.dcm"))
    assert all(fake in raw for fake in FAKE_PATIENT_FIELDS)  # the check below can fail
    cohort = Cohort.load(manifest)
    modalities = {
        "ct": ImagingModality("ct", kind="ct", spatial_size=(8, 8, 8), pixdim=(6, 6, 6)),
        "mri": ImagingModality("mri", kind="mri", sequences=["t1", "t2", "flair"], spatial_size=(8, 8, 8)),
        "pet": ImagingModality("pet", kind="pet", spatial_size=(8, 8, 8), pixdim=(8, 8, 8)),
    }
    records = [
        PatientRecord(pid, refs={name: m.gather(cohort)[pid] for name, m in modalities.items()})
        for pid in cohort.patient_ids
    ]
    store = ItemStore(modalities, cache="disk", cache_dir=tmp_path / "cache")
    store.load_all(records)
    entries = _entries(tmp_path / "cache")
    assert len(entries) == 12
    for entry in entries:
        data = entry.read_bytes()
        for fake in FAKE_PATIENT_FIELDS + tuple(pid.encode() for pid in cohort.patient_ids):
            assert fake not in data, f"{fake!r} found in {entry}"
    item = store.get(records[0], "ct")
    assert torch.equal(item, modalities["ct"].load(records[0].refs["ct"]))
