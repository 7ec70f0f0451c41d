"""The cohort `throughput.py` trains on: the demo cohort with histology as precomputed feature bags.

Histology as feature files (`fusion.io.feature_files`) is how 2k-tile bags are fed in practice: the
tiles were encoded once by `fusion-extract-features`, so an epoch reads features, not images.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch


def write_cohort(root: Path, n_patients: int, volume: int, tiles: int, dim: int, seed: int = 0) -> Path:
    """The demo cohort with histology as feature files; returns the manifest path. A cohort written
    earlier into ``root`` with the same arguments is reused (``--workdir``: write a large one once)."""
    from fusion.data.synthetic import write_demo_cohort
    from fusion.io.feature_files import write_features

    params = json.dumps({"n": n_patients, "volume": volume, "tiles": tiles, "dim": dim, "seed": seed})
    marker = root / "throughput_cohort.json"
    if marker.exists() and marker.read_text() == params and (root / "manifest.csv").exists():
        return root / "manifest.csv"
    manifest = write_demo_cohort(
        root,
        n_patients=n_patients,
        seed=seed,
        volume_shape=(volume,) * 3,
        tile_size=8,
        tiles_per_patient=(1, 1),
    )
    frame = pd.read_csv(manifest, dtype={"histology": str}, keep_default_na=False)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    for i, row in frame.iterrows():
        if not row["histology"]:
            continue
        n = int(rng.integers(max(1, tiles // 2), tiles + 1))
        features = torch.randn(n, dim, generator=generator).to(torch.float16)
        coords = torch.from_numpy(rng.integers(0, 100_000, (n, 2)))
        path = root / "features" / f"{row['patient_id']}.safetensors"
        write_features(path, features, coords)
        frame.loc[i, "histology"] = str(path.relative_to(root))
    frame.to_csv(manifest, index=False)
    marker.write_text(params)
    return manifest


def overrides(args: argparse.Namespace, manifest: Path) -> list[str]:
    v, mm = args.volume, 64.0 / args.volume  # the demo's 64 mm field of view on a v^3 grid
    out = [
        f"data.manifest={manifest}",
        f"modality=[{','.join(args.modalities)}]",
        f"data.batch_size={args.batch_size}",
        f"data.cache={args.cache}",
        f"data.cache_dir={args.workdir_path / 'cache'}",
        f"data.augment_on={getattr(args, 'augment_on', 'auto')}",
        "histology" in args.modalities and "modality.histology.input=features",
    ]
    for m in ("ct", "mri", "pet"):
        if m in args.modalities:
            out += [f"modality.{m}.spatial_size=[{v},{v},{v}]", f"modality.{m}.pixdim=[{mm},{mm},{mm}]"]
    if "histology" in args.modalities:
        out += [
            f"modality.histology.feature_dim={args.feature_dim}",
            f"modality.histology.max_tiles_train={args.tiles}",
        ]
    return [o for o in out if o]


def cache_mib(store: Any) -> float:
    """Bytes held by the memory cache (tensors and arrays, walked through dicts and lists)."""

    def size(x: Any) -> int:
        if isinstance(x, torch.Tensor):
            return x.untyped_storage().nbytes()
        if isinstance(x, np.ndarray):
            return x.nbytes
        if isinstance(x, dict):
            return sum(size(v) for v in x.values())
        if isinstance(x, list | tuple):
            return sum(size(v) for v in x)
        return 0

    return sum(size(item) for item in store.items.values()) / 2**20


def collate_timing(tiles: int, dim: int, batch: int) -> dict[str, float]:
    """ms per batch: `HistologyModality.collate` (per-bag copies) vs a Python copy per tile."""
    from fusion.modalities.histology import HistologyModality

    modality = HistologyModality(input="features", feature_dim=dim)
    gen = torch.Generator().manual_seed(0)
    sizes = torch.randint(max(1, tiles // 2), tiles + 1, (batch,), generator=gen)
    bags = [
        {"features": torch.randn(int(n), dim).half(), "coords": torch.zeros(int(n), 2).long()} for n in sizes
    ]

    def per_tile() -> None:
        out = torch.zeros(batch, int(sizes.max()), dim, dtype=torch.float16)
        for b, bag in enumerate(bags):
            for t in range(bag["features"].shape[0]):
                out[b, t] = bag["features"][t]

    timings = {}
    for name, fn in (("vectorised_ms", lambda: modality.collate(bags)), ("per_tile_loop_ms", per_tile)):
        fn()
        start = time.perf_counter()
        for _ in range(3):
            fn()
        timings[name] = (time.perf_counter() - start) / 3 * 1000
    return timings
