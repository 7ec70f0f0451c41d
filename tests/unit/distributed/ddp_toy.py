"""A tiny three-head fusion model on in-memory vectors, shared by the distributed tests.

A plain module (not a conftest) because spawned worker processes import it by name.
"""

from __future__ import annotations

import socket

import torch
from torch import nn

from fusion.data.dataset import Collator
from fusion.fusers import TransformerFuser
from fusion.heads import GradeHead, ResponseHead, SurvivalHead
from fusion.lit import LitFusion
from fusion.modalities.base import Modality
from fusion.model import FusionModel


class Vector(Modality):
    def __init__(self, name: str, dim: int):
        super().__init__(name)
        self.dim = dim

    def load(self, ref):
        return ref

    def build_encoder(self):
        return nn.Linear(self.dim, 8)

    @property
    def out_dim(self):
        return 8


def parts() -> tuple[dict, dict]:
    modalities = {"a": Vector("a", 4), "b": Vector("b", 3)}
    heads = {
        "grade": GradeHead(16, classes=[1, 2, 3]),
        "survival": SurvivalHead(16),
        "response": ResponseHead(16),
    }
    return modalities, heads


def make_lit(cls: type[LitFusion] = LitFusion, **kwargs) -> LitFusion:
    """The same initial weights in every process; no dropout, so runs are comparable."""
    torch.manual_seed(0)
    modalities, heads = parts()
    dims = {"a": 8, "b": 8}
    fuser = TransformerFuser(
        dims, d_model=16, n_heads=2, n_layers=1, dim_feedforward=32, dropout=0.0, modality_dropout=0.0
    )
    encoders = {name: m.build_encoder() for name, m in modalities.items()}
    return cls(FusionModel(encoders, dims, fuser, heads), **kwargs)


def samples(prefix: str, n: int, seed: int, b_rows: set[int]) -> list[dict]:
    """`n` patients with some unknown labels; modality `b` only for `b_rows` (`a` for everyone)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        grade = None if i % 5 == 4 else i % 3
        survival = None if i % 6 == 5 else (float(1 + (i * 7) % 11), float(i % 3 != 2))
        response = None if i % 4 == 3 else float(i % 2)
        items = {
            "a": torch.randn(4, generator=gen),
            "b": torch.randn(3, generator=gen) if i in b_rows else None,
        }
        labels = {"grade": grade, "survival": survival, "response": response}
        out.append({"patient_id": f"{prefix}{i}", "items": items, "labels": labels})
    return out


def collator() -> Collator:
    return Collator(*parts())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
