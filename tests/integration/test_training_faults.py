"""Faults during and after training (issue 16): a SIGTERM, a diverging loss, a failing optional step.

Each runs `fusion-train` as a user would (a subprocess on the tiny cohort) and checks what the user
sees: the exit status, the one-line message, and which files the run folder holds.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pandas as pd
import torch

from tests.integration.conftest import one_error_line, run_module, tiny_overrides

ENV = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def _wait_for(path, proc: subprocess.Popen, limit_s: float = 300) -> None:
    deadline = time.monotonic() + limit_s  # a guard against a hung run, not a timing assertion
    while not path.exists():
        assert proc.poll() is None, "training ended before its first checkpoint:\n" + proc.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.2)


def test_sigterm_saves_a_checkpoint_prints_the_resume_command_and_resuming_continues(tiny_cohort, tmp_path):
    run_dir = tmp_path / "run"
    args = tiny_overrides(f"data.manifest={tiny_cohort}", "trainer.max_epochs=5", "~callbacks.early_stopping")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fusion.cli.train", *args, f"hydra.run.dir={run_dir}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    _wait_for(run_dir / "checkpoints" / "last.ckpt", proc)  # the end of epoch 0
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)

    assert proc.returncode != 0, err  # not a silent success without metrics
    assert "Traceback" not in err
    assert not (run_dir / "metrics.json").exists()
    line = next(x for x in err.splitlines() if x.startswith("error: training stopped by SIGTERM"))
    command = shlex.split(line.split("resume with: ", 1)[1])
    assert command[0] == "fusion-train"
    ckpt = next(a.split("=", 1)[1] for a in command if a.startswith("ckpt_path="))
    assert (run_dir / "checkpoints").resolve() == (tmp_path / ckpt).parent.resolve()
    assert f"hydra.run.dir={run_dir.resolve()}" in command
    assert "trainer.max_epochs=5" in command  # the original overrides come along
    saved_epoch = torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"]
    assert saved_epoch >= 1  # stopped after the first epoch's checkpoint

    resumed = subprocess.run(
        [sys.executable, "-m", "fusion.cli.train", *command[1:]], capture_output=True, text=True, env=ENV
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "won't be reloaded" not in resumed.stderr + resumed.stdout  # the best checkpoint's state is back
    info = json.loads((run_dir / "metrics.json").read_text())["info"]  # the same folder
    assert info["resumed"]["epoch"] == saved_epoch  # continued, not from epoch 0
    assert info["epochs"] == 5
    assert (run_dir / "predictions_test.csv").exists()
    assert info["best_checkpoint"].startswith(str((run_dir / "checkpoints").resolve()))
    assert (run_dir / "csv-before-resume-1" / "metrics.csv").exists()  # the first part's log is kept


def test_a_diverging_loss_stops_with_one_line_naming_epoch_step_and_head(tiny_cohort, tmp_path):
    run_dir = tmp_path / "run"
    result = run_module(
        "fusion.cli.train",
        *tiny_overrides(f"data.manifest={tiny_cohort}", "optim.lr=1e6", "trainer.max_epochs=3"),
        f"hydra.run.dir={run_dir}",
    )
    error = one_error_line(result)
    assert re.search(r"became (NaN|infinite) at epoch \d+, step \d+ \(head \w+\); lower optim.lr", error)
    assert not (run_dir / "metrics.json").exists()
    for ckpt in (run_dir / "checkpoints").glob("*.ckpt") if (run_dir / "checkpoints").exists() else []:
        state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), ckpt


def test_a_failing_oracle_after_training_warns_and_keeps_metrics_and_predictions(cohort_copy, tmp_path):
    truth = cohort_copy.parent / "truth.csv"
    pd.read_csv(truth).drop(columns=["true_risk"]).to_csv(truth, index=False)  # an edited copy
    run_dir = tmp_path / "run"
    result = run_module(
        "fusion.cli.train",
        *tiny_overrides(f"data.manifest={cohort_copy}", "trainer.max_epochs=1"),
        f"hydra.run.dir={run_dir}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "oracle metrics (truth.csv) skipped" in result.stdout + result.stderr
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert "test/score" in metrics and not any(k.startswith("oracle/") for k in metrics)
    assert len(pd.read_csv(run_dir / "predictions_test.csv")) > 0
