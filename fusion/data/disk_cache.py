"""A persistent on-disk cache of `Modality.load` outputs (``data.cache=disk``), so a second run or epoch
reads preprocessed tensors instead of re-reading and resampling every scan.

Why not MONAI's PersistentDataset: our items are per (patient, modality), not per dataset sample, and
the key must cover the modality's settings and the source files' size/mtime, which MONAI's key does not.

An entry's key hashes: the modality class, `Modality.cache_key()` (its settings), the reference (path
strings; table-row values; dataclass fields) and the size + mtime_ns of every file it names (for a
folder, of every file inside). A changed setting or a rewritten file therefore misses and is reloaded.
A change to the *code* of `load` is not seen within one fusion/MONAI version: delete the folder then.
Entries are only ever added; delete ``cache_dir`` to reclaim space.

Files hold only the item (`torch.save` of tensors, numpy arrays, plain containers), read back with
``weights_only=True``; DICOM metadata never reaches them (`load` returns plain tensors). Writes are
atomic (temp file in the same folder, fsync, `os.replace`): a run killed mid-write leaves no half
entry under a final name.

A corrupt entry is never trusted. Each file starts with one header line (`_MAGIC`, then JSON: the
blake2b digest of the payload that follows, and whether the item's floats were all finite); a read
verifies the digest over the very bytes it then loads, so an entry damaged without changing its size
(a bit flip, a bad block, a file overwritten in place) is caught. An entry that fails the check, is
unreadable, holds NaN/inf although its item had none, or was written without a header (an older
fusion) is deleted and logged, and the caller recomputes it from source.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import io
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import monai
import numpy as np
import pandas as pd
import torch

from fusion.modalities.base import Modality
from fusion.version import __version__

log = logging.getLogger(__name__)

CACHE_MODES = ("memory", "disk", "none")
#: bump when the entry format or the key recipe changes: old entries then simply miss
FORMAT_VERSION = 1
_NDARRAY = "__fusion_ndarray__"
_STALE_TMP_S = 3600.0  # temp files older than this were left by a killed run
#: first bytes of an entry with a checksum header; the header line ends with b"\n"
_MAGIC = b"FUSION-CACHE-ENTRY 1 "
_HEADER_MAX = 4096


class NotCacheable(TypeError):
    """An item or reference the disk cache cannot represent (the caller keeps the item in memory)."""


def cache_mode(value: Any) -> str:
    """``memory`` | ``disk`` | ``none``; ``true``/``false`` (the old boolean setting) mean memory/none."""
    if value is None or isinstance(value, bool):
        return "memory" if value else "none"
    mode = str(value).strip().lower()
    mode = {"true": "memory", "false": "none"}.get(mode, mode)
    if mode not in CACHE_MODES:
        raise ValueError(f"data.cache must be one of {list(CACHE_MODES)} (or true/false), got {value!r}")
    return mode


# ------------------------------------------------------------------------------------------ key
def describe_reference(ref: Any) -> tuple[Any, bool]:
    """(JSON-ready description of `ref` with the stat of every file it names, whether it names any).

    Handles paths (``os.PathLike``: files and folders; a plain string is a value, not a path),
    dataclasses (field by field, so every path of e.g. an image + mask reference counts), pandas
    Series (index and values), mappings, lists, tuples and scalars. Anything else raises `NotCacheable`.
    """
    found = [False]
    return _describe(ref, found), found[0]


def _describe(ref: Any, found: list[bool]) -> Any:
    if dataclasses.is_dataclass(ref) and not isinstance(ref, type):
        fields = {f.name: _describe(getattr(ref, f.name), found) for f in dataclasses.fields(ref)}
        return {"dataclass": type(ref).__qualname__, "fields": fields}
    if isinstance(ref, os.PathLike):
        found[0] = True
        path = os.fspath(ref)
        return {"path": path, "stat": _stat_tree(Path(path))}
    if isinstance(ref, pd.Series):
        values = [[_describe(k, found), _describe(v, found)] for k, v in ref.items()]
        return {"series": values, "name": _describe(ref.name, found)}
    if isinstance(ref, Mapping):
        items = [[str(k), _describe(v, found)] for k, v in ref.items()]
        return {"mapping": sorted(items, key=lambda kv: kv[0])}
    if isinstance(ref, list | tuple):
        return [_describe(v, found) for v in ref]
    return _scalar(ref)


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, np.generic):
        value = value.item()
        if not isinstance(value, float):
            return _scalar(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)  # NaN/inf: JSON has no spelling for them
    if value is pd.NA or value is pd.NaT:
        return repr(value)
    if isinstance(value, datetime.date | datetime.timedelta):  # pandas Timestamp / Timedelta too
        return str(value)
    raise NotCacheable(f"cannot build a disk-cache key from a reference holding {type(value).__name__}")


def _stat_tree(path: Path) -> Any:
    """[size, mtime_ns] of a file; [[relative path, size, mtime_ns], ...] of a folder's files."""
    try:
        if not path.is_dir():
            st = path.stat()
            return [st.st_size, st.st_mtime_ns]
        rows = []
        for folder, _, names in os.walk(path):
            for name in names:
                file = Path(folder, name)
                st = file.stat()
                rows.append([file.relative_to(path).as_posix(), st.st_size, st.st_mtime_ns])
        return sorted(rows)
    except OSError as err:  # missing or unreadable: `load` reports it; the key just has to differ
        return f"unreadable: {type(err).__name__}"


