"""Feature extraction benchmark: the engine (DataLoader, batches, workers) vs a naive per-tile loop.

Both encode the SAME tiles (PNG files in tile folders, one folder per patient) with the SAME frozen
model (MONAI ResNet-50, random init unless ``--weights``), in one run, on CPU and on CUDA when
available. The naive loop is what a first script does: for each tile, PIL open -> tensor -> model,
one tile at a time. Tiles/s are wall-clock over all tiles, file reading included; the features of
the two paths are compared so the speed-up is not bought with different results.

    python benchmarks/feature_extraction.py            # 64 tiles at 224 px: 1-3 min on 2 shared cores
    python benchmarks/feature_extraction.py --quick    # a smoke run of a few seconds
    python benchmarks/feature_extraction.py --tiles 512 --batch-size 64 --workers 2 --encoder resnet50
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from fusion.features.extract import autocast_dtype, extract_cohort
from fusion.io.feature_files import read_features
from fusion.nn.tile_encoders import TileEncoder, build_tile_encoder


def write_cohort(root: Path, n_tiles: int, tile_size: int, patients: int, seed: int = 0) -> Path:
    """`patients` folders of random-texture PNG tiles, `n_tiles` in all, and their manifest."""
    rng = np.random.default_rng(seed)
    ids = [f"b{p:03d}" for p in range(patients)]
    for p, pid in enumerate(ids):
        folder = root / "tiles" / pid
        folder.mkdir(parents=True)
        for i in range(p, n_tiles, patients):
            base = rng.integers(120, 240, (1, 1, 3))
            noise = rng.integers(-40, 40, (tile_size, tile_size, 3))
            rgb = np.clip(base + noise, 0, 255).astype(np.uint8)
            Image.fromarray(rgb).save(folder / f"tile_x{i * tile_size}_y0.png")
    manifest = root / "manifest.csv"
    pd.DataFrame({"patient_id": ids, "histology": [f"tiles/{pid}" for pid in ids]}).to_csv(
        manifest, index=False
    )
    return manifest


@torch.inference_mode()
def naive(
    manifest: Path, encoder: TileEncoder, device: torch.device, precision: str
) -> dict[str, torch.Tensor]:
    """One tile at a time: PIL open -> tensor -> model; the same normalisation as the engine."""
    dtype = autocast_dtype(precision, device)
    out = {}
    for pid in pd.read_csv(manifest)["patient_id"]:
        feats = []
        for file in sorted((manifest.parent / "tiles" / pid).glob("*.png")):
            with Image.open(file) as image:
                tile = torch.from_numpy(np.asarray(image.convert("RGB")).copy())[None].to(device)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                feats.append(encoder(tile).float().cpu())
        out[pid] = torch.cat(feats)
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(args: argparse.Namespace, device: torch.device, manifest: Path, work: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random init is what we time here
        torch.manual_seed(0)
        encoder = build_tile_encoder(args.encoder, weights=args.weights).to(device)
    name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(
        f"\n== device: {name}; {args.encoder}, {args.tiles} tiles of {args.tile_size} px, "
        f"precision {args.precision}"
    )
    # warm-up (first-call allocations, cuDNN autotune) on a few tiles, untimed
    with torch.inference_mode():
        encoder(torch.zeros(2, args.tile_size, args.tile_size, 3, dtype=torch.uint8, device=device))
    sync(device)
    start = time.perf_counter()
    reference = naive(manifest, encoder, device, args.precision)
    sync(device)
    naive_s = time.perf_counter() - start
    out = work / f"features-{device.type}"
    start = time.perf_counter()
    extract_cohort(
        manifest,
        out,
        encoder,
        tile_size=args.tile_size,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=str(device),
        precision=args.precision,
        progress=False,
    )
    sync(device)
    engine_s = time.perf_counter() - start
    diff = max(
        (read_features(out / f"{pid}.safetensors").features - ref).abs().max().item()
        / max(ref.abs().max().item(), 1e-12)
        for pid, ref in reference.items()
    )
    print(
        f"naive loop (1 tile/call, PIL -> tensor -> model): {naive_s:7.2f} s = "
        f"{args.tiles / naive_s:8.1f} tiles/s"
    )
    print(
        f"engine (batch {args.batch_size}, {args.workers} workers):      {engine_s:7.2f} s = "
        f"{args.tiles / engine_s:8.1f} tiles/s  (includes writing {args.patients} feature files)"
    )
    print(f"speed-up: {naive_s / engine_s:.2f}x; max |engine - naive| / max|naive| = {diff:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiles", type=int, default=64)
    parser.add_argument("--tile-size", type=int, default=224)
    parser.add_argument("--patients", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--encoder", default="resnet50")
    parser.add_argument("--weights", default=None, help="a local weights file (default: random init)")
    parser.add_argument("--precision", default="auto", help="auto = bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when available")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--quick", action="store_true", help="smoke run: 16 tiles of 64 px")
    args = parser.parse_args()
    if args.quick:
        args.tiles, args.tile_size, args.patients, args.batch_size = 16, 64, 2, 8
    logging.getLogger("fusion").setLevel(logging.WARNING)
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    work = Path(tempfile.mkdtemp(prefix="fusion-bench-features-", dir=args.workdir))
    try:
        start = time.perf_counter()
        manifest = write_cohort(work / "cohort", args.tiles, args.tile_size, args.patients)
        print(
            f"wrote {args.tiles} PNG tiles for {args.patients} patients "
            f"in {time.perf_counter() - start:.1f} s"
        )
        print(f"torch {torch.__version__}; torch threads {torch.get_num_threads()}")
        for device in devices:
            bench(args, torch.device(device), manifest, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
