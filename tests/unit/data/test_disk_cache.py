"""The disk cache of `Modality.load` outputs: keys, item encoding, atomic writes, corrupt entries."""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

import fusion.data.disk_cache as disk_cache
from fusion.data.disk_cache import (
    DiskCache,
    NotCacheable,
    cache_mode,
    decode_item,
    describe_reference,
    encode_item,
    entry_key,
)
from fusion.modalities.base import Modality
from fusion.modalities.imaging import ImagingModality

REPO = Path(__file__).resolve().parents[3]


class NpyModality(Modality):
    """Reads a .npy file; `scale` is a load setting, `mean` fitted state, `hook` a non-plain setting."""

    def __init__(self, name: str = "npy", scale: float = 1.0, sizes: tuple = (1, 2), hook=None):
        super().__init__(name=name)
        self.scale, self.sizes, self.hook = scale, sizes, hook
        self.mean: list[float] | None = None

    def load(self, ref):
        return torch.as_tensor(np.load(ref)) * self.scale

    def fit(self, items):
        self.mean = [float(torch.stack(items).mean())]

    def build_encoder(self) -> nn.Module:
        return nn.Identity()

    @property
    def out_dim(self) -> int:
        return 1


class OtherNpyModality(NpyModality):
    pass


@dataclasses.dataclass(frozen=True)
class ImageAndMask:
    image: Path
    mask: Path | None = None

    def __fspath__(self) -> str:
        return str(self.image)


@pytest.fixture
def npy(tmp_path: Path) -> Path:
    path = tmp_path / "a.npy"
    np.save(path, np.arange(6, dtype=np.float32))
    return path


def _touch(path: Path, shift_ns: int) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + shift_ns))


# ------------------------------------------------------------------------------------------ mode
@pytest.mark.parametrize(
    ("value", "mode"),
    [
        (True, "memory"),
        (False, "none"),
        (None, "none"),
        ("DISK", "disk"),
        ("memory", "memory"),
        ("false", "none"),
    ],
)
def test_cache_mode_accepts_the_modes_and_the_old_booleans(value, mode):
    assert cache_mode(value) == mode


def test_cache_mode_names_the_setting_when_wrong():
    with pytest.raises(ValueError, match=r"data.cache must be one of .*'ram'"):
        cache_mode("ram")


# ------------------------------------------------------------------------------------------ cache_key
def test_default_cache_key_holds_constructor_settings_not_fitted_state():
    modality = NpyModality(scale=2.0, sizes=OmegaConf.create([3, 4]), hook=lambda x: x)
    before = modality.cache_key()
    assert '"scale": 2.0' in before and '"sizes": [3, 4]' in before and '"name": "npy"' in before
    assert "hook" not in before  # not a plain value: left out (documented; override cache_key)
    modality.fit([torch.ones(2)])
    assert modality.cache_key() == before  # fitting changes state, not what `load` produces
    assert NpyModality(scale=3.0).cache_key() != NpyModality(scale=2.0).cache_key()


def test_imaging_cache_key_follows_preprocessing_settings():
    a = ImagingModality("ct", spatial_size=(8, 8, 8))
    assert a.cache_key() == ImagingModality("ct", spatial_size=[8, 8, 8]).cache_key()
    assert a.cache_key() != ImagingModality("ct", spatial_size=(8, 8, 16)).cache_key()
    assert a.cache_key() != ImagingModality("ct", spatial_size=(8, 8, 8), pixdim=(2, 2, 2)).cache_key()


# ------------------------------------------------------------------------------------------ keys
def test_key_changes_with_file_content_mtime_settings_and_class(npy):
    modality = NpyModality()
    key = entry_key(modality, npy)
    assert key == entry_key(NpyModality(), npy)  # stable across instances
    assert len(key) == 64
    assert entry_key(NpyModality(scale=2.0), npy) != key
    assert entry_key(OtherNpyModality(), npy) != key
    _touch(npy, 1_000)  # same size, newer mtime
    touched = entry_key(modality, npy)
    assert touched != key
    np.save(npy, np.arange(7, dtype=np.float32))  # new size
    assert entry_key(modality, npy) not in (key, touched)


def test_key_of_a_folder_covers_every_file_inside(tmp_path):
    series = tmp_path / "series"
    (series / "sub").mkdir(parents=True)
    (series / "1.dcm").write_bytes(b"a")
    key = entry_key(NpyModality(), series)
    (series / "sub" / "2.dcm").write_bytes(b"b")
    with_new_file = entry_key(NpyModality(), series)
    assert with_new_file != key
    (series / "1.dcm").write_bytes(b"aa")
    assert entry_key(NpyModality(), series) not in (key, with_new_file)