def entry_key(modality: Modality, ref: Any) -> str | None:
    """Hex key of `modality.load(ref)`'s result, or None when `ref` names no file.

    Items of references without files (table rows) are not worth a file each: they are as small as
    the reference, which is in memory anyway; the item store keeps them in memory.
    """
    described, names_files = describe_reference(ref)
    if not names_files:
        return None
    cls = type(modality)
    payload = {
        "format": FORMAT_VERSION,
        "versions": [__version__, monai.__version__],
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "settings": modality.cache_key(),
        "ref": described,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------------------ items
def encode_item(item: Any) -> Any:
    """The item as tensors and plain containers (what ``torch.load(weights_only=True)`` accepts)."""
    if isinstance(item, torch.Tensor):
        tensor = item.detach().as_subclass(torch.Tensor)  # a MetaTensor's metadata is dropped
        if tensor.untyped_storage().nbytes() > tensor.numel() * tensor.element_size():
            tensor = tensor.clone()  # a view would save its whole base storage
        return tensor
    if isinstance(item, np.ndarray):
        if item.dtype.kind not in "biufc":
            raise NotCacheable(f"cannot store a numpy array of dtype {item.dtype} in the disk cache")
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(item))}
    if isinstance(item, Mapping):
        return {k: encode_item(v) for k, v in item.items()}
    if isinstance(item, list | tuple):
        return type(item)(encode_item(v) for v in item)
    if item is None or isinstance(item, bool | int | float | str):
        return item
    raise NotCacheable(f"cannot store an item of type {type(item).__name__} in the disk cache")


