"""Data loader options: "auto" resolution, validation, and that every split's DataLoader gets them."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

import fusion
from fusion.data import datamodule as dm
from fusion.data.cohort import Cohort
from fusion.data.datamodule import FusionDataModule, loader_options
from fusion.data.synthetic import write_demo_cohort
from fusion.pipeline import build_datamodule, build_heads, build_modalities


def test_auto_is_no_workers_and_no_pinning_on_cpu() -> None:
    options = loader_options("auto", "auto", True, 4, cuda=False)
    assert options == {"num_workers": 0, "pin_memory": False, "persistent_workers": False}


@pytest.mark.parametrize(("cpus", "processes", "workers"), [(16, 1, 8), (4, 1, 3), (16, 4, 3), (2, 2, 0)])
def test_auto_on_cuda_leaves_a_core_per_training_process(
    monkeypatch: pytest.MonkeyPatch, cpus: int, processes: int, workers: int
) -> None:
    monkeypatch.setattr(dm, "usable_cpus", lambda: cpus)
    options = loader_options("auto", "auto", True, 4, cuda=True, processes=processes)
    assert options["num_workers"] == workers
    assert options["pin_memory"] is True
    assert options["persistent_workers"] is (workers > 0)
    assert options.get("prefetch_factor") == (4 if workers else None)


def test_explicit_values_win_over_the_device() -> None:
    options = loader_options(3, False, False, None, cuda=True)
    assert options == {"num_workers": 3, "pin_memory": False, "persistent_workers": False}
    assert loader_options(0, True, True, 2, cuda=False) == {
        "num_workers": 0,
        "pin_memory": True,
        "persistent_workers": False,  # the DataLoader rejects persistent workers without workers
    }


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("num_workers", -1, "data.num_workers"),
        ("num_workers", "many", "data.num_workers"),
        ("num_workers", True, "data.num_workers"),
        ("pin_memory", "yes", "data.pin_memory"),
        ("persistent_workers", "auto", "data.persistent_workers"),
        ("prefetch_factor", 0, "data.prefetch_factor"),
        ("prefetch_factor", "2", "data.prefetch_factor"),
    ],
)
def test_bad_options_are_rejected_naming_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FusionDataModule(None, {}, {}, **{key: value})


@pytest.fixture(scope="module")
def table_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("loaders") / "demo"
    return write_demo_cohort(out, n_patients=30, seed=3, volume_shape=(8, 8, 8), tile_size=8, n_genes=8)


def _datamodule(manifest: Path, *overrides: str) -> FusionDataModule:
    cfg = fusion.compose(
        [
            f"data.manifest={manifest}",
            "modality=[genomics,ehr]",
            "head=[grade]",
            "data.batch_size=8",
            "data.split.min_patients.test=0",  # the 4-patient test split only feeds a loader here
            "data.split.min_per_class.test=0",
            *overrides,
        ]
    )
    modalities, heads = build_modalities(cfg), build_heads(cfg)
    cohort = Cohort.load(manifest)
    ids = cohort.patient_ids
    splits = {"train": ids[:16], "val": ids[16:22], "test": ids[22:26], "predict": ids[26:]}
    datamodule = build_datamodule(cfg, cohort, modalities, heads, splits=splits)
    datamodule.setup("fit")
    return datamodule


def test_shipped_defaults_resolve_to_no_workers_on_a_cpu_trainer(table_cohort: Path) -> None:
    datamodule = _datamodule(table_cohort)
    loader = datamodule.val_dataloader()
    expected = torch.cuda.is_available()
    assert (loader.num_workers > 0, loader.pin_memory) == (expected, expected)


def test_every_split_gets_the_options_and_workers_give_the_same_batches(table_cohort: Path) -> None:
    options = ("data.num_workers=1", "data.pin_memory=false", "data.prefetch_factor=3")
    datamodule = _datamodule(table_cohort, *options)
    loaders = [
        datamodule.train_dataloader(),
        datamodule.val_dataloader(),
        datamodule.test_dataloader(),
        datamodule.predict_dataloader(),
    ]
    for loader in loaders:
        assert (loader.num_workers, loader.prefetch_factor, loader.persistent_workers) == (1, 3, True)
        assert loader.pin_memory is False
    serial = _datamodule(table_cohort, "data.num_workers=0").val_dataloader()
    for mine, theirs in zip(loaders[1], serial, strict=True):  # evaluation: no randomness
        assert mine["patient_id"] == theirs["patient_id"]
        for name in ("genomics", "ehr"):
            assert torch.equal(mine["inputs"][name]["present"], theirs["inputs"][name]["present"])
        assert torch.equal(mine["inputs"]["genomics"]["data"], theirs["inputs"]["genomics"]["data"])
        assert torch.equal(mine["labels"]["grade"], theirs["labels"]["grade"])


def test_auto_follows_the_attached_trainers_device(table_cohort: Path) -> None:
    datamodule = _datamodule(table_cohort)
    datamodule.trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    assert datamodule._device() == (False, 1)
    loader = datamodule.train_dataloader()
    assert (loader.num_workers, loader.pin_memory, loader.persistent_workers) == (0, False, False)


def test_workers_that_are_not_forked_get_a_warning_about_the_memory_cache(
    table_cohort: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    datamodule = _datamodule(table_cohort, "data.num_workers=1")
    monkeypatch.setattr(dm, "_warned_start_method", False)
    monkeypatch.setattr(dm.multiprocessing, "get_start_method", lambda allow_none=False: "spawn")
    with caplog.at_level("WARNING", logger="fusion.data.datamodule"):
        datamodule.val_dataloader()
    assert "start by 'spawn', not 'fork'" in caplog.text and "data.cache=disk" in caplog.text
