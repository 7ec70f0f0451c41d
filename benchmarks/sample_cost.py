"""CPU cost of one training sample in a DataLoader worker, piece by piece: before this change, and now with
per-sample MONAI augmentation (``data.augment_on=cpu``) or augmentation deferred to the batch on the
training device (``device``).

Writes the throughput cohort (`throughput_cohort.write_cohort`: CT/MRI/PET volumes, histology feature
bags, genomics, EHR), preprocesses it into the memory cache and then, with one torch thread as in a
worker, times for every sample: each modality's training `transform` and the batch's collate, including
the copy into shared memory that sending a batch to the main process costs (`fusion.modalities.batch_memory`).
"before" is per-sample augmentation with the batch built in ordinary memory (then copied to shared
memory when sent), as before `batch_memory`. The settings run on the same samples, interleaved,
``--rounds`` times; the least time per piece is kept (the least disturbed by other jobs on a shared
machine). The batched augmentation that the ``device`` setting runs instead is timed here on this
CPU (one thread): on a GPU it costs the CPU only its kernel launches.

    OMP_NUM_THREADS=1 python benchmarks/sample_cost.py --patients 24 --volume 64 --tiles 1024
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput_cohort import overrides, write_cohort  # noqa: E402

MODALITIES = ["ct", "mri", "pet", "histology", "genomics", "ehr"]


def prepare(args: argparse.Namespace) -> Any:
    """The preprocessed datamodule of the cohort (memory cache, every patient in train)."""
    import fusion
    from fusion.data.cohort import Cohort
    from fusion.pipeline import build_datamodule, build_heads, build_modalities

    manifest = write_cohort(args.workdir / "cohort", args.patients, args.volume, args.tiles, args.feature_dim)
    cfg = fusion.compose(overrides(args, manifest))
    cfg.paths.output_dir = str(args.workdir / "out")
    modalities, heads = build_modalities(cfg), build_heads(cfg)
    cohort = Cohort.load(manifest)
    datamodule = build_datamodule(cfg, cohort, modalities, heads, splits={"train": cohort.patient_ids})
    datamodule.setup("fit")
    return datamodule


def one_epoch(datamodule: Any, deferred: frozenset[str], batch_size: int) -> dict[str, float]:
    """Seconds per piece over one pass of the train split, as a worker spends them."""
    from fusion.data.dataset import Collator, FusionDataset

    dataset = FusionDataset(datamodule.records["train"], datamodule.store, train=True, deferred=deferred)
    collator = Collator(datamodule.modalities, datamodule.heads)
    seconds: dict[str, float] = defaultdict(float)
    order = torch.randperm(len(dataset)).tolist()
    for start in range(0, len(order), batch_size):
        samples = []
        for index in order[start : start + batch_size]:
            record, items = dataset.records[index], {}
            for name, modality in datamodule.store.modalities.items():
                item = datamodule.store.get(record, name)
                begin = time.perf_counter()
                train = name not in deferred
                items[name] = None if item is None else modality.transform(item, train=train)
                seconds[name] += time.perf_counter() - begin
            samples.append({"patient_id": record.patient_id, "items": items, "labels": record.labels})
        begin = time.perf_counter()
        batch = collator(samples)
        seconds["collate"] += time.perf_counter() - begin
        begin = time.perf_counter()
        share(batch)  # what handing the batch to the main process costs the worker
        seconds["to shared memory"] += time.perf_counter() - begin
        for name in deferred:  # what the device setting runs instead, timed on this CPU
            data = batch["inputs"][name]["data"]
            if data is not None:
                begin = time.perf_counter()
                datamodule.modalities[name].augment_batch(data)
                seconds[f"{name} batch augment"] += time.perf_counter() - begin
    return seconds


def share(value: Any) -> None:
    """Move every tensor of a batch to shared memory, as the worker's queue does (no-op if there)."""
    if isinstance(value, torch.Tensor):
        value.share_memory_()
    elif isinstance(value, dict):
        for v in value.values():
            share(v)
    elif isinstance(value, list | tuple):
        for v in value:
            share(v)