def decode_item(data: Any) -> Any:
    """Inverse of `encode_item`."""
    if isinstance(data, dict):
        if set(data) == {_NDARRAY}:
            return data[_NDARRAY].numpy()
        return {k: decode_item(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return type(data)(decode_item(v) for v in data)
    return data


def count_non_finite(item: Any, nan: bool = True) -> int:
    """The number of NaN and infinite values (only infinite ones without `nan`) in an item's float
    and complex tensors and arrays, and its float scalars."""
    if isinstance(item, torch.Tensor):
        if not (item.is_floating_point() or item.is_complex()):
            return 0
        return int((~torch.isfinite(item) if nan else torch.isinf(item)).sum())
    if isinstance(item, np.ndarray):
        if item.dtype.kind not in "fc":
            return 0
        return int((~np.isfinite(item) if nan else np.isinf(item)).sum())
    if isinstance(item, Mapping):
        return sum(count_non_finite(v, nan) for v in item.values())
    if isinstance(item, list | tuple):
        return sum(count_non_finite(v, nan) for v in item)
    if isinstance(item, float):
        return int(math.isinf(item) or (nan and math.isnan(item)))
    return 0


def _digest(payload: bytes | memoryview) -> str:
    return hashlib.blake2b(payload, digest_size=32).hexdigest()


class CorruptEntry(ValueError):
    """An entry that must not be used; the message says why in words."""


def pack_entry(item: Any) -> tuple[bytes, memoryview]:
    """An entry's two parts, written one after the other: its header line (the payload's checksum,
    the item's count of NaN/inf values) and the payload (`torch.save` of the encoded item)."""
    buffer = io.BytesIO()
    torch.save(encode_item(item), buffer)
    payload = buffer.getbuffer()
    header = {"blake2b": _digest(payload), "non_finite": count_non_finite(item)}
    return _MAGIC + json.dumps(header, sort_keys=True).encode() + b"\n", payload


def unpack_entry(data: bytes) -> Any:
    """The item of an entry's bytes; `CorruptEntry` when the checksum or finiteness check fails."""
    if not data.startswith(_MAGIC):
        raise CorruptEntry("written without a checksum (by an older fusion), or its header is damaged")
    end = data.find(b"\n", 0, _HEADER_MAX)
    try:
        header = json.loads(data[len(_MAGIC) : end]) if end > 0 else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or not isinstance(header.get("blake2b"), str):
        raise CorruptEntry("its checksum header is damaged")
    payload = memoryview(data)[end + 1 :]
    if _digest(payload) != header["blake2b"]:
        raise CorruptEntry("checksum mismatch: its content changed after it was written")
    item = decode_item(torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True))
    if header.get("non_finite", 0) == 0 and count_non_finite(item):
        raise CorruptEntry("it holds NaN/inf values although the item it was written from had none")
    return item


# ------------------------------------------------------------------------------------------ store
class DiskCache:
    """Entries ``<root>/<modality name>/<key>.pt``; safe to share between runs and processes."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser()
        self._swept: set[str] = set()

    def path(self, name: str, key: str) -> Path:
        return self.root / _folder_name(name) / f"{key}.pt"

    def contains(self, name: str, key: str) -> bool:
        return self.path(name, key).is_file()

    def get(self, name: str, key: str, owner: str | None = None) -> tuple[bool, Any]:
        """(True, item) on a hit; (False, None) when absent, or when corrupt or unreadable: then the
        entry is deleted and a warning names `owner` (e.g. "patient 'p1', modality 'ct'") and why."""
        path = self.path(name, key)
        try:
            data = path.read_bytes()
            return True, unpack_entry(data)
        except FileNotFoundError:
            return False, None
        except CorruptEntry as err:
            why = str(err)
        except Exception as err:  # truncated, corrupt or foreign payload: whatever torch raises
            why = f"unreadable entry ({type(err).__name__}: {err})"
        log.warning(
            "disk cache: entry '%s'%s not used: %s; deleted, reloading from source",
            path,
            f" of {owner}" if owner else "",
            why,
        )
        path.unlink(missing_ok=True)
        return False, None

    def put(self, name: str, key: str, item: Any) -> None:
        """Write atomically. Raises `NotCacheable` for items it cannot hold, OSError for disk failures."""
        header, payload = pack_entry(item)
        path = self.path(name, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._sweep(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{key[:16]}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _sweep(self, folder: Path) -> None:
        """Delete temp files a killed run left behind (once per folder and process)."""
        if str(folder) in self._swept:
            return
        self._swept.add(str(folder))
        cutoff = time.time() - _STALE_TMP_S
        for entry in os.scandir(folder):
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                try:
                    if entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                except OSError:
                    pass  # another process got there first


def _folder_name(name: str) -> str:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip(".")
    return safe or "modality"
