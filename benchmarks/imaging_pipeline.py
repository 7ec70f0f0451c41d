"""Imaging pipeline benchmark: uncached vs disk-cached loading, and peak memory for one large CT series.

1. For demo cohorts at each ``--sizes`` (CT DICOM series, MRI t1/t2/flair NIfTI, PET NIfTI), the
   volumes per second of ``Modality.load`` from source (epoch 1, also writing the disk cache) and of
   reading the same items back from the disk cache (epoch 2), side by side in one run. The imaging
   modalities use ``spatial_size`` = the volume shape and ``pixdim`` = 64 mm / size, so the demo's
   field of view fills the grid (as the shipped 32^3 configs do at 2 mm).
2. Peak RSS of a fresh process that loads one generated 512 x 512 x 300 CT series (written with
   pydicom) through ``ImagingModality`` and the disk cache, against the volume's own float32 size.

    python benchmarks/imaging_pipeline.py            # the default run: a few minutes on 2 cores
    python benchmarks/imaging_pipeline.py --quick    # a smoke run of a few seconds

Everything is written under a temporary folder (``--workdir`` to choose it) and deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import monai
import numpy as np
import torch

import fusion
from fusion.data.cohort import Cohort
from fusion.data.item_store import ItemStore
from fusion.data.records import PatientRecord
from fusion.data.synthetic import write_demo_cohort
from fusion.data.synthetic.dicom import fake_identifiers, write_ct_series
from fusion.modalities.imaging import ImagingModality

FIELD_OF_VIEW_MM = 64.0  # the demo cohort's MRI field of view (fills the grid at 64 mm / size)
CT_SPACING_MM = (0.78, 0.78, 1.25)  # in-plane column/row, slice: a typical abdominal CT
MIB = 2**20


def imaging_modalities(size: int) -> dict[str, ImagingModality]:
    pixdim, shape = (FIELD_OF_VIEW_MM / size,) * 3, (size,) * 3
    return {
        "ct": ImagingModality("ct", kind="ct", pixdim=pixdim, spatial_size=shape, augment=False),
        "mri": ImagingModality(
            "mri",
            kind="mri",
            sequences=["t1", "t2", "flair"],
            pixdim=pixdim,
            spatial_size=shape,
            augment=False,
        ),
        "pet": ImagingModality("pet", kind="pet", pixdim=pixdim, spatial_size=shape, augment=False),
    }


def bench_cohort(size: int, n_patients: int, workdir: Path, threads: int | None) -> dict[str, float]:
    """Write a cohort, then time epoch 1 (from source, writing the cache) and epoch 2 (from the cache)."""
    start = time.perf_counter()
    manifest = write_demo_cohort(
        workdir / f"cohort_{size}",
        n_patients=n_patients,
        seed=0,
        volume_shape=(size, size, size),
        tile_size=16,
        tiles_per_patient=(1, 1),
        n_genes=8,
        modality_missing_rate=0.0,
    )
    written_s = time.perf_counter() - start
    cohort = Cohort.load(manifest)
    modalities = imaging_modalities(size)
    refs = {name: m.gather(cohort) for name, m in modalities.items()}
    records = [PatientRecord(pid, refs={n: refs[n][pid] for n in modalities}) for pid in cohort.patient_ids]
    jobs = [(r, n) for r in records for n, ref in r.refs.items() if ref is not None]
    cache_dir = workdir / f"cache_{size}"

    store = ItemStore(modalities, threads=threads, cache="disk", cache_dir=cache_dir)
    write_s = _time_writes(store)
    drop_page_cache(manifest.parent)  # a first run reads its scans from disk, not from RAM
    start = time.perf_counter()
    store.load_all(records)  # epoch 1: every volume read from source, preprocessed, written to disk
    uncached_s = time.perf_counter() - start

    rerun = ItemStore(imaging_modalities(size), threads=threads, cache="disk", cache_dir=cache_dir)
    start = time.perf_counter()
    rerun.load_all(records)  # the next run's up-front check: every entry found, nothing loaded
    check_s = time.perf_counter() - start
    assert rerun.counts["loaded"] == 0, rerun.counts
    timings = {}
    for state in ("cold", "warm"):  # entries read from disk, then again from the OS page cache
        if state == "cold":
            drop_page_cache(cache_dir)
        start = time.perf_counter()
        nbytes = sum(rerun.get(record, name).numel() * 4 for record, name in jobs)  # epoch 2
        timings[state] = time.perf_counter() - start
    on_disk = sum(p.stat().st_size for p in cache_dir.rglob("*.pt"))
    return {
        "size": size,
        "patients": n_patients,
        "volumes": len(jobs),
        "written_s": written_s,
        "uncached_s": uncached_s,
        "write_thread_s": write_s[0],
        "check_s": check_s,
        "cold_s": timings["cold"],
        "warm_s": timings["warm"],
        "mib": nbytes / MIB,
        "cache_mib": on_disk / MIB,
        "threads": store.threads,
    }


def drop_page_cache(folder: Path) -> None:
    """Evict the files under `folder` from the OS page cache (fsync, then POSIX_FADV_DONTNEED; no root)."""
    if not hasattr(os, "posix_fadvise"):
        return
    for path in folder.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def _time_writes(store: ItemStore) -> list[float]:
    """Accumulate the (thread-)seconds spent in disk-cache writes during `load_all`."""
    total = [0.0]
    put = store.disk.put

    def timed_put(*args, **kwargs):
        start = time.perf_counter()
        try:
            return put(*args, **kwargs)
        finally:
            total[0] += time.perf_counter() - start

    store.disk.put = timed_put
    return total


def write_large_ct(folder: Path, shape: tuple[int, int, int]) -> None:
    """A body-like phantom (air, soft tissue ellipse, a bright 'spine') as one DICOM file per slice."""
    cols, rows, slices = shape
    x = np.linspace(-1, 1, cols, dtype=np.float32)[:, None]
    y = np.linspace(-1, 1, rows, dtype=np.float32)[None, :]
    body = (x / 0.8) ** 2 + (y / 0.6) ** 2 < 1
    plane = np.where(body, 40.0, -1000.0).astype(np.float32)
    plane[(x**2 + (y - 0.35) ** 2) < 0.01] = 700.0
    hu = np.repeat(plane[:, :, None], slices, axis=2)
    hu += np.linspace(0, 50, slices, dtype=np.float32)[None, None, :]
    spacing = np.asarray(CT_SPACING_MM)
    origin = -spacing * (np.asarray(shape) - 1) / 2.0
    identity = fake_identifiers(0, 60, 0)
    write_ct_series(folder, hu, spacing, origin, "BENCH", identity, "F", 60, 0, np.random.default_rng(0))


def child_rss(series: str, pixdim: list[float], spatial_size: list[int], cache_dir: str) -> None:
    """Runs in a fresh process: load one series through ItemStore(disk) and print memory as JSON."""
    modality = ImagingModality("ct", kind="ct", pixdim=pixdim, spatial_size=spatial_size, augment=False)
    store = ItemStore({"ct": modality}, threads=1, cache="disk", cache_dir=cache_dir)
    before = _proc_status()
    start = time.perf_counter()
    store.load_all([PatientRecord("BENCH", refs={"ct": Path(series)})])
    seconds = time.perf_counter() - start
    after = _proc_status()
    print(json.dumps({"rss_before_kib": before["VmRSS"], "peak_kib": after["VmHWM"], "seconds": seconds}))


def _proc_status() -> dict[str, int]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


def bench_rss(shape: tuple[int, int, int], workdir: Path) -> list[dict[str, float]]:
    series = workdir / "large_ct"
    start = time.perf_counter()
    write_large_ct(series, shape)
    written_s = time.perf_counter() - start
    volume_mib = np.prod(shape) * 4 / MIB
    iso = 1.5
    crop = [min(256, int(round(n * s / iso))) for n, s in zip(shape, CT_SPACING_MM, strict=True)]
    settings = [
        ("keep the native grid", list(CT_SPACING_MM), list(shape)),
        (f"resample to {iso} mm, crop/pad to {crop}", [iso] * 3, crop),
    ]
    results = []
    for label, pixdim, size in settings:
        args = [sys.executable, __file__, "--child-rss", str(series), json.dumps(pixdim), json.dumps(size)]
        args.append(str(workdir / f"rss_cache_{len(results)}"))
        out = subprocess.run(args, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise RuntimeError(f"RSS child failed for '{label}':\n{out.stderr[-3000:]}")
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        peak, before = figures["peak_kib"] / 1024, figures["rss_before_kib"] / 1024
        results.append(
            {
                "label": label,
                "pixdim": pixdim,
                "size": size,
                "peak_mib": peak,
                "before_mib": before,
                "volume_mib": volume_mib,
                "seconds": figures["seconds"],
                "written_s": written_s,
            }
        )
    return results


def report(cohorts: list[dict[str, float]], rss: list[dict[str, float]], shape: tuple[int, int, int]) -> None:
    threads = cohorts[0]["threads"] if cohorts else "-"
    print(
        f"imaging pipeline benchmark: fusion {fusion.__version__}, torch {torch.__version__}, "
        f"monai {monai.__version__}, {os.cpu_count()} CPUs, {threads} loader threads"
    )
    for c in cohorts:
        n = c["volumes"]
        uncached = n / c["uncached_s"]
        print(
            f"\ncohort {c['size']}^3: {c['patients']} patients, {n} volumes "
            f"(CT DICOM, MRI 3 sequences, PET), written in {c['written_s']:.1f} s; "
            f"{c['cache_mib']:.0f} MiB in the disk cache"
        )
        print(
            f"  uncached  epoch 1, load from source + write cache  {n:4d} in {c['uncached_s']:7.2f} s "
            f"= {uncached:7.1f} volumes/s  (of which cache writes {c['write_thread_s']:.2f} thread-s)"
        )
        print(f"  next run  up-front check, all found on disk         {n:4d} in {c['check_s']:7.2f} s")
        for state, what in (("cold", "from disk      "), ("warm", "from page cache")):
            seconds = c[f"{state}_s"]
            print(
                f"  cached    epoch 2, {what}                  {n:4d} in {seconds:7.2f} s "
                f"= {n / seconds:7.1f} volumes/s  ({c['mib'] / seconds:.0f} MiB/s of float32)"
            )
        print(
            f"  cached / uncached: {c['uncached_s'] / c['cold_s']:.1f}x cold, "
            f"{c['uncached_s'] / c['warm_s']:.1f}x warm"
        )
    if rss:
        print(
            f"\npeak RSS loading one {'x'.join(map(str, shape))} CT series ({shape[2]} DICOM files, "
            f"written in {rss[0]['written_s']:.1f} s), fresh process, load + cache write:"
        )
        for r in rss:
            grown = r["peak_mib"] - r["before_mib"]
            print(
                f"  {r['label']}: peak RSS {r['peak_mib']:.0f} MiB ({r['before_mib']:.0f} MiB after imports, "
                f"+{grown:.0f} MiB) = {r['peak_mib'] / r['volume_mib']:.1f}x total, "
                f"{grown / r['volume_mib']:.1f}x added, of the {r['volume_mib']:.0f} MiB float32 volume; "
                f"{r['seconds']:.1f} s"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (seconds)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 128], help="cohort volume sizes")
    parser.add_argument("--patients", type=int, default=24, help="patients per cohort")
    parser.add_argument("--rss-shape", type=int, nargs=3, default=[512, 512, 300], help="columns rows slices")
    parser.add_argument("--skip-rss", action="store_true", help="leave out the large-series memory figure")
    parser.add_argument("--threads", type=int, default=None, help="loader threads (default: the store's)")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temp one)")
    parser.add_argument("--child-rss", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.getLogger("monai").setLevel(logging.ERROR)  # "nvImageCodec is not available" on every DICOM read
    if args.child_rss:
        series, pixdim, size, cache_dir = args.child_rss
        child_rss(series, json.loads(pixdim), json.loads(size), cache_dir)
        return
    if args.quick:
        args.sizes, args.patients, args.rss_shape = [24], 3, [96, 96, 40]
    workdir = Path(tempfile.mkdtemp(prefix="fusion-bench-", dir=args.workdir))
    try:
        cohorts = [bench_cohort(size, args.patients, workdir, args.threads) for size in args.sizes]
        shape = tuple(args.rss_shape)
        rss = [] if args.skip_rss else bench_rss(shape, workdir)
        report(cohorts, rss, shape)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