def measure(datamodule: Any, rounds: int, batch_size: int) -> dict[str, dict[str, float]]:
    """Least seconds per piece over `rounds` epochs of each setting, interleaved."""
    deferred = frozenset(n for n, m in datamodule.modalities.items() if m.augments_per_batch)
    settings = {
        "before": (frozenset(), False),  # per-sample MONAI; batch built, then copied to shared memory
        "cpu": (frozenset(), True),  # per-sample MONAI; batch built in shared memory
        "device": (deferred, True),  # augmentation deferred to the device; batch built in shared memory
    }
    best: dict[str, dict[str, float]] = {name: {} for name in settings}
    for round_ in range(rounds):
        for name, (defer, in_worker) in settings.items():
            torch.manual_seed(round_)  # every setting: the same order and the same random draws
            worker = object() if in_worker else None
            with mock.patch("fusion.modalities.batch_memory.get_worker_info", lambda w=worker: w):
                seconds = one_epoch(datamodule, defer, batch_size)
            for piece, value in seconds.items():
                best[name][piece] = min(best[name].get(piece, float("inf")), value)
    return best


def report(best: dict[str, dict[str, float]], n: int) -> None:
    """Side-by-side ms per sample."""
    pieces = [p for p in [*MODALITIES, "collate", "to shared memory"] if p in best["before"]]
    ms = lambda setting, piece: 1000 * best[setting].get(piece, 0.0) / n  # noqa: E731
    columns = {"before": "before", "cpu": "augment_on=cpu", "device": "augment_on=device"}
    print(f"{'worker CPU, ms per sample':<26}" + "".join(f" {c:>18}" for c in columns.values()))
    for piece in pieces:
        print(f"{piece:<26}" + "".join(f" {ms(s, piece):>18.2f}" for s in columns))
    total = {s: sum(ms(s, p) for p in pieces) for s in columns}
    print(f"{'worker total':<26}" + "".join(f" {total[s]:>18.2f}" for s in columns))
    print(
        f"-> worker CPU per sample: {total['before'] / total['cpu']:.1f}x less with augment_on=cpu, "
        f"{total['before'] / total['device']:.1f}x less with augment_on=device, than before"
    )
    batched = {p: ms("device", p) for p in best["device"] if p.endswith("batch augment")}
    extra = ", ".join(f"{p} {v:.2f}" for p, v in batched.items())
    print(f"batched augmentation on this CPU instead (ms per sample; on a GPU it leaves the CPU): {extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=24)
    parser.add_argument("--volume", type=int, default=64, help="imaging grid size v (v^3)")
    parser.add_argument("--tiles", type=int, default=1024, help="largest histology bag, tiles")
    parser.add_argument("--feature-dim", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="epochs per setting (the least is kept)")
    parser.add_argument("--workdir", default=None, help="where the cohort goes (reused if written there)")
    args = parser.parse_args()
    args.cache, args.modalities = "memory", MODALITIES
    torch.set_num_threads(1)  # as in a DataLoader worker
    temp = tempfile.TemporaryDirectory(prefix="fusion-sample-cost-") if args.workdir is None else None
    args.workdir = args.workdir_path = Path(temp.name if temp else args.workdir)
    begin = time.perf_counter()
    datamodule = prepare(args)
    n = len(datamodule.records["train"])
    print(
        f"{n} patients, {args.volume}^3 CT/MRI/PET, bags of {args.tiles // 2}-{args.tiles} x "
        f"{args.feature_dim} float16, batch {args.batch_size}, 1 torch thread; ready in "
        f"{time.perf_counter() - begin:.0f} s"
    )
    report(measure(datamodule, args.rounds, args.batch_size), n)
    print(f"total {time.perf_counter() - begin:.0f} s")
    if temp:
        temp.cleanup()


if __name__ == "__main__":
    main()
