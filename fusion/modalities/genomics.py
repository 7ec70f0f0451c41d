"""Genomics: one numeric vector per patient (e.g. gene expression) from `genomics.csv`.

load   the selected genes as float32, NaN kept (a missing measurement is not an error)
fit    per-gene mean / std after optional log1p, on the training patients only
encode a self-normalising MLP (SNN), as in PathomicFusion's genomic branch
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from fusion.modalities.table import TableModality, nan_mean_std, select_table_columns, to_number
from fusion.nn.snn import SNN


class GenomicsModality(TableModality):
    """Numeric per-patient vector (gene expression, CNV, mutation counts...) -> (n, embed_dim).

    Args:
        name: modality key; also the default table name (`<name>.csv` beside the manifest).
        table: table path (relative to the manifest folder); default `<name>.csv|.tsv|.parquet`.
        on_error: ``raise`` or ``drop_modality`` for a broken row.
        genes: columns to use, in this order; None = every column but patient_id.
        log1p: apply ``log(1 + x)`` before z-scoring (for non-negative expression-like values).
        embed_dim: encoder output size.
        hidden: SNN hidden layer widths.
        dropout: SNN AlphaDropout rate.
    """

    needs_fit = True

    def __init__(
        self,
        name: str = "genomics",
        table: str | Path | None = None,
        on_error: str = "raise",
        genes: Sequence[str] | None = None,
        log1p: bool = True,
        embed_dim: int = 64,
        hidden: int | Sequence[int] = (128,),
        dropout: float = 0.1,
    ):
        super().__init__(name=name, table=table, on_error=on_error)
        self.genes: list[str] | None = None if genes is None else [str(g) for g in genes]
        if self.genes is not None and len(set(self.genes)) != len(self.genes):
            dup = sorted({g for g in self.genes if self.genes.count(g) > 1})
            raise ValueError(f"modality '{name}': genes listed twice: {dup}")
        if self.genes is not None and not self.genes:
            raise ValueError(f"modality '{name}': genes is an empty list (use null for all columns)")
        self.log1p = bool(log1p)
        self.embed_dim = int(embed_dim)
        self.hidden = (int(hidden),) if isinstance(hidden, int) else tuple(int(h) for h in hidden)
        self.dropout = float(dropout)
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    # ----------------------------------------------------------------- cohort side
    def select_columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The configured genes (all columns when none are configured); the choice is kept for load."""
        if self.genes is None:
            self.genes = [str(c) for c in frame.columns]
        return select_table_columns(frame, self.genes, f"modality '{self.name}': genes", self.table_path)

    def check(self, ref: Any) -> list[str]:
        """Every non-numeric, infinite or (with log1p) negative cell of the row, naming its column."""
        return [] if ref is None else self._parse(ref)[1]

    # ----------------------------------------------------------------- data side
    def load(self, ref: pd.Series) -> np.ndarray:
        """The row's selected genes as a float32 vector; empty cells become NaN."""
        values, problems = self._parse(ref)
        if problems:
            raise ValueError("; ".join(problems))
        return values

    def fit(self, items: list[Any]) -> None:
        """Per-gene mean/std (after log1p) from the training items only."""
        if not items:
            raise ValueError(f"modality '{self.name}': fit() got no training items")
        self.mean, self.std = nan_mean_std(np.stack([self._scale(item) for item in items]))

    def transform(self, item: Any, train: bool) -> torch.Tensor:
        """log1p + z-score with the fitted state; missing values become 0 (the training mean)."""
        if self.mean is None or self.std is None:
            raise RuntimeError(
                f"modality '{self.name}': transform() called before fit(); fit on the training items "
                "or load_state_dict() from a checkpoint first"
            )
        x = self._scale(item)
        if x.shape != self.mean.shape:
            raise ValueError(
                f"modality '{self.name}': item has {x.shape[0]} genes, fitted on {self.mean.shape[0]}"
            )
        z = np.nan_to_num((x - self.mean) / self.std, nan=0.0)
        return torch.from_numpy(z.astype(np.float32))

    # ----------------------------------------------------------------- model side
    def build_encoder(self) -> nn.Module:
        if self.mean is None:
            raise RuntimeError(
                f"modality '{self.name}': build_encoder() needs fit() or load_state_dict() first"
            )
        return SNN(len(self.mean), self.hidden, self.embed_dim, self.dropout)

    @property
    def out_dim(self) -> int:
        return self.embed_dim

    # ----------------------------------------------------------------- fitted state
    def state_dict(self) -> dict[str, Any]:
        if self.mean is None or self.std is None:
            return {}
        return {
            "genes": self.genes,
            "log1p": self.log1p,
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.genes = None if state["genes"] is None else list(state["genes"])
        self.log1p = bool(state["log1p"])
        self.mean = np.asarray(state["mean"], dtype=np.float64)
        self.std = np.asarray(state["std"], dtype=np.float64)

    # ----------------------------------------------------------------- helpers
    def _genes_of(self, row: pd.Series) -> list[str]:
        return self.genes if self.genes is not None else [str(c) for c in row.index]

    def _where(self) -> str:
        return f"table '{self.table_path}', " if self.table_path is not None else ""

    def _parse(self, row: pd.Series) -> tuple[np.ndarray, list[str]]:
        """The selected genes as float32 (NaN = empty) and the problems found, each naming its column."""
        genes = self._genes_of(row)
        absent = [g for g in genes if g not in row.index]
        if absent:
            return np.full(len(genes), np.nan, np.float32), [
                f"{self._where()}gene columns {absent} are absent"
            ]
        cells, problems = row[genes], []
        if pd.api.types.is_numeric_dtype(cells.dtype) and not pd.api.types.is_bool_dtype(cells.dtype):
            values = cells.to_numpy(
                dtype=np.float64, na_value=np.nan
            )  # fast path: the whole table parsed as numbers
        else:
            values = np.full(len(genes), np.nan)
            for i, (gene, cell) in enumerate(cells.items()):
                try:
                    values[i] = to_number(cell)
                except ValueError as err:
                    problems.append(f"{self._where()}gene column '{gene}': {err}")
        for i in np.flatnonzero(np.isinf(values)):
            problems.append(f"{self._where()}gene column '{genes[i]}': infinite value {values[i]}")
        if self.log1p:
            for i in np.flatnonzero(values < 0):
                problems.append(
                    f"{self._where()}gene column '{genes[i]}': negative value {values[i]} cannot be "
                    "log1p-transformed (set log1p=false for data that is already log-scaled or centred)"
                )
        return values.astype(np.float32), problems

    def _scale(self, item: Any) -> np.ndarray:
        x = np.asarray(item, dtype=np.float64)
        return np.log1p(x) if self.log1p else x