def test_key_of_a_dataclass_reference_covers_each_path_field(tmp_path, npy):
    mask = tmp_path / "mask.npy"
    np.save(mask, np.zeros(3))
    ref = ImageAndMask(npy, mask)
    key = entry_key(NpyModality(), ref)
    assert key != entry_key(NpyModality(), ImageAndMask(npy, None))
    assert key != entry_key(NpyModality(), npy)
    _touch(mask, 1_000)  # only the mask changed: the item may differ (e.g. a lesion crop)
    assert entry_key(NpyModality(), ref) != key


def test_table_rows_are_described_by_their_values_and_name_no_file(npy):
    values = {"age": 61, "ecog": np.int64(1), "sex": "F", "ldh": np.nan, "x": pd.NA}
    row = pd.Series({**values, "seen": pd.Timestamp("2020-01-02")}, name="P001")
    described, names_files = describe_reference(row)
    assert not names_files
    assert described == describe_reference(row.copy())[0]
    assert described != describe_reference(row.replace({"F": "M"}))[0]
    assert entry_key(NpyModality(), row) is None  # such items stay in memory
    assert describe_reference(pd.Series({"scan": npy}))[1]  # a row holding a path does name a file


def test_unsupported_reference_is_reported():
    with pytest.raises(NotCacheable, match="object"):
        describe_reference({"x": object()})


# ------------------------------------------------------------------------------------------ items
def test_items_round_trip_through_weights_only_files(tmp_path):
    item = {
        "volume": torch.rand(1, 4, 4, 4),
        "num": np.array([1.5, np.nan], dtype=np.float32),
        "cat": ["a", None],
        "shape": (4, 4),
    }
    cache = DiskCache(tmp_path)
    cache.put("ehr", "k" * 64, item)
    payload = cache.path("ehr", "k" * 64).read_bytes().split(b"\n", 1)[1]  # after the checksum line
    torch.load(io.BytesIO(payload), weights_only=True)  # loadable without unpickling code
    hit, back = cache.get("ehr", "k" * 64)
    assert hit
    assert torch.equal(back["volume"], item["volume"])
    assert isinstance(back["num"], np.ndarray) and back["num"].dtype == np.float32
    np.testing.assert_array_equal(back["num"], item["num"])
    assert back["cat"] == ["a", None] and back["shape"] == (4, 4)


def test_a_view_is_saved_without_its_base_storage(tmp_path):
    base = torch.zeros(1000, 1000)
    cache = DiskCache(tmp_path)
    cache.put("ct", "v" * 64, base[:2])
    assert cache.path("ct", "v" * 64).stat().st_size < 100_000
    assert torch.equal(cache.get("ct", "v" * 64)[1], base[:2])


def test_items_it_cannot_hold_are_refused():
    with pytest.raises(NotCacheable, match="object"):
        encode_item(np.array(["a", None], dtype=object))
    with pytest.raises(NotCacheable, match="set"):
        encode_item({1, 2})
    assert decode_item(encode_item([1, "x", None])) == [1, "x", None]


# ------------------------------------------------------------------------------------------ files
def test_a_write_killed_midway_leaves_no_entry_and_no_temp_file(tmp_path, monkeypatch):
    def dies_halfway(fd):  # killed after the bytes were written, before they reached the disk
        raise KeyboardInterrupt

    monkeypatch.setattr(disk_cache.os, "fsync", dies_halfway)
    cache = DiskCache(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        cache.put("ct", "a" * 64, torch.ones(3))
    assert not cache.path("ct", "a" * 64).exists()
    assert list((tmp_path / "ct").iterdir()) == []
    assert cache.get("ct", "a" * 64) == (False, None)


def test_temp_files_of_killed_runs_are_swept_but_fresh_ones_kept(tmp_path):
    folder = tmp_path / "ct"
    folder.mkdir()
    old, fresh = folder / ".abc-old.tmp", folder / ".abc-fresh.tmp"
    old.write_bytes(b"x")
    fresh.write_bytes(b"x")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    DiskCache(tmp_path).put("ct", "b" * 64, torch.ones(2))
    assert not old.exists() and fresh.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_corrupt_entry_is_deleted_and_logged_not_raised(tmp_path, caplog, damage):
    cache = DiskCache(tmp_path)
    cache.put("mri", "c" * 64, torch.rand(2, 8, 8, 8))
    path = cache.path("mri", "c" * 64)
    data = path.read_bytes()
    path.write_bytes(
        {"truncate": data[: len(data) // 2], "garbage": b"not a torch file", "empty": b""}[damage]
    )
    with caplog.at_level(logging.WARNING, logger="fusion.data.disk_cache"):
        assert cache.get("mri", "c" * 64) == (False, None)
    assert not path.exists()
    assert str(path) in caplog.text and "reloading from source" in caplog.text


def test_modality_names_become_safe_folder_names(tmp_path):
    cache = DiskCache(tmp_path)
    assert cache.path("../ct x", "d" * 64).parent == tmp_path / "_ct_x"


@pytest.mark.slow
def test_benchmark_quick_runs_and_prints_its_figures(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "imaging_pipeline.py"),
            "--quick",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "cached / uncached" in result.stdout and "peak RSS" in result.stdout
