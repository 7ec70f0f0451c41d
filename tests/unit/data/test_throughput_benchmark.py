"""benchmarks/throughput.py: the data-wait timer tells loading from computing; a tiny run (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

BENCHMARKS = Path(__file__).resolve().parents[3] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import throughput_probes  # noqa: E402
from throughput_probes import DataWaitTimer, GpuPoller, worker_memory  # noqa: E402


class FakeClock:
    """A perf_counter that only `sleep` advances: the timer's figures become exact, whatever the load."""

    def __init__(self) -> None:
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class SlowData(Dataset):
    def __init__(self, delay: float, sleep: Callable[[float], None] = time.sleep):
        self.delay, self.sleep = delay, sleep

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict:
        self.sleep(self.delay)
        return {"patient_id": str(index), "x": torch.ones(3)}


class SlowStep(L.LightningModule):
    def __init__(self, delay: float, sleep: Callable[[float], None] = time.sleep):
        super().__init__()
        self.delay, self.sleep = delay, sleep
        self.layer = nn.Linear(3, 1)

    def training_step(self, batch: dict, index: int) -> torch.Tensor:
        self.sleep(self.delay)
        return self.layer(batch["x"]).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(data_delay: float, step_delay: float, clock: FakeClock) -> list[dict]:
    timer = DataWaitTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    loader = DataLoader(SlowData(data_delay, clock.sleep), batch_size=2)
    trainer.fit(SlowStep(step_delay, clock.sleep), loader)
    return timer.epochs


@pytest.mark.parametrize(("data_delay", "step_delay"), [(0.03, 0.0), (0.0, 0.06), (0.03, 0.05)])
def test_wait_fraction_tells_slow_loading_from_slow_steps(
    data_delay: float, step_delay: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading (sleeping in the dataset) counts as wait, the step (sleeping in training_step) as compute.
    The timer reads a fake clock that only those sleeps advance, so the split is exact and a loaded
    machine cannot blur it: per epoch 4 batches of 2 patients load in 8 x data_delay, 4 steps take
    4 x step_delay, and nothing else (Lightning's own work takes no fake time)."""
    clock = FakeClock()
    monkeypatch.setattr(
        throughput_probes,
        "time",
        SimpleNamespace(perf_counter=clock.perf_counter, process_time=time.process_time),
    )
    epochs = _fit(data_delay, step_delay, clock)
    assert len(epochs) == 2 and all(e["steps"] == 4 and e["samples"] == 8 for e in epochs)
    wait, compute = 8 * data_delay, 4 * step_delay
    for epoch in epochs:
        assert epoch["wait_s"] == pytest.approx(wait, abs=1e-9)
        assert epoch["compute_s"] == pytest.approx(compute, abs=1e-9)
        assert epoch["seconds"] == pytest.approx(wait + compute, abs=1e-9)
        assert epoch["wait_fraction"] == pytest.approx(wait / (wait + compute), abs=1e-9)
        assert epoch["samples_per_s"] == pytest.approx(8 / (wait + compute))
        assert epoch["worker_memory"] is None  # no workers


def test_gpu_polling_is_skipped_cleanly_without_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: polling is enabled")
    with GpuPoller(interval=0.01) as gpu:
        time.sleep(0.05)
    assert gpu.enabled is False and gpu.summary() is None


def test_worker_memory_sees_data_loader_workers() -> None:
    loader = DataLoader(SlowData(0.0), batch_size=2, num_workers=1, persistent_workers=True)
    iterator = iter(loader)
    next(iterator)
    memory = worker_memory()
    assert memory is not None and memory["workers"] == 1 and 0 < memory["uss_mib"] <= memory["rss_mib"]
    del iterator, loader


@pytest.mark.slow
def test_tiny_run_reports_scaling_workers_and_no_gpu_figures_on_cpu(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    args = ["--cpu-smoke", "--patients", "8", "--volume", "16", "--tiles", "16", "--feature-dim", "8"]
    args += ["--scale", "1", "2", "--epochs", "2", "--workers", "0", "1", "--batch-size", "4"]
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "throughput.py"), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    runs = result["runs"]
    assert [(r["patients"], r["workers"]) for r in runs] == [(8, 0), (16, 0), (16, 1)]
    assert [s["patients"] for s in result["scaling"]] == [8, 16] and result["scaling"][0]["ratio"] == 1.0
    assert all(0.0 <= r["wait_fraction"] <= 1.0 and r["samples_per_s"] > 0 for r in runs)
    assert runs[0]["worker_memory"] is None and runs[2]["worker_memory"]["workers"] == 1
    if not torch.cuda.is_available():
        assert result["device"].startswith("CPU") and all(r["gpu"] is None for r in runs)
        assert all(r["peak_gpu_mib"] is None for r in runs)
    assert result["collate"]["vectorised_ms"] > 0
