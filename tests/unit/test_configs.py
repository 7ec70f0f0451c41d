"""Every shipped config composes, and every node that can be built on a CPU machine instantiates."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

import fusion
from fusion.modalities.base import Modality
from fusion.optim import build_scheduler, optim_kwargs
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
    # the defaults are the demo's three; pfs (progression-free survival) is opt-in
    assert set(cfg.head) == {"grade", "survival", "response"} and set(cfg.head) < set(_options("head"))
    modalities = build_modalities(cfg)
    assert all(isinstance(m, Modality) and m.out_dim > 0 for m in modalities.values())
    assert set(build_heads(cfg)) == {"grade", "survival", "response"}
    every_head = build_heads(_compose("data.manifest=x.csv", f"head=[{','.join(_options('head'))}]"))
    assert {name: h.prediction_columns for name, h in every_head.items() if name in ("survival", "pfs")} == {
        "survival": ["risk"],
        "pfs": ["pfs_risk"],
    }


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
    assert len(callbacks) == len(cfg.callbacks) == 4
    assert cfg.callbacks.model_checkpoint.monitor == "val/score"
    assert OmegaConf.to_container(cfg.optim, resolve=True)["lr"] > 0


def test_callbacks_are_one_file_each_and_stay_overridable():
    options = {"default", "model_checkpoint", "early_stopping", "progress_bar", "epoch_lines"}
    assert set(_options("callbacks")) == options
    targets = {name: node._target_ for name, node in _compose().callbacks.items()}
    assert targets == {
        "model_checkpoint": "fusion.callbacks.FiniteModelCheckpoint",  # never selects a NaN score
        "early_stopping": "lightning.pytorch.callbacks.EarlyStopping",
        "progress_bar": "fusion.console.FusionProgressBar",
        "epoch_lines": "fusion.console.EpochLines",
    }
    cfg = _compose("~callbacks.progress_bar", "callbacks.early_stopping.patience=5")
    assert list(cfg.callbacks) == ["model_checkpoint", "early_stopping", "epoch_lines"]
    assert cfg.callbacks.early_stopping.patience == 5 and _compose().callbacks.early_stopping.patience == 10
    checkpoint = OmegaConf.to_container(cfg.callbacks.model_checkpoint, resolve=True)
    assert checkpoint["dirpath"] == "/tmp/fusion-config-test/checkpoints" and checkpoint["mode"] == "max"


@pytest.mark.parametrize("optim", _options("optim"))
def test_every_optimiser_config_builds_an_optimiser_and_schedule(optim):
    cfg = _compose(f"optim={optim}", "optim.lr=3e-4", "optim.weight_decay=0.5")
    kwargs = optim_kwargs(cfg.optim)
    optimizer = kwargs["optimizer"]([{"params": [torch.nn.Parameter(torch.zeros(2, 2))]}])
    assert optimizer.defaults["lr"] == 3e-4 and optimizer.param_groups[0]["weight_decay"] == 0.5
    scheduler = build_scheduler(kwargs["scheduler"], optimizer, max_epochs=10)
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
    assert optim_kwargs(_compose(f"optim={optim}", "optim.scheduler=null").optim)["scheduler"] is None


def test_default_optimiser_is_adamw_with_the_cosine():
    cfg = _compose()
    assert (cfg.optim.lr, cfg.optim.weight_decay) == (1e-3, 1e-2)
    assert cfg.optim.optimizer._target_ == "torch.optim.AdamW"
    assert cfg.optim.scheduler._target_ == "fusion.optim.cosine_annealing"
    assert cfg.optim.scheduler.eta_min_ratio == 0.01


# the built-in augmentation list (ImagingModality's default), once for CT, MRI and PET
AUGMENTATIONS = [
    {"_target_": "monai.transforms.RandFlip", "prob": 0.5, "spatial_axis": 0},
    {
        "_target_": "monai.transforms.RandAffine",
        "prob": 0.3,
        "rotate_range": [0.1, 0.1, 0.1],
        "scale_range": [0.1, 0.1, 0.1],
        "padding_mode": "zeros",
    },
    {"_target_": "monai.transforms.RandScaleIntensity", "factors": 0.1, "prob": 0.3},
    {"_target_": "monai.transforms.RandGaussianNoise", "prob": 0.3, "std": 0.02},
]


def test_imaging_modalities_share_one_base_that_is_not_a_modality():
    assert "base" not in _options("modality") and (CONF / "modality" / "base" / "imaging.yaml").is_file()
    imaging = OmegaConf.to_container(_compose("modality=[ct,mri,pet]").modality, resolve=True)
    shared = {
        "_target_": "fusion.modalities.imaging.ImagingModality",
        "on_error": "raise",
        "series": None,
        "mask_column": None,
        "pixdim": [2.0, 2.0, 2.0],
        "spatial_size": [32, 32, 32],
        "resize_mode": "crop",
        "augment": True,
        "augmentations": AUGMENTATIONS,
        "encoder": "cnn",
        "encoder_kwargs": {},
        "embed_dim": 64,
        "pretrained": None,
        "pretrained_prefix": None,
        "pretrained_skip": [],
        "freeze": False,
        "gradient_checkpointing": False,
    }
    own = {
        "ct": {"sequences": None, "ct_window": [-200, 300], "ct_windows": None},
        "mri": {"sequences": ["t1", "t2", "flair"]},
        "pet": {"sequences": None, "pet_suv_max": 10.0},
    }
    for name, keys in own.items():
        assert imaging[name] == {**shared, "name": name, "column": name, "kind": name, **keys}, name
    one = _compose("modality=[ct,mri,pet]", "modality.ct.spatial_size=[48,48,48]").modality
    assert list(one.ct.spatial_size) == [48, 48, 48] and list(one.pet.spatial_size) == [32, 32, 32]


@pytest.mark.parametrize(
    "name, overrides, seed",
    [
        ("train", [], 42),
        ("train", ["seed=7"], 7),
        ("cv", [], 42),
        ("validate", [], 42),
        ("predict", ["ckpt_path=x.ckpt", "data.manifest=m.csv"], 0),  # no run seed in fusion-predict
    ],
)
def test_evaluation_is_one_group_with_each_command_s_seed(name, overrides, seed):
    evaluation = OmegaConf.to_container(fusion.compose(overrides, config_name=name).evaluation, resolve=True)
    assert evaluation == {
        "n_bootstrap": 1000,
        "seed": seed,
        "level": 0.95,
        "horizons": None,
        "risk_groups": 2,
        "risk_cutoff": "train",
        "calibration_bins": 10,
        "ibs_points": 50,
        "report": True,
        "wandb_table": False,
    }


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
