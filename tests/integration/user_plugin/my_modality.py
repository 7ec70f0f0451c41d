"""A user's own modality, living outside the fusion package: one class (+ one YAML beside it).

It reads a per-patient `.npy` radiomics feature vector named in the manifest column `radiomics`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

import fusion


class RadiomicsModality(fusion.Modality):
    needs_fit = True

    def __init__(self, name: str = "radiomics", column: str | None = None, embed_dim: int = 8):
        super().__init__(name=name, column=column)
        self.embed_dim = embed_dim
        self.mean: np.ndarray | None = None

    def load(self, ref: Path) -> torch.Tensor:
        return torch.as_tensor(np.load(ref), dtype=torch.float32)

    def fit(self, items: list[torch.Tensor]) -> None:
        self.mean = torch.stack(items).mean(0).numpy()

    def transform(self, item: torch.Tensor, train: bool) -> torch.Tensor:
        return item - torch.as_tensor(self.mean)

    def build_encoder(self) -> nn.Module:
        return nn.Sequential(nn.Linear(len(self.mean), self.embed_dim), nn.ReLU())

    @property
    def out_dim(self) -> int:
        return self.embed_dim

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist()}

    def load_state_dict(self, state: dict) -> None:
        self.mean = np.asarray(state["mean"], dtype=np.float32)
