"""LightningDataModule: records -> checks -> patient split -> load (cached) -> fit on train -> loaders."""

from __future__ import annotations

import logging
import multiprocessing
import os
from pathlib import Path
from typing import Any, Literal, overload

import lightning as L
import torch
from torch.utils.data import DataLoader

from fusion.data.dataset import Collator, FusionDataset
from fusion.data.item_store import ItemStore
from fusion.data.records import PatientRecord, collect_records, without_inputs
from fusion.data.split_sizes import SplitMinimums, check_split_sizes
from fusion.data.splits import split_patients
from fusion.errors import ConfigError
from fusion.heads.base import Head
from fusion.io.cohort import Cohort, CohortError
from fusion.modalities.base import Modality

log = logging.getLogger(__name__)


class FusionDataModule(L.LightningDataModule):
    """Args:
    cohort, modalities, heads: what to read and which labels to use.
    splits: explicit {"train"|"val"|"test"|"predict": [patient ids]}; None = stratified split from `split`.
    split: {"val": frac, "test": frac, "seed": int, "stratify_by": [head names], "min_patients": {split: n},
        "min_per_class": {split: n}}; setup("fit") refuses a split smaller than these minimums (see
        `fusion.data.split_sizes`), whether computed here or given in `splits`.
    fit_modalities: learn modality state on the training split (False when it comes from a checkpoint).
    cache: where loaded inputs are kept: ``memory`` (default), ``disk`` (a persistent cache under
        `cache_dir`, read on access) or ``none`` (load on every access); ``True``/``False`` mean
        memory/none. With memory and disk every input is loaded or found before training, so broken
        inputs are reported before epoch 1. See `fusion.data.item_store`.
    cache_dir: folder of the disk cache (``data.cache_dir``), needed for ``disk``.
    num_workers, pin_memory, persistent_workers, prefetch_factor: passed to every DataLoader;
        ``"auto"`` is resolved when a loader is built, from the trainer's device (see `loader_options`).
    augment_on: where the training augmentation of modalities with an `augment_batch` (CT, MRI, PET) runs:
        ``cpu`` (per sample, in `transform`, in the loader workers), ``device`` (per batch, vectorised,
        after the batch reached the training device: `on_after_batch_transfer`) or ``auto`` (device when
        training on CUDA, else cpu). ``device`` needs the trainer to hold this datamodule
        (``trainer.fit(model, datamodule=dm)``): a train loader built without one augments on the CPU.
    """

    def __init__(
        self,
        cohort: Cohort,
        modalities: dict[str, Modality],
        heads: dict[str, Head],
        splits: dict[str, list[str]] | None = None,
        split: dict[str, Any] | None = None,
        batch_size: int = 32,
        num_workers: int | str = "auto",
        pin_memory: bool | str = "auto",
        persistent_workers: bool = True,
        prefetch_factor: int | None = None,
        cache: str | bool = "memory",
        cache_dir: str | Path | None = None,
        fit_modalities: bool = True,
        augment_on: str = "auto",
    ):
        super().__init__()
        self.cohort, self.modalities, self.heads = cohort, modalities, heads
        self.split_cfg = {"val": 0.15, "test": 0.2, "seed": 0, "stratify_by": None, **(split or {})}
        self.minimums = SplitMinimums.from_split_config(self.split_cfg)
        self.splits = splits
        self.batch_size = batch_size
        self.num_workers, self.pin_memory = check_workers(num_workers), check_flag("pin_memory", pin_memory)
        self.persistent_workers = check_flag("persistent_workers", persistent_workers, auto=False)
        if prefetch_factor is not None and (
            isinstance(prefetch_factor, bool) or not isinstance(prefetch_factor, int) or prefetch_factor < 1
        ):
            raise ConfigError(f"data.prefetch_factor must be a positive int or null, got {prefetch_factor!r}")
        self.prefetch_factor = prefetch_factor
        self.fit_modalities = fit_modalities
        if augment_on not in AUGMENT_ON:
            raise ConfigError(f"data.augment_on must be one of {list(AUGMENT_ON)}, got {augment_on!r}")
        self.augment_on = augment_on
        self.deferred: frozenset[str] = frozenset()  # augmented per batch on the device (train loader)
        self.store = ItemStore(modalities, cache=cache, cache_dir=cache_dir)
        self.cache = self.store.mode
        self.records: dict[str, list[PatientRecord]] = {}
        self.excluded: list[str] = []  # patients with none of the selected modalities
        self._ready = False

    # ---------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        if self._ready:
            return
        records, problems = collect_records(self.cohort, self.modalities, self.heads)
        if problems:
            raise CohortError(problems, f"cohort '{self.cohort.manifest_path}'")
        self.excluded = without_inputs(records)
        if self.excluded:
            log.warning(
                "%d patient(s) have none of the selected modalities and are left out: %s",
                len(self.excluded),
                ", ".join(self.excluded),
            )
        records = [r for r in records if r.has_any_modality()]
        by_id = {r.patient_id: r for r in records}
        splits = self.splits or self._stratified_split(records)
        unknown = sorted(
            p for ids in splits.values() for p in ids if p not in by_id and p not in self.excluded
        )
        if unknown:
            raise ConfigError(f"split names patients absent from the manifest: {unknown[:10]}")
        self.records = {name: [by_id[p] for p in ids if p in by_id] for name, ids in splits.items()}
        for name, recs in self.records.items():
            log.info("%s: %d patients", name, len(recs))
        if stage in (None, "fit"):
            check_split_sizes(self.records, self.heads, self.minimums)
        if self.cache != "none":
            self.store.load_all([r for recs in self.records.values() for r in recs])
        if self.fit_modalities:
            self._fit_modalities(self.records.get("train", []))
        self._ready = True

    def _stratified_split(self, records: list[PatientRecord]) -> dict[str, list[str]]:
        by = self.split_cfg["stratify_by"] or list(self.heads)[:1]
        by = [h for h in by if h in self.heads]
        strata = ["|".join(self.heads[h].stratum(r.labels[h]) for h in by) for r in records]
        return split_patients(
            [r.patient_id for r in records],
            strata,
            self.split_cfg["val"],
            self.split_cfg["test"],
            self.split_cfg["seed"],
        )

    def _fit_modalities(self, train: list[PatientRecord]) -> None:
        """Fit each modality's state on *training* patients only (never val/test)."""
        for name, modality in self.modalities.items():
            if not modality.needs_fit:
                continue
            items = [item for r in train if (item := self.store.get(r, name)) is not None]
            if not items:
                raise ConfigError(f"modality '{name}': no training patient has it, so it cannot be fitted")
            modality.fit(items)

    # ---------------------------------------------------------------- loaders
    def split_ids(self) -> dict[str, list[str]]:
        return {name: [r.patient_id for r in recs] for name, recs in self.records.items()}

    def loader(self, split: str, train: bool = False) -> DataLoader:
        if split not in self.records:
            raise KeyError(f"no '{split}' split (have {sorted(self.records)})")
        cuda, processes = self._device()
        deferred: frozenset[str] = frozenset()
        if train:
            self.deferred = deferred = self._deferred(cuda)
        dataset = FusionDataset(self.records[split], self.store, train=train, deferred=deferred)
        options = loader_options(
            self.num_workers, self.pin_memory, self.persistent_workers, self.prefetch_factor, cuda, processes
        )
        if options["num_workers"] and self.cache == "memory":
            _warn_if_not_forked()
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > self.batch_size,
            collate_fn=Collator(self.modalities, self.heads),
            **options,
        )

    def _deferred(self, cuda: bool) -> frozenset[str]:
        """Modalities whose training augmentation waits for `on_after_batch_transfer`."""
        where = self.augment_on if self.augment_on != "auto" else ("device" if cuda else "cpu")
        if where == "cpu":
            return frozenset()
        if getattr(self, "trainer", None) is None:
            if self.augment_on == "device":
                log.warning(
                    "data.augment_on=device, but no trainer holds this datamodule (use "
                    "trainer.fit(model, datamodule=dm)): augmenting per sample on the CPU instead"
                )
            return frozenset()
        return frozenset(name for name, m in self.modalities.items() if m.augments_per_batch)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Training batches: the deferred augmentation, on the present rows, where the batch now is."""
        trainer = getattr(self, "trainer", None)
        if not self.deferred or trainer is None or not trainer.training or not isinstance(batch, dict):
            return batch
        for name in self.deferred:
            entry = batch["inputs"].get(name)
            if entry is not None and entry["data"] is not None:
                augment = self.modalities[name].augment_batch
                assert augment is not None  # `_deferred` keeps only the modalities that have one
                entry["data"] = augment(entry["data"])
        return batch

    def _device(self) -> tuple[bool, int]:
        """(batches go to CUDA, training processes on this node): from the attached trainer, else
        (whether CUDA exists, 1)."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return torch.cuda.is_available(), 1
        try:
            return trainer.strategy.root_device.type == "cuda", max(1, int(trainer.num_devices))
        except (AttributeError, RuntimeError, TypeError):
            return torch.cuda.is_available(), 1

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.loader("predict" if "predict" in self.records else "test")


