"""Every shipped config composes, and every node that can be built on a CPU machine instantiates."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import lightning as L
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

import fusion
from fusion.modalities.base import Modality
from fusion.pipeline import build_heads, build_modalities

CONF = Path(str(files("fusion.conf")))


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def _compose(*overrides: str, name: str = "train"):
    cfg = fusion.compose([*overrides], config_name=name)
    cfg.paths.output_dir = "/tmp/fusion-config-test"  # outside a Hydra run there is no run folder
    return cfg


@pytest.mark.parametrize("name", _options("modality"))
def test_every_modality_config_instantiates(name):
    cfg = _compose("data.manifest=x.csv", f"modality=[{name}]")
    assert isinstance(build_modalities(cfg)[name], Modality)


def test_every_modality_and_head_instantiates():
    cfg = _compose("data.manifest=x.csv")
    # the defaults are the demo's six; opt-in configs (rna, mutations, cnv) need tables the demo lacks
    assert set(cfg.modality) <= set(_options("modality"))
    assert {"ct", "mri", "pet", "histology", "genomics", "ehr"} == set(cfg.modality)
    assert set(cfg.head) == set(_options("head"))
    modalities = build_modalities(cfg)
    assert all(isinstance(m, Modality) and m.out_dim > 0 for m in modalities.values())
    assert set(build_heads(cfg)) == {"grade", "survival", "response"}


@pytest.mark.parametrize("fuser", _options("fuser"))
def test_every_fuser_instantiates(fuser):
    cfg = _compose(f"fuser={fuser}")
    built = instantiate(cfg.fuser, in_dims={"a": 4, "b": 8})
    assert built.out_dim == cfg.fuser.d_model


@pytest.mark.parametrize("trainer", _options("trainer"))
def test_every_trainer_composes_and_the_cpu_one_builds(trainer):
    cfg = _compose(f"trainer={trainer}")
    assert {"accelerator", "devices", "strategy", "precision", "num_nodes"} <= set(cfg.trainer)
    if cfg.trainer.accelerator == "cpu":
        assert isinstance(instantiate(cfg.trainer, logger=False), L.Trainer)


@pytest.mark.parametrize("logger", _options("logger"))
def test_every_logger_instantiates(logger, tmp_path):
    cfg = _compose(f"logger=[{logger}]")
    cfg.paths.output_dir = str(tmp_path)
    node = cfg.logger[logger]
    assert instantiate(node) is not None
    if logger == "wandb":
        assert node.offline is True  # nothing leaves the machine unless the user asks


def test_callbacks_and_optim_resolve():
    cfg = _compose()
    callbacks = [instantiate(node) for node in cfg.callbacks.values()]
    assert len(callbacks) == 3
    assert cfg.callbacks.model_checkpoint.monitor == "val/score"
    assert OmegaConf.to_container(cfg.optim, resolve=True)["lr"] > 0


@pytest.mark.parametrize("experiment", _options("experiment"))
def test_every_experiment_composes(experiment):
    cfg = _compose(f"experiment={experiment}")
    assert cfg.data.manifest is not None


@pytest.mark.parametrize("debug", _options("debug"))
def test_every_debug_config_composes(debug):
    assert _compose(f"debug={debug}").trainer.max_epochs >= 1


@pytest.mark.parametrize("name", ["cv", "validate", "predict", "demo_data", "robustness"])
def test_every_entry_point_config_composes(name):
    overrides = {
        "predict": ["ckpt_path=x.ckpt", "data.manifest=m.csv"],
        "demo_data": ["out=/tmp/x"],
        "robustness": ["ckpt_path=x.ckpt"],
    }
    cfg = fusion.compose(overrides.get(name, []), config_name=name)
    assert cfg.task_name == name
