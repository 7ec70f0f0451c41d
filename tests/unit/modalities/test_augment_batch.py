"""`Modality.augment_batch` is declared on the base class (None: per-sample augmentation only), and
the data module asks `augments_per_batch` which modalities to augment on the training device."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from fusion.data.datamodule import FusionDataModule
from fusion.modalities.base import Modality
from fusion.modalities.ehr import EHRModality
from fusion.modalities.genomics import GenomicsModality
from fusion.modalities.histology import HistologyModality
from fusion.modalities.imaging import ImagingModality
from fusion.modalities.table import TableModality


class Plain(Modality):
    def load(self, ref: Any) -> torch.Tensor:
        return torch.zeros(2)

    def build_encoder(self) -> nn.Module:
        return nn.Identity()

    @property
    def out_dim(self) -> int:
        return 2


class Batched(Plain):
    """A user modality with its own batched augmentation, written before the base declared it."""

    def augment_batch(self, data: torch.Tensor) -> torch.Tensor:
        return data.flip(-1)


def test_the_default_is_no_batched_augmentation() -> None:
    assert Modality.augment_batch is None
    assert Plain("x").augment_batch is None and not Plain("x").augments_per_batch


@pytest.mark.parametrize("cls", [TableModality, GenomicsModality, EHRModality, HistologyModality])
def test_only_imaging_among_the_built_ins_augments_per_batch(cls: type[Modality]) -> None:
    assert cls.augment_batch is None
    assert callable(ImagingModality.augment_batch)
    assert ImagingModality("ct", kind="ct").augments_per_batch


def test_a_subclass_method_is_found_as_before() -> None:
    modality = Batched("y")
    assert modality.augments_per_batch
    assert torch.equal(modality.augment_batch(torch.tensor([1, 2])), torch.tensor([2, 1]))


def test_the_datamodule_defers_exactly_the_modalities_that_augment_per_batch() -> None:
    modalities = {"ct": ImagingModality("ct", kind="ct"), "x": Plain("x"), "y": Batched("y")}
    datamodule = FusionDataModule(None, modalities, {}, augment_on="device")
    datamodule.trainer = SimpleNamespace(training=True)
    assert datamodule._deferred(cuda=False) == frozenset({"ct", "y"})
    assert FusionDataModule(None, modalities, {}, augment_on="cpu")._deferred(cuda=True) == frozenset()