# ---------------------------------------------------------------- data loader options
AUGMENT_ON = ("auto", "cpu", "device")


def check_workers(value: int | str) -> int | str:
    """``data.num_workers``: an int >= 0 or ``"auto"``."""
    if value == "auto":
        return value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"data.num_workers must be an int >= 0 or 'auto', got {value!r}")
    return value


@overload
def check_flag(key: str, value: bool | str, auto: Literal[False]) -> bool: ...
@overload
def check_flag(key: str, value: bool | str, auto: bool = True) -> bool | str: ...
def check_flag(key: str, value: bool | str, auto: bool = True) -> bool | str:
    """A boolean loader option (``"auto"`` allowed where ``auto``)."""
    if isinstance(value, bool) or (auto and value == "auto"):
        return value
    allowed = "true, false or 'auto'" if auto else "true or false"
    raise ConfigError(f"data.{key} must be {allowed}, got {value!r}")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a Slurm or container allocation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def loader_options(
    num_workers: int | str,
    pin_memory: bool | str,
    persistent_workers: bool,
    prefetch_factor: int | None,
    cuda: bool,
    processes: int = 1,
) -> dict[str, Any]:
    """DataLoader keyword arguments with ``"auto"`` resolved.

    On CUDA, ``auto`` workers = min(8, usable CPUs / ``processes`` - 1) per training process (one per
    GPU of this node): loading and augmentation then overlap the GPU step, leaving one core for each
    training process. On CPU, ``auto`` = 0: worker processes would compete with the model's own
    threads for the same cores. ``auto`` pinning = on CUDA only: pinned (page-locked) batches are
    copied to the GPU by DMA and asynchronously (Lightning moves them with ``non_blocking=True``);
    on CPU pinning only costs time. Persistent workers and the prefetch factor apply only with
    workers (the DataLoader rejects them otherwise).
    """
    if num_workers == "auto":
        workers = max(0, min(8, usable_cpus() // max(1, processes) - 1)) if cuda else 0
    else:
        workers = int(num_workers)
    options: dict[str, Any] = {
        "num_workers": workers,
        "pin_memory": cuda if pin_memory == "auto" else bool(pin_memory),
        "persistent_workers": bool(persistent_workers) and workers > 0,
    }
    if workers > 0 and prefetch_factor is not None:
        options["prefetch_factor"] = int(prefetch_factor)
    return options


_warned_start_method = False


def _warn_if_not_forked() -> None:
    """With ``spawn``/``forkserver`` each worker receives the dataset pickled, memory cache included."""
    global _warned_start_method
    method = multiprocessing.get_start_method(allow_none=True) or multiprocessing.get_start_method()
    if method != "fork" and not _warned_start_method:
        _warned_start_method = True
        log.warning(
            "data loader workers start by '%s', not 'fork': each worker is sent the whole memory cache "
            "(tensors through shared memory, one file handle each); for large cohorts use "
            "data.cache=disk or num_workers=0",
            method,
        )
