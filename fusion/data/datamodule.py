"""LightningDataModule: records -> checks -> patient split -> load (cached) -> fit on train -> loaders."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from torch.utils.data import DataLoader

from fusion.data.cohort import Cohort, CohortError
from fusion.data.dataset import Collator, FusionDataset
from fusion.data.item_store import ItemStore
from fusion.data.records import PatientRecord, collect_records, without_inputs
from fusion.data.splits import split_patients
from fusion.heads.base import Head
from fusion.modalities.base import Modality

log = logging.getLogger(__name__)


class FusionDataModule(L.LightningDataModule):
    """Args:
    cohort, modalities, heads: what to read and which labels to use.
    splits: explicit {"train"|"val"|"test"|"predict": [patient ids]}; None = stratified split from `split`.
    split: {"val": frac, "test": frac, "seed": int, "stratify_by": [head names]}.
    fit_modalities: learn modality state on the training split (False when it comes from a checkpoint).
    cache: where loaded inputs are kept: ``memory`` (default), ``disk`` (a persistent cache under
        `cache_dir`, read on access) or ``none`` (load on every access); ``True``/``False`` mean
        memory/none. With memory and disk every input is loaded or found before training, so broken
        inputs are reported before epoch 1. See `fusion.data.item_store`.
    cache_dir: folder of the disk cache (``data.cache_dir``), needed for ``disk``.
    """

    def __init__(
        self,
        cohort: Cohort,
        modalities: dict[str, Modality],
        heads: dict[str, Head],
        splits: dict[str, list[str]] | None = None,
        split: dict[str, Any] | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        pin_memory: bool = False,
        cache: str | bool = "memory",
        cache_dir: str | Path | None = None,
        fit_modalities: bool = True,
    ):
        super().__init__()
        self.cohort, self.modalities, self.heads = cohort, modalities, heads
        self.split_cfg = {"val": 0.15, "test": 0.2, "seed": 0, "stratify_by": None, **(split or {})}
        self.splits = splits
        self.batch_size, self.num_workers, self.pin_memory = batch_size, num_workers, pin_memory
        self.fit_modalities = fit_modalities
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
            raise ValueError(f"split names patients absent from the manifest: {unknown[:10]}")
        self.records = {name: [by_id[p] for p in ids if p in by_id] for name, ids in splits.items()}
        for name, recs in self.records.items():
            log.info("%s: %d patients", name, len(recs))
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
                raise ValueError(f"modality '{name}': no training patient has it, so it cannot be fitted")
            modality.fit(items)

    # ---------------------------------------------------------------- loaders
    def split_ids(self) -> dict[str, list[str]]:
        return {name: [r.patient_id for r in recs] for name, recs in self.records.items()}

    def loader(self, split: str, train: bool = False) -> DataLoader:
        if split not in self.records:
            raise KeyError(f"no '{split}' split (have {sorted(self.records)})")
        dataset = FusionDataset(self.records[split], self.store, train=train)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=train,
            drop_last=train and len(dataset) > self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            collate_fn=Collator(self.modalities, self.heads),
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.loader("predict" if "predict" in self.records else "test")
