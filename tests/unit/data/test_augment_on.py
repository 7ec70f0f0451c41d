"""data.augment_on: which loader augments where, and the datamodule hook on the transferred batch."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

import fusion
from fusion.data.cohort import Cohort
from fusion.data.datamodule import FusionDataModule
from fusion.data.synthetic import write_demo_cohort
from fusion.modalities.batch_memory import stack
from fusion.pipeline import build_datamodule, build_heads, build_modalities, build_model


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("augment_on") / "demo"
    return write_demo_cohort(out, n_patients=16, seed=5, volume_shape=(16, 16, 16), tile_size=8, n_genes=8)


def _datamodule(manifest: Path, augment_on: str) -> tuple[FusionDataModule, object]:
    cfg = fusion.compose(
        [
            f"data.augment_on={augment_on}",
            f"data.manifest={manifest}",
            "modality=[ct,genomics]",
            "head=[grade]",
            "data.batch_size=8",
            "data.num_workers=0",
            "modality.ct.spatial_size=[16,16,16]",
            "modality.ct.pixdim=[4,4,4]",
        ]
    )
    modalities, heads = build_modalities(cfg), build_heads(cfg)
    ids = Cohort.load(manifest).patient_ids
    datamodule = build_datamodule(
        cfg, Cohort.load(manifest), modalities, heads, splits={"train": ids[:12], "val": ids[12:]}
    )
    assert datamodule.augment_on == augment_on  # the config key reaches the datamodule
    datamodule.setup("fit")
    return datamodule, cfg


def _cached(datamodule: FusionDataModule, patient: str) -> torch.Tensor:
    record = next(r for r in datamodule.records["train"] if r.patient_id == patient)
    return datamodule.store.get(record, "ct")


def test_bad_setting_is_rejected_naming_the_key() -> None:
    with pytest.raises(ValueError, match="data.augment_on"):
        FusionDataModule(None, {}, {}, augment_on="gpu")


def test_device_with_a_trainer_defers_imaging_augmentation_to_the_batch(cohort: Path) -> None:
    datamodule, _ = _datamodule(cohort, "device")
    datamodule.trainer = SimpleNamespace(training=True)
    loader = datamodule.loader("train", train=True)
    assert loader.dataset.deferred == frozenset({"ct"}) == datamodule.deferred
    batch = next(iter(loader))
    ct = batch["inputs"]["ct"]
    rows = [p for p, has in zip(batch["patient_id"], ct["present"], strict=True) if has]
    for row, patient in zip(ct["data"], rows, strict=True):  # not augmented per sample
        assert torch.equal(row, _cached(datamodule, patient))
    present, genomics = ct["present"].clone(), batch["inputs"]["genomics"]["data"].clone()
    torch.manual_seed(0)
    out = datamodule.on_after_batch_transfer(batch, 0)
    assert torch.equal(out["inputs"]["ct"]["present"], present)  # absent patients stay absent
    assert out["inputs"]["ct"]["data"].shape == (int(present.sum()), 1, 16, 16, 16)
    changed = [
        not torch.equal(a, _cached(datamodule, p))
        for a, p in zip(out["inputs"]["ct"]["data"], rows, strict=True)
    ]
    assert any(changed)
    assert torch.equal(out["inputs"]["genomics"]["data"], genomics)  # no augment_batch: untouched


def test_evaluation_batches_are_never_augmented(cohort: Path) -> None:
    datamodule, _ = _datamodule(cohort, "device")
    datamodule.trainer = SimpleNamespace(training=True)
    datamodule.loader("train", train=True)
    datamodule.trainer.training = False  # validation inside fit
    batch = next(iter(datamodule.val_dataloader()))
    before = batch["inputs"]["ct"]["data"].clone()
    assert torch.equal(datamodule.on_after_batch_transfer(batch, 0)["inputs"]["ct"]["data"], before)
    assert datamodule.loader("val").dataset.deferred == frozenset()


def test_cpu_auto_on_cpu_and_device_without_trainer_augment_per_sample(
    cohort: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for setting in ("cpu", "auto"):
        datamodule, _ = _datamodule(cohort, setting)
        datamodule.trainer = SimpleNamespace(training=True)  # _device() falls back to CUDA availability
        expected = frozenset({"ct"}) if setting == "auto" and torch.cuda.is_available() else frozenset()
        assert datamodule.loader("train", train=True).dataset.deferred == expected
    datamodule, _ = _datamodule(cohort, "device")
    with caplog.at_level("WARNING", logger="fusion.data.datamodule"):
        assert datamodule.train_dataloader().dataset.deferred == frozenset()
    assert "augmenting per sample on the CPU" in caplog.text


def test_lightning_calls_the_hook_in_training_only(cohort: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fusion.lit import LitFusion
    from fusion.optim import optim_kwargs

    datamodule, cfg = _datamodule(cohort, "device")
    calls = []
    ct = datamodule.modalities["ct"]
    original = ct.augment_batch
    monkeypatch.setattr(ct, "augment_batch", lambda data: calls.append(data.shape[0]) or original(data))
    model = build_model(cfg, datamodule.modalities, datamodule.heads)
    lit = LitFusion(model, **optim_kwargs(cfg.optim))
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(lit, datamodule=datamodule)
    assert len(calls) == 1 and calls[0] > 0  # the one training batch, not the validation batch
    assert next(iter(datamodule.val_dataloader()))["inputs"]["ct"]["present"].any()  # which had CT


def _collate_in_worker(items: list[torch.Tensor]) -> tuple[torch.Tensor, bool]:
    out = stack(items)
    return out, out.is_shared()


def test_stack_builds_worker_batches_in_shared_memory() -> None:
    items = [torch.full((2, 3), float(i)) for i in range(4)]
    assert not stack(items).is_shared()  # main process: ordinary memory
    loader = DataLoader(items, batch_size=4, num_workers=1, collate_fn=_collate_in_worker)
    (batch, shared_in_worker), *_ = list(loader)
    assert shared_in_worker
    assert torch.equal(batch, torch.stack(items))
