"""FusionModel + Collator with in-memory modalities: encoders see only the patients who have them."""

import torch
from torch import nn

from fusion.data.dataset import Collator
from fusion.fusers import TransformerFuser
from fusion.heads import GradeHead, SurvivalHead
from fusion.modalities.base import Modality
from fusion.model import FusionModel


class VectorModality(Modality):
    def __init__(self, name, dim):
        super().__init__(name)
        self.dim = dim

    def load(self, ref):
        return torch.as_tensor(ref, dtype=torch.float32)

    def build_encoder(self):
        return RecordingEncoder(self.dim)

    @property
    def out_dim(self):
        return self.dim


class RecordingEncoder(nn.Linear):
    def __init__(self, dim):
        super().__init__(dim, dim)
        self.seen = []

    def forward(self, x):
        self.seen.append(x.shape[0])
        return super().forward(x)


def _batch():
    modalities = {"a": VectorModality("a", 4), "b": VectorModality("b", 3)}
    heads = {"grade": GradeHead(8, classes=[1, 2]), "survival": SurvivalHead(8)}
    samples = [
        {
            "patient_id": "P1",
            "items": {"a": torch.ones(4), "b": None},
            "labels": {"grade": 1, "survival": None},
        },
        {
            "patient_id": "P2",
            "items": {"a": None, "b": torch.ones(3)},
            "labels": {"grade": None, "survival": (2.0, 1.0)},
        },
        {
            "patient_id": "P3",
            "items": {"a": torch.zeros(4), "b": torch.ones(3)},
            "labels": {"grade": 0, "survival": (1.0, 0.0)},
        },
    ]
    return modalities, heads, Collator(modalities, heads)(samples)


def test_collate_keeps_present_rows_only_and_label_sentinels():
    _, _, batch = _batch()
    assert batch["patient_id"] == ["P1", "P2", "P3"]
    assert batch["inputs"]["a"]["present"].tolist() == [True, False, True]
    assert batch["inputs"]["a"]["data"].shape == (2, 4)
    assert batch["labels"]["grade"].tolist() == [1, -1, 0]
    assert torch.isnan(batch["labels"]["survival"][0]).all()


def test_model_runs_each_encoder_on_present_rows_and_outputs_every_head():
    modalities, heads, batch = _batch()
    encoders = {n: m.build_encoder() for n, m in modalities.items()}
    model = FusionModel(
        encoders,
        {n: m.out_dim for n, m in modalities.items()},
        TransformerFuser({"a": 4, "b": 3}, d_model=8, n_heads=2),
        heads,
    ).eval()
    out = model(batch["inputs"])
    assert encoders["a"].seen == [2] and encoders["b"].seen == [2]
    assert out["grade"].shape == (3, 2) and out["survival"].shape == (3,)


def test_a_modality_absent_from_the_whole_batch_is_masked_not_encoded():
    modalities, heads, batch = _batch()
    batch["inputs"]["b"] = {"present": torch.zeros(3, dtype=torch.bool), "data": None}
    batch["inputs"]["a"]["present"] = torch.tensor([True, True, True])
    batch["inputs"]["a"]["data"] = torch.randn(3, 4)
    encoders = {n: m.build_encoder() for n, m in modalities.items()}
    model = FusionModel(
        encoders, {"a": 4, "b": 3}, TransformerFuser({"a": 4, "b": 3}, d_model=8, n_heads=2), heads
    ).eval()
    assert model(batch["inputs"])["grade"].shape == (3, 2)
    assert encoders["b"].seen == []
