"""What `throughput.py` measures during training: data wait per step, GPU utilisation, worker memory.

`DataWaitTimer` is a Lightning callback. The compute of a step runs from `on_train_batch_start` to
`on_train_batch_end`; the time from one step's end to the next step's start is spent waiting for
the batch (the data loader's `next()`, collation, pinning and the host-to-device copy). On CUDA it
synchronises at each step's end, so kernels still queued are counted as compute, not as wait.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch


class DataWaitTimer(L.Callback):
    """Per training epoch: wall time, steps, samples, seconds spent waiting vs computing, and CPU
    seconds of this process and its workers (a figure that other jobs on a shared machine inflate
    much less than wall time)."""

    def __init__(self) -> None:
        self.epochs: list[dict[str, float]] = []
        self._epoch_start = self._last_end = self._step_start = self._cpu_start = 0.0
        self._worker_cpu: dict[int, float] = {}
        self._wait = self._compute = 0.0
        self._steps = self._samples = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._sync(pl_module)
        self._cpu_start, self._worker_cpu = time.process_time(), worker_cpu_s()
        self._epoch_start = self._last_end = time.perf_counter()
        self._wait = self._compute = 0.0
        self._steps = self._samples = 0

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, i: int
    ) -> None:
        self._step_start = time.perf_counter()
        self._wait += self._step_start - self._last_end

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        self._sync(pl_module)
        self._last_end = time.perf_counter()
        self._compute += self._last_end - self._step_start
        self._steps += 1
        self._samples += len(batch["patient_id"])

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        seconds = time.perf_counter() - self._epoch_start
        step_time = self._wait + self._compute
        workers = worker_cpu_s()
        cpu = time.process_time() - self._cpu_start
        cpu += sum(t - self._worker_cpu.get(pid, 0.0) for pid, t in workers.items())
        self.epochs.append(
            {
                "seconds": seconds,
                "cpu_s": cpu,
                "steps": self._steps,
                "samples": self._samples,
                "samples_per_s": self._samples / seconds if seconds else float("nan"),
                "wait_s": self._wait,
                "compute_s": self._compute,
                "wait_fraction": self._wait / step_time if step_time else float("nan"),
                "worker_memory": worker_memory(),  # while persistent workers are alive
            }
        )

    @staticmethod
    def _sync(pl_module: L.LightningModule) -> None:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)


class GpuPoller:
    """Samples `nvidia-smi` utilisation and memory every `interval` s in a background thread.

    Does nothing (and `summary()` returns None) without CUDA or without `nvidia-smi` on PATH.
    """

    def __init__(self, interval: float = 0.2, index: int = 0):
        self.interval, self.index = interval, index
        self.samples: list[tuple[float, float]] = []  # (utilisation %, memory used MiB)
        self.enabled = torch.cuda.is_available() and shutil.which("nvidia-smi") is not None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> GpuPoller:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        query = ["nvidia-smi", f"--id={self.index}", "--query-gpu=utilization.gpu,memory.used"]
        query.append("--format=csv,noheader,nounits")
        while not self._stop.is_set():
            try:
                out = subprocess.run(query, capture_output=True, text=True, timeout=5, check=True).stdout
                util, memory = (float(v) for v in out.strip().splitlines()[0].split(","))
                self.samples.append((util, memory))
            except (OSError, subprocess.SubprocessError, ValueError, IndexError):
                pass  # a failed poll is a missing sample, not a failed benchmark
            self._stop.wait(self.interval)

    def summary(self) -> dict[str, float] | None:
        if not self.samples:
            return None
        utils = [u for u, _ in self.samples]
        return {
            "samples": len(utils),
            "util_mean_pct": sum(utils) / len(utils),
            "util_median_pct": sorted(utils)[len(utils) // 2],
            "memory_used_max_mib": max(m for _, m in self.samples),
        }


def worker_memory() -> dict[str, float] | None:
    """Memory of this process's child processes (data loader workers), MiB, from /proc (Linux).

    ``uss`` (private pages) is what each worker costs on its own; ``rss`` also counts pages shared
    with the main process (copy-on-write after fork), which are not extra memory.
    """
    children = _children(os.getpid())
    if not children:
        return None
    total = {"workers": 0, "rss_mib": 0.0, "uss_mib": 0.0, "pss_mib": 0.0}
    for pid in children:
        fields = _smaps_rollup(pid)
        if not fields:
            continue
        total["workers"] += 1
        total["rss_mib"] += fields.get("Rss", 0) / 1024
        total["pss_mib"] += fields.get("Pss", 0) / 1024
        total["uss_mib"] += (fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / 1024
    return total if total["workers"] else None


def worker_cpu_s() -> dict[int, float]:
    """CPU seconds (user + system) used so far by each data loader worker, by process id."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for pid in _children(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        out[pid] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime (fields 14, 15 of stat)
    return out


def _children(pid: int) -> list[int]:
    """Data loader workers among the child processes (PyTorch names them ``pt_data_worker``; the
    name check leaves out e.g. the nvidia-smi polls)."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(p) for p in task.read_text().split()]
        except OSError:
            continue
    return [child for child in found if _comm(child) in ("pt_data_worker", _comm(pid))]


def _comm(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _smaps_rollup(pid: int) -> dict[str, int]:
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return {}
    fields = {}
    for line in lines[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith(":") and parts[1].isdigit():
            fields[parts[0][:-1]] = int(parts[1])  # kB
    return fields


def rss_mib() -> float:
    """This process's resident memory, MiB."""
    return _smaps_rollup(os.getpid()).get("Rss", 0) / 1024
