"""A tiny hand-built model and its batches for the retrieval tests: two table modalities, three heads."""

from __future__ import annotations

import torch
from torch import nn

from fusion.fusers.transformer import TransformerFuser
from fusion.heads.grade import GradeHead
from fusion.heads.response import ResponseHead
from fusion.heads.survival import SurvivalHead
from fusion.model import FusionModel

NAMES = ("a", "b")


class Tokens(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.layer = nn.Linear(3, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


def tiny_model() -> FusionModel:
    torch.manual_seed(0)
    fuser = TransformerFuser({n: 8 for n in NAMES}, d_model=16, n_heads=2, n_layers=1, dim_feedforward=16)
    heads = [GradeHead(16, classes=["G1", "G2"]), SurvivalHead(16), ResponseHead(16)]
    return FusionModel({n: Tokens(8) for n in NAMES}, {n: 8 for n in NAMES}, fuser, heads).eval()


def batch(patient_ids: list[str], present: dict[str, list[bool]], seed: int = 0) -> dict:
    """A collated batch: each modality's rows for the patients flagged present."""
    generator = torch.Generator().manual_seed(seed)
    inputs = {}
    for name in NAMES:
        flags = torch.tensor(present[name])
        data = torch.randn(int(flags.sum()), 3, generator=generator) if flags.any() else None
        inputs[name] = {"present": flags, "data": data}
    return {"patient_id": patient_ids, "inputs": inputs}
