"""Training throughput: samples/s, epoch time, the share of step time spent waiting for data, and how
epoch time grows with the number of patients.

Writes a demo cohort (`write_demo_cohort`: CT as DICOM, MRI and PET as NIfTI, genomics and EHR tables)
with histology as precomputed feature bags (`fusion.io.feature_files`, float16, between half and all of
`--tiles` tiles of `--feature-dim` features per patient), preprocesses it once into the memory (or
disk) cache, then trains the real model (`fusion.pipeline` + `LitFusion`, Lightning) for `--epochs`
epochs per setting, all in one run:

- scaling: the first `--workers` setting on x1, x2, x4 ... (`--scale`) of `--patients` patients, as
  the fastest steady epoch's wall time and the least CPU seconds of a steady epoch (process +
  workers), as the least disturbed by other jobs on a shared machine (means are in the JSON);
- loader settings: every `--workers` setting at the largest scale, side by side.

Per setting: epoch time and samples/s (epoch 1, which includes worker start-up, apart from the
steady epochs after it), the fraction of step time spent waiting for the next batch
(`throughput_probes.DataWaitTimer`), the workers' private memory against the size of the memory
cache, and on CUDA the GPU utilisation (`nvidia-smi`, polled in a thread) and peak GPU memory at
bf16. Without CUDA the GPU figures are skipped and the device is named in the output.

    python benchmarks/throughput.py --cpu-smoke   # 32/64/128 patients, 32^3, 256-tile bags: minutes, 2 cores
    python benchmarks/throughput.py               # GPU node: 512 patients, 128^3, 2048-tile bags of 512-d
    python benchmarks/throughput.py --patients 128 --volume 64 --tiles 1024 --workers 0 4 8 --json out.json
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput_cohort import cache_mib, collate_timing, overrides, write_cohort  # noqa: E402
from throughput_probes import DataWaitTimer, GpuPoller, rss_mib  # noqa: E402

FULL = {"patients": 512, "volume": 128, "tiles": 2048, "feature_dim": 512, "scale": [1], "batch_size": 32}
FULL["epochs"] = 3
# --cpu-smoke: batch 16, so x1 is 2 steps an epoch and x4 is 8; 3 steady epochs to take the fastest of
SMOKE = {**FULL, "patients": 32, "volume": 32, "tiles": 256, "feature_dim": 128, "scale": [1, 2, 4]}
SMOKE.update(batch_size=16, epochs=4)


def train_once(cfg: Any, datamodule: Any, workers: int | str, epochs: int, cuda: bool) -> dict[str, Any]:
    """Fresh model, `epochs` training epochs on `datamodule`'s train split; the timer's figures."""
    import lightning as L

    from fusion.data.datamodule import check_workers
    from fusion.lit import LitFusion
    from fusion.optim import optim_kwargs
    from fusion.pipeline import build_model

    datamodule.num_workers = check_workers(workers)
    L.seed_everything(0, workers=True)
    lit = LitFusion(build_model(cfg, datamodule.modalities, datamodule.heads), **optim_kwargs(cfg.optim))
    timer = DataWaitTimer()
    trainer = L.Trainer(
        accelerator="gpu" if cuda else "cpu",
        devices=1,
        precision="bf16-mixed" if cuda else "32-true",
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with GpuPoller() as gpu:
        # through the datamodule, so its on_after_batch_transfer hook runs (data.augment_on=device)
        trainer.fit(lit, datamodule=datamodule)
    steady = timer.epochs[1:] or timer.epochs
    mean = lambda key: sum(e[key] for e in steady) / len(steady)  # noqa: E731
    fastest = min(steady, key=lambda e: e["seconds"])  # the least disturbed by other jobs
    loader = trainer.train_dataloader
    return {
        "workers": workers,
        "resolved": {"num_workers": loader.num_workers, "pin_memory": loader.pin_memory},
        "patients": len(datamodule.records["train"]),
        "epoch1_s": timer.epochs[0]["seconds"],
        "epoch_s": fastest["seconds"],
        "epoch_mean_s": mean("seconds"),
        "epoch_cpu_s": min(e["cpu_s"] for e in steady),
        "samples_per_s": fastest["samples_per_s"],
        "wait_fraction": mean("wait_fraction"),
        "epoch1_wait_fraction": timer.epochs[0]["wait_fraction"],
        "worker_memory": timer.epochs[-1]["worker_memory"],
        "gpu": gpu.summary(),
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "epochs": timer.epochs,
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpu-smoke", action="store_true", help=f"small preset for a CPU: {SMOKE}")
    parser.add_argument("--patients", type=int, help="patients at scale x1 (default 512; smoke 32)")
    parser.add_argument("--volume", type=int, help="imaging grid size v (v^3; default 128; smoke 32)")
    parser.add_argument("--tiles", type=int, help="largest histology bag, tiles (default 2048; smoke 256)")
    parser.add_argument(
        "--feature-dim", type=int, help="histology feature dimension (default 512; smoke 128)"
    )
    parser.add_argument("--scale", type=int, nargs="+", help="patient multipliers (default 1; smoke 1 2 4)")
    parser.add_argument("--epochs", type=int, help="epochs per setting (epoch 1 reported apart; 3, smoke 4)")
    parser.add_argument("--workers", nargs="+", help="num_workers settings (default: CUDA 0 auto, CPU 0 1)")
    parser.add_argument("--batch-size", type=int, help="default 32; smoke 16")
    parser.add_argument("--cache", choices=["memory", "disk"], default="memory")
    parser.add_argument(
        "--augment-on",
        choices=["auto", "cpu", "device"],
        default="auto",
        help="data.augment_on: CT/MRI/PET augmentation per sample in the workers (cpu) or per batch "
        "on the training device (device); auto = device on CUDA",
    )
    parser.add_argument(
        "--modalities", nargs="+", default=["ct", "mri", "pet", "histology", "genomics", "ehr"]
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--workdir", default=None, help="where the cohort goes (default: a temporary folder)")
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    args = parser.parse_args()
    preset = SMOKE if args.cpu_smoke else FULL
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


HEADER = (
    "patients  workers (resolved, pin)  epoch 1 s  epoch s  CPU s  samples/s  wait %  workers USS/RSS MiB"
    "  GPU util %  peak GPU MiB"
)


def row(run: dict[str, Any]) -> str:
    """One line of the table."""
    mem, gpu, peak = run["worker_memory"], run["gpu"], run["peak_gpu_mib"]
    workers = f"{run['workers']} ({run['resolved']['num_workers']}, {run['resolved']['pin_memory']})"
    memory = f"{mem['uss_mib']:.0f}/{mem['rss_mib']:.0f}" if mem else "-"
    util = f"{gpu['util_mean_pct']:.0f}" if gpu else "-"
    return (
        f"{run['patients']:>8}  {workers:>24}  {run['epoch1_s']:>9.2f}  {run['epoch_s']:>7.2f}"
        f"  {run['epoch_cpu_s']:>5.1f}"
        f"  {run['samples_per_s']:>9.1f}  {100 * run['wait_fraction']:>6.1f}  {memory:>19}  {util:>10}"
        f"  {(f'{peak:.0f}' if peak else '-'):>12}"
    )


def prepare(args: argparse.Namespace, result: dict[str, Any]) -> tuple[Any, Any]:
    """Write the cohort and preprocess it once (every patient of the largest scale): (cfg, datamodule)."""
    import fusion
    from fusion.data.cohort import Cohort
    from fusion.pipeline import build_datamodule, build_heads, build_modalities

    n_total = args.patients * max(args.scale)
    start = time.perf_counter()
    manifest = write_cohort(args.workdir_path / "cohort", n_total, args.volume, args.tiles, args.feature_dim)
    result["write_cohort_s"] = time.perf_counter() - start
    print(
        f"cohort: {n_total} patients, {args.volume}^3 volumes, bags of {args.tiles // 2}-{args.tiles} tiles "
        f"x {args.feature_dim} (float16): ready in {result['write_cohort_s']:.1f} s "
        "(written, or reused from --workdir)"
    )
    cfg = fusion.compose(overrides(args, manifest))
    cfg.paths.output_dir = str(args.workdir_path / "out")
    modalities, heads = build_modalities(cfg), build_heads(cfg)
    cohort = Cohort.load(manifest)
    datamodule = build_datamodule(cfg, cohort, modalities, heads, splits={"train": cohort.patient_ids})
    rss, start = rss_mib(), time.perf_counter()
    datamodule.setup("fit")
    result["preprocess_s"] = time.perf_counter() - start
    result["cache_mib"] = cache_mib(datamodule.store)
    result["main_rss_added_mib"] = rss_mib() - rss
    print(
        f"preprocessing ({args.cache} cache): {result['preprocess_s']:.1f} s; memory cache "
        f"{result['cache_mib']:.0f} MiB (main process RSS +{result['main_rss_added_mib']:.0f} MiB)"
    )
    return cfg, datamodule


def measure(args: argparse.Namespace, cuda: bool, result: dict[str, Any]) -> None:
    """Every setting, one after the other on the same preprocessed cohort, then the collate timing."""
    cfg, datamodule = prepare(args, result)
    everyone = datamodule.records["train"]
    runs = [(s, args.workers[0]) for s in sorted(args.scale)]
    runs += [(max(args.scale), w) for w in args.workers[1:]]
    result["runs"] = []
    print(HEADER)
    for scale, workers in runs:
        datamodule.records["train"] = everyone[: args.patients * scale]
        run = {"scale": scale, **train_once(cfg, datamodule, workers, args.epochs, cuda)}
        result["runs"].append(run)
        print(row(run))
    first = [r for r in result["runs"] if r["workers"] == args.workers[0]]
    result["scaling"] = [
        {
            "scale": r["scale"],
            "patients": r["patients"],
            "epoch_s": r["epoch_s"],
            "ratio": r["epoch_s"] / first[0]["epoch_s"],
            "epoch_cpu_s": r["epoch_cpu_s"],
            "cpu_ratio": r["epoch_cpu_s"] / first[0]["epoch_cpu_s"],
        }
        for r in first
    ]
    ratios = ", ".join(
        f"x{s['scale']} {s['epoch_s']:.2f} s ({s['ratio']:.2f}x; "
        f"CPU {s['epoch_cpu_s']:.1f} s, {s['cpu_ratio']:.2f}x)"
        for s in result["scaling"]
    )
    print(f"epoch time vs patients (workers={args.workers[0]}): {ratios}")
    if "histology" in args.modalities:
        result["collate"] = timing = collate_timing(args.tiles, args.feature_dim, args.batch_size)
        print(
            f"histology collate, {args.batch_size} bags <= {args.tiles} x {args.feature_dim}: "
            f"{timing['vectorised_ms']:.1f} ms per batch; "
            f"a Python copy per tile: {timing['per_tile_loop_ms']:.1f} ms"
        )


def main() -> None:
    args = parse_args()
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for message in (".*does not have many workers.*", ".*no `val_dataloader`.*", ".*LeafSpec.*"):
        warnings.filterwarnings("ignore", message)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    args.workers = [
        int(w) if w.isdigit() else w for w in (args.workers or (["0", "auto"] if cuda else ["0", "1"]))
    ]
    from fusion.data.datamodule import usable_cpus

    device = torch.cuda.get_device_name(0) if cuda else f"CPU only ({platform.machine()})"
    result: dict[str, Any] = {"device": device, "cpus": usable_cpus(), "torch": torch.__version__}
    print(
        f"device: {device}; {usable_cpus()} usable CPUs; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; data.augment_on={args.augment_on}"
    )
    if not cuda:
        print("no CUDA: GPU utilisation, peak GPU memory and bf16 are skipped; these are CPU figures")
    temp = args.workdir is None
    args.workdir_path = Path(args.workdir or tempfile.mkdtemp(prefix="fusion-throughput-"))
    result["args"] = {k: v for k, v in vars(args).items() if k != "workdir_path"}
    started = time.perf_counter()
    try:
        measure(args, cuda, result)
    finally:
        if temp:
            shutil.rmtree(args.workdir_path, ignore_errors=True)
    result["total_s"] = time.perf_counter() - started
    print(f"total {result['total_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
