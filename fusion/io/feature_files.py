"""Per-patient feature files: tile features (N, D) and their level-0 coordinates (N, 2).

Two formats, chosen by suffix: `.safetensors` (the default we write: safe to load, memory-mapped,
no pickle) and `.h5` / `.hdf5` (what CLAM-style pipelines produce: datasets `features` and
`coords`). Writes are atomic (temporary file + rename), so a killed extraction never leaves a
half-written file under the final name — a resumed run can trust every file it finds.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fusion.errors import FusionError

SAFETENSORS_SUFFIXES = (".safetensors",)
HDF5_SUFFIXES = (".h5", ".hdf5")
FEATURE_SUFFIXES = SAFETENSORS_SUFFIXES + HDF5_SUFFIXES


class FeatureFileError(FusionError, ValueError):
    """A feature file that cannot be written or read as given; names the file and the problem."""


@dataclass
class FeatureBag:
    features: torch.Tensor  # (N, D) float
    coords: torch.Tensor  # (N, 2) int64, level-0 pixel (x, y) of each tile's top-left corner
    metadata: dict[str, str] = field(default_factory=dict)
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. slide_index (N,) for several slides


def is_feature_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(FEATURE_SUFFIXES)


def write_features(
    path: str | Path,
    features: torch.Tensor,
    coords: torch.Tensor,
    metadata: dict[str, object] | None = None,
    extra: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write atomically; `metadata` values are stored as strings (JSON for non-strings); `extra` holds
    more per-tile tensors of length N (e.g. `slide_index` when a patient's tiles come from several slides)."""
    path = Path(path)
    features, coords = torch.as_tensor(features), torch.as_tensor(coords, dtype=torch.int64)
    _check_shapes(path, features, coords)
    extra = {k: torch.as_tensor(v).contiguous() for k, v in (extra or {}).items()}
    for key, value in extra.items():
        if key in ("features", "coords") or value.shape[:1] != features.shape[:1]:
            raise FeatureFileError(
                f"'{path}': extra tensor '{key}' must be new and have N={features.shape[0]} rows"
            )
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if path.name.lower().endswith(SAFETENSORS_SUFFIXES):
            from safetensors.torch import save_file

            tensors = {"features": features.contiguous(), "coords": coords.contiguous(), **extra}
            save_file(tensors, tmp, metadata=meta)
        elif path.name.lower().endswith(HDF5_SUFFIXES):
            import h5py

            with h5py.File(tmp, "w") as h5:
                h5.create_dataset("features", data=features.numpy())
                h5.create_dataset("coords", data=coords.numpy())
                for key, value in extra.items():
                    h5.create_dataset(key, data=value.numpy())
                h5.attrs.update(meta)
        else:
            raise FeatureFileError(f"{path}: unsupported feature file type (use one of {FEATURE_SUFFIXES})")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


@dataclass
class FeatureHeader:
    """What a feature file's header tells without reading its features: their shape (N, D), its per-tile
    ``slide_index`` (N,) when it has one (small), and its metadata."""

    shape: tuple[int, ...]
    slide_index: torch.Tensor | None
    metadata: dict[str, str]


def read_header(path: str | Path) -> FeatureHeader:
    """The header of a feature file (safetensors and HDF5 give shapes without loading); FeatureFileError
    naming the file when it cannot be read."""
    path = Path(path)
    try:
        if path.name.lower().endswith(HDF5_SUFFIXES):
            import h5py

            with h5py.File(path, "r") as h5:
                slide_index = torch.as_tensor(h5["slide_index"][()]) if "slide_index" in h5 else None
                return FeatureHeader(
                    tuple(h5["features"].shape), slide_index, {k: str(v) for k, v in h5.attrs.items()}
                )
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            keys = set(handle.keys())  # noqa: SIM118 - not a dict
            slide_index = handle.get_tensor("slide_index") if "slide_index" in keys else None
            shape = tuple(handle.get_slice("features").get_shape())
            return FeatureHeader(shape, slide_index, dict(handle.metadata() or {}))
    except Exception as err:  # a truncated or corrupt file, a missing dataset: whatever the library raises
        raise FeatureFileError(f"cannot read feature file '{path}' ({type(err).__name__}: {err})") from err


def read_features(path: str | Path) -> FeatureBag:
    """Read a feature file; FeatureFileError (a ValueError) naming the file when unreadable or malformed."""
    path = Path(path)
    try:
        if path.name.lower().endswith(SAFETENSORS_SUFFIXES):
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                tensors = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118 - not a dict
                metadata = dict(handle.metadata() or {})
        elif path.name.lower().endswith(HDF5_SUFFIXES):
            import h5py

            with h5py.File(path, "r") as h5:
                tensors = {k: torch.from_numpy(np.asarray(h5[k])) for k in h5}
                metadata = {k: str(v) for k, v in h5.attrs.items()}
        else:
            raise FeatureFileError(f"unsupported feature file type (use one of {FEATURE_SUFFIXES})")
    except ValueError as err:
        raise FeatureFileError(f"'{path}': {err}") from err
    except Exception as err:  # a truncated or corrupt file, whatever the library raises
        raise FeatureFileError(f"'{path}': cannot read feature file ({type(err).__name__}: {err})") from err
    missing = [k for k in ("features", "coords") if k not in tensors]
    if missing:
        raise FeatureFileError(
            f"'{path}': feature file lacks {missing} (needs 'features' (N, D) and 'coords' (N, 2))"
        )
    features, coords = tensors["features"], tensors["coords"].long()
    _check_shapes(path, features, coords)
    if features.shape[0] == 0:
        raise FeatureFileError(f"'{path}': feature file holds no tiles")
    extra = {k: v for k, v in tensors.items() if k not in ("features", "coords")}
    return FeatureBag(features, coords, metadata, extra)


def _check_shapes(path: Path, features: torch.Tensor, coords: torch.Tensor) -> None:
    if features.ndim != 2 or coords.shape != (features.shape[0], 2):
        shapes = f"{tuple(features.shape)} / {tuple(coords.shape)}"
        raise FeatureFileError(f"'{path}': features must be (N, D) and coords (N, 2); got {shapes}")
