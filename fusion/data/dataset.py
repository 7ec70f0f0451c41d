"""Torch dataset over patient records, and the collate function that builds the batch dict."""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset

from fusion.data.item_store import ItemStore, non_finite_problem
from fusion.data.records import PatientRecord, reference_file
from fusion.heads.base import Head
from fusion.modalities.base import Modality, ModalityError


class FusionDataset(Dataset):
    """One sample per patient: transformed items (None = missing) and labels (None = unknown).

    `deferred`: modalities whose training augmentation runs later, on the collated batch on the
    training device (`Modality.augment_batch`, ``data.augment_on=device``): their items get the
    evaluation transform here. A transformed item holding NaN/inf (beyond a modality's NaN for
    missing values, `Modality.missing_as_nan`) is a `ModalityError` naming the patient and modality.
    """

    def __init__(
        self,
        records: list[PatientRecord],
        store: ItemStore,
        train: bool,
        deferred: frozenset[str] = frozenset(),
    ):
        self.records = records
        self.store = store
        self.train = train
        self.deferred = deferred

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        items = {}
        for name, modality in self.store.modalities.items():
            item = self.store.get(record, name)
            train = self.train and name not in self.deferred
            if item is not None:
                item = modality.transform(item, train=train)
                problem = non_finite_problem(modality, item, "transformed")
                if problem is not None:
                    ref = reference_file(record.refs.get(name))
                    raise ModalityError(record.patient_id, name, problem, ref)
            items[name] = item
        return {"patient_id": record.patient_id, "items": items, "labels": record.labels}


class Collator:
    """Batch dict: patient_id list, per-modality {"present": (B,) bool, "data": present rows only}, labels.

    A class rather than a closure so DataLoader workers can pickle it.
    """

    def __init__(self, modalities: dict[str, Modality], heads: dict[str, Head]):
        self.modalities = modalities
        self.heads = heads

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        inputs = {}
        for name, modality in self.modalities.items():
            items = [s["items"][name] for s in samples]
            present = torch.tensor([x is not None for x in items], dtype=torch.bool)
            data = modality.collate([x for x in items if x is not None]) if present.any() else None
            inputs[name] = {"present": present, "data": data}
        labels = {
            name: head.label_tensor([s["labels"][name] for s in samples]) for name, head in self.heads.items()
        }
        return {"patient_id": [s["patient_id"] for s in samples], "inputs": inputs, "labels": labels}
