"""The Hydra configs live in conf/ at the repository root and are installed as the package `fusion.conf`
(pyproject.toml: `package-dir`). Both install modes must find them: a regular `pip install .` (a copy in
site-packages) and the editable install the test environment itself is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from setuptools import find_packages

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

REPO = Path(__file__).resolve().parents[2]

# run in a fresh interpreter, with the working directory outside the repository (so the repository is not
# on sys.path and only the installed package can be imported); prints where everything came from
PROBE = r"""
import json, sys
from importlib.resources import files
import fusion, fusion.conf
cfg = fusion.compose(["experiment=quickstart"])
print(json.dumps({
    "fusion": fusion.__file__,
    "conf": fusion.conf.__file__,
    "train_yaml": str(files("fusion.conf") / "train.yaml"),
    "imaging_base": str(files("fusion.conf") / "modality" / "base" / "imaging.yaml"),
    "max_epochs": cfg.trainer.max_epochs,
    "manifest": cfg.data.manifest,
    "modalities": sorted(cfg.modality),
    "sys_path_has_repo": any(p and __import__("os").path.realpath(p) == sys.argv[1] for p in sys.path),
}))
"""


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(WANDB_MODE="offline", **extra)
    return env


def _probe(cwd: Path, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO)], cwd=cwd, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _train_cfg_job(cwd: Path, env: dict[str, str]) -> str:
    """A console entry point's composed config (`fusion-train --cfg job`), through its @hydra.main."""
    done = subprocess.run(
        [sys.executable, "-m", "fusion.cli.train", "--cfg", "job", "experiment=quickstart"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _under(path: str, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


def _check_composed(found: dict, cfg_job: str) -> None:
    assert Path(found["train_yaml"]).is_file() and Path(found["imaging_base"]).is_file()
    assert found["max_epochs"] == 30 and found["manifest"].endswith("demo_cohort/manifest.csv")
    assert found["modalities"] == ["ct", "ehr", "genomics", "histology", "mri", "pet"]
    assert "max_epochs: 30" in cfg_job and "demo_cohort/manifest.csv" in cfg_job
    assert "optimizer:" in cfg_job and "torch.optim.AdamW" in cfg_job


def test_the_package_list_names_every_subpackage_and_the_config_package():
    """`packages` is an explicit list (a mapped package cannot be discovered): a subpackage missing from it
    would be absent from a regular install while every editable-install test still passed."""
    setuptools_cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setuptools_cfg["package-dir"] == {"fusion.conf": "conf"}
    on_disk = set(find_packages(str(REPO), include=["fusion", "fusion.*"]))
    assert set(setuptools_cfg["packages"]) == on_disk | {"fusion.conf"}
    assert (REPO / "conf" / "__init__.py").is_file() and not (REPO / "fusion" / "conf").exists()


@pytest.mark.slow
def test_a_regular_install_composes_from_its_own_copy_of_the_configs(tmp_path: Path):
    """`pip install .` (non-editable, no network): fusion and fusion.conf both come from the install."""
    src, target, elsewhere = tmp_path / "src", tmp_path / "site", tmp_path / "elsewhere"
    elsewhere.mkdir()
    src.mkdir()
    # build from a copy of what the Dockerfile copies: nothing is written into the repository (build/)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for name in ("fusion", "conf"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    offline = ["--quiet", "--no-deps", "--no-build-isolation", "--no-index"]
    pip = [sys.executable, "-m", "pip", "install", *offline]
    done = subprocess.run([*pip, "--target", str(target), str(src)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (target / "fusion" / "conf" / "train.yaml").is_file()
    assert (target / "fusion" / "conf" / "modality" / "base" / "imaging.yaml").is_file()

    env = _env(PYTHONPATH=str(target), FUSION_CACHE_DIR=str(tmp_path / "cache"))
    found = _probe(elsewhere, env)
    assert not found["sys_path_has_repo"]
    for key in ("fusion", "conf", "train_yaml", "imaging_base"):
        assert _under(found[key], target), (key, found[key])
    _check_composed(found, _train_cfg_job(elsewhere, env))


@pytest.mark.slow
def test_the_editable_install_composes_from_the_repository_conf_folder(tmp_path: Path):
    """The test environment's own (editable) install, seen from outside the repository: fusion resolves to
    fusion/ and fusion.conf to the top-level conf/ folder of this checkout."""
    env = _env(FUSION_CACHE_DIR=str(tmp_path / "cache"))
    found = _probe(tmp_path, env)
    assert not found["sys_path_has_repo"]
    # the README's test setup is `pip install -e '.[dev]'`; a regular install here fails this, on purpose
    assert _under(found["fusion"], REPO), f"fusion is not this checkout's editable install: {found['fusion']}"
    assert Path(found["fusion"]).resolve() == REPO / "fusion" / "__init__.py"
    assert Path(found["conf"]).resolve() == REPO / "conf" / "__init__.py"
    assert Path(found["train_yaml"]).resolve() == REPO / "conf" / "train.yaml"
    assert Path(found["imaging_base"]).resolve() == REPO / "conf" / "modality" / "base" / "imaging.yaml"
    _check_composed(found, _train_cfg_job(tmp_path, env))
