"""experiments/slurm/train.sbatch: run with a stand-in `srun` that composes the real config
(`fusion-train ... --cfg all`), so the overrides it builds from SLURM's variables are checked."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

SCRIPT = Path(__file__).parents[3] / "experiments" / "slurm" / "train.sbatch"
FAKE_SRUN = """#!/bin/bash
# stand-in for srun: drop its own options, compose the config instead of training
while [[ "$1" == --* ]]; do shift; done
exec "$@" --cfg all
"""


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_sbatch_passes_node_and_gpu_counts_and_one_run_folder(tmp_path):
    (tmp_path / "srun").write_text(FAKE_SRUN)
    (tmp_path / "srun").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{tmp_path}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SLURM_NNODES": "3",
        "SLURM_NTASKS_PER_NODE": "8(x3)",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "fusion-train",
    }
    done = subprocess.run(
        ["bash", str(SCRIPT), "data.manifest=/data/manifest.csv", "data.batch_size=16"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    cfg = yaml.safe_load(done.stdout)
    trainer = cfg["trainer"]
    assert (trainer["num_nodes"], trainer["devices"], trainer["accelerator"]) == (3, 8, "gpu")
    assert trainer["strategy"] == "ddp_find_unused_parameters_true"
    assert cfg["hydra"]["run"]["dir"] == "outputs/slurm/fusion-train-4242"  # shared by every rank
    assert cfg["data"]["manifest"] == "/data/manifest.csv" and cfg["data"]["batch_size"] == 16
