"""A tiny demo cohort written once per test session, and the overrides that keep runs fast."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fusion.data.synthetic import write_demo_cohort

TINY = [
    "trainer.max_epochs=2",
    "logger=[csv]",
    "data.batch_size=8",
    "modality.ct.spatial_size=[16,16,16]",
    "modality.mri.spatial_size=[16,16,16]",
    "modality.pet.spatial_size=[16,16,16]",
    "modality.ct.pixdim=[6,6,6]",
    "modality.mri.pixdim=[4,4,4]",
    "modality.pet.pixdim=[8,8,8]",
    "modality.histology.tile_size=16",
    "fuser.d_model=16",
    "fuser.dim_feedforward=32",
    "~callbacks.progress_bar",
]


def run_module(
    module: str, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """`python -m module args` as a user would run the console script, W&B offline, output captured."""
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, timeout=600, cwd=cwd
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single `error: ...` line a command prints for bad input (exit 1, no traceback), asserted so."""
    assert result.returncode == 1, result.stderr[-4000:]
    assert "Traceback" not in result.stderr, result.stderr[-4000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-4000:]
    return errors[0]


#: a user's own modality and head, outside the package: `my_modality.py`, `my_head.py` and their YAMLs
PLUGIN = Path(__file__).parent / "user_plugin"
#: the environment in which the plugin's modules import (their YAMLs name `_target_: my_head...`)
PLUGIN_ENV = {"PYTHONPATH": f"{PLUGIN}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def run_with_plugin(module: str, *args: str) -> subprocess.CompletedProcess:
    """`run_module` with the plugin importable and its config folder on Hydra's search path."""
    return run_module(module, f"hydra.searchpath=[file://{PLUGIN / 'conf'}]", *args, env=PLUGIN_ENV)


def tiny_overrides(*selection: str) -> list[str]:
    """TINY plus `selection`, without the tuning overrides of modalities the selection leaves out."""
    chosen = next(
        (s.split("=", 1)[1].strip("[]").split(",") for s in selection if s.startswith("modality=")), None
    )
    keep = [o for o in TINY if chosen is None or not o.startswith("modality.") or o.split(".")[1] in chosen]
    return [*keep, *selection]


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cohort") / "demo"
    return write_demo_cohort(
        out,
        n_patients=40,
        seed=1,
        volume_shape=(16, 16, 16),
        tile_size=16,
        tiles_per_patient=(2, 5),
        n_genes=16,
    )


@pytest.fixture(scope="session")
def trained_tabular(tiny_cohort, tmp_path_factory):
    """One tiny genomics + EHR model for the tests that only read its run (predict, similar): its
    `TrainResult`. Tests must not change its folder (copy the checkpoint first)."""
    import fusion
    from fusion.training import run_training

    overrides = tiny_overrides("modality=[genomics,ehr]", "evaluation.n_bootstrap=20")
    cfg = fusion.compose([f"data.manifest={tiny_cohort}", *overrides])
    return run_training(cfg, tmp_path_factory.mktemp("tabular_run"))


@pytest.fixture
def cohort_copy(tiny_cohort, tmp_path) -> Path:
    """A private copy a test may break."""
    dst = tmp_path / "cohort"
    shutil.copytree(tiny_cohort.parent, dst)
    return dst / "manifest.csv"
