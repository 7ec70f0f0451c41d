"""EHR: clinical variables (age, sex, stage, ECOG, LDH ...) from `ehr.csv`, one row per patient.

Column types are decided once, from the table's pandas dtypes (numbers -> numeric, anything
else -> categorical), unless `numeric` / `categorical` say otherwise. Numerics are z-scored with
training statistics and carry a missing indicator; categories map to indices of a vocabulary
learned on the training patients, with 0 reserved for missing and unseen values.

encoder="tokens": one token per column (FT-Transformer tokenizer) -> (n, n_columns, embed_dim)
encoder="mlp":    numerics + indicators + category embeddings -> MLP -> (n, embed_dim)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from fusion.data.cohort import is_missing
from fusion.modalities.table import TableModality, nan_mean_std, select_table_columns, to_number
from fusion.nn.tokenizer import FeatureTokenizer

ENCODERS = ("tokens", "mlp")


def category(value: Any) -> str | None:
    """A categorical cell as a canonical string (1.0 -> '1', ' F ' -> 'F'); None when empty."""
    if is_missing(value):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def infer_column_types(
    frame: pd.DataFrame, numeric: Sequence[str] = (), categorical: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """Split the frame's columns into (numeric, categorical): declared types first, else the dtype.

    A text column whose values are mostly numbers is probably a numeric column with a typo
    ("n/a", "12,5"); it stays categorical as the contract says, but with a warning naming it.
    """
    num, cat = [], []
    for col in frame.columns:
        series = frame[col]
        if col in numeric:
            num.append(col)
        elif col in categorical:
            cat.append(col)
        elif pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            num.append(col)
        else:
            cat.append(col)
            present = series[~series.map(is_missing)]
            parsed = pd.to_numeric(present, errors="coerce")
            if len(present) and parsed.notna().mean() >= 0.8:
                bad = sorted(set(present[parsed.isna()].astype(str)))[:5]
                warnings.warn(
                    f"EHR column '{col}' is treated as categorical because of non-numeric values {bad}; "
                    f"fix them or declare numeric=[{col}]",
                    stacklevel=2,
                )
    return num, cat


class EHRTokenEncoder(nn.Module):
    """Collated EHR batch -> one token per column, (n, n_num + n_cat, embed_dim)."""

    def __init__(self, n_num: int, cat_cardinalities: Sequence[int], embed_dim: int):
        super().__init__()
        self.tokenizer = FeatureTokenizer(n_num, cat_cardinalities, embed_dim)

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        return self.tokenizer(batch["num"], batch["num_missing"], batch["cat"])


class EHRMLPEncoder(nn.Module):
    """Collated EHR batch -> one vector, (n, embed_dim): [numerics, indicators, embeddings] -> MLP."""

    def __init__(self, n_num: int, cat_cardinalities: Sequence[int], embed_dim: int, dropout: float = 0.1):
        super().__init__()
        cat_dim = max(2, embed_dim // 4)
        self.embeddings = nn.ModuleList(nn.Embedding(int(c), cat_dim) for c in cat_cardinalities)
        in_dim = 2 * n_num + cat_dim * len(self.embeddings)
        if in_dim == 0:
            raise ValueError("EHRMLPEncoder needs at least one numeric or categorical column")
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, 2 * embed_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(2 * embed_dim, embed_dim),
        )

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        cat = batch["cat"].long()
        parts = [torch.nan_to_num(batch["num"]), batch["num_missing"].to(batch["num"].dtype)]
        parts += [emb(cat[:, j]) for j, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat(parts, dim=1))


class EHRModality(TableModality):
    """Clinical table -> per-column tokens (default) or one vector per patient.

    Args:
        name: modality key; also the default table name (`<name>.csv` beside the manifest).
        table: table path (relative to the manifest folder); default `<name>.csv|.tsv|.parquet`.
        on_error: ``raise`` or ``drop_modality`` for a broken row.
        columns: columns to use; None = every column but patient_id.
        numeric / categorical: columns whose type is declared rather than inferred from the dtype.
        encoder: ``tokens`` (FT-Transformer tokenizer) or ``mlp``.
        embed_dim: token / output size.
        dropout: dropout of the ``mlp`` encoder.
    """

    needs_fit = True

    def __init__(
        self,
        name: str = "ehr",
        table: str | Path | None = None,
        on_error: str = "raise",
        columns: Sequence[str] | None = None,
        numeric: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        encoder: str = "tokens",
        embed_dim: int = 32,
        dropout: float = 0.1,
    ):
        super().__init__(name=name, table=table, on_error=on_error)
        if encoder not in ENCODERS:
            raise ValueError(f"modality '{name}': encoder must be one of {ENCODERS}, got '{encoder}'")
        self.columns = None if columns is None else [str(c) for c in columns]
        self.numeric = [str(c) for c in numeric or []]
        self.categorical = [str(c) for c in categorical or []]
        both = sorted(set(self.numeric) & set(self.categorical))
        if both:
            raise ValueError(f"modality '{name}': columns {both} are declared both numeric and categorical")
        self.encoder, self.embed_dim, self.dropout = encoder, int(embed_dim), float(dropout)
        # The column decision (made in gather, or restored from a checkpoint) and the fitted state.
        self.num_columns: list[str] | None = None
        self.cat_columns: list[str] | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        self.vocab: dict[str, list[str]] | None = None
        self._index: list[dict[str, int]] = []

    # ----------------------------------------------------------------- cohort side
    def select_columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The used columns; their types are decided here once and kept (also across cohorts)."""
        what = f"modality '{self.name}': columns"
        if self.num_columns is None or self.cat_columns is None:
            wanted = self.columns if self.columns is not None else [str(c) for c in frame.columns]
            undeclared = [c for c in self.numeric + self.categorical if c not in wanted]
            if undeclared:
                raise ValueError(
                    f"modality '{self.name}': numeric/categorical name {undeclared}, "
                    f"which are not among the used columns (table '{self.table_path}')"
                )
            if not wanted:
                raise ValueError(f"modality '{self.name}': table '{self.table_path}' has no columns to use")
            chosen = select_table_columns(frame, wanted, what, self.table_path)
            self.num_columns, self.cat_columns = infer_column_types(chosen, self.numeric, self.categorical)
        return select_table_columns(frame, self.num_columns + self.cat_columns, what, self.table_path)

    def check(self, ref: Any) -> list[str]:
        """Non-numeric or infinite values in numeric columns, each naming the column and the value."""
        return [] if ref is None else self._parse(ref)[1]

    # ----------------------------------------------------------------- data side
    def load(self, ref: pd.Series) -> dict[str, Any]:
        """{"num": float32 vector with NaN for missing, "cat": raw category strings or None}."""
        item, problems = self._parse(ref)
        if problems:
            raise ValueError("; ".join(problems))
        return item

    def fit(self, items: list[dict[str, Any]]) -> None:
        """Numeric mean/std and category vocabularies from the training items only."""
        if not items:
            raise ValueError(f"modality '{self.name}': fit() got no training items")
        cat_columns = self._types()[1]
        num = np.stack([np.asarray(item["num"], dtype=np.float64) for item in items]).reshape(len(items), -1)
        self.mean, self.std = nan_mean_std(num)
        self.vocab = {
            col: sorted({item["cat"][j] for item in items if item["cat"][j] is not None})
            for j, col in enumerate(cat_columns)
        }
        self._build_index()

    def transform(self, item: dict[str, Any], train: bool) -> dict[str, Tensor]:
        """Standardised numerics (missing -> 0), missing indicators, category indices (unseen -> 0)."""
        if self.mean is None or self.std is None or self.vocab is None:
            raise RuntimeError(
                f"modality '{self.name}': transform() called before fit(); fit on the training items "
                "or load_state_dict() from a checkpoint first"
            )
        x = np.asarray(item["num"], dtype=np.float64)
        missing = np.isnan(x)
        z = np.where(missing, 0.0, (x - self.mean) / self.std)
        cat = [
            index.get(value, 0) if value is not None else 0
            for index, value in zip(self._index, item["cat"], strict=True)
        ]
        return {
            "num": torch.from_numpy(z.astype(np.float32)),
            "num_missing": torch.from_numpy(missing),
            "cat": torch.tensor(cat, dtype=torch.long),
        }

    def collate(self, items: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """{"num": (n, n_num) float, "num_missing": (n, n_num) bool, "cat": (n, n_cat) long}."""
        return {key: torch.stack([item[key] for item in items]) for key in ("num", "num_missing", "cat")}

    # ----------------------------------------------------------------- model side
    def build_encoder(self) -> nn.Module:
        if self.vocab is None:
            raise RuntimeError(
                f"modality '{self.name}': build_encoder() needs fit() or load_state_dict() first"
            )
        num_columns, cat_columns = self._types()
        cards = [len(self.vocab[col]) + 1 for col in cat_columns]
        if self.encoder == "tokens":
            return EHRTokenEncoder(len(num_columns), cards, self.embed_dim)
        return EHRMLPEncoder(len(num_columns), cards, self.embed_dim, self.dropout)

    @property
    def out_dim(self) -> int:
        return self.embed_dim

    @property
    def n_tokens(self) -> int:
        """Tokens per patient from the ``tokens`` encoder (one per column)."""
        num_columns, cat_columns = self._types()
        return len(num_columns) + len(cat_columns) if self.encoder == "tokens" else 1

    # ----------------------------------------------------------------- fitted state
    def state_dict(self) -> dict[str, Any]:
        if self.mean is None or self.std is None or self.vocab is None:
            return {}
        return {
            "numeric": list(self.num_columns or []),
            "categorical": list(self.cat_columns or []),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "vocab": {col: list(values) for col, values in self.vocab.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        self.num_columns, self.cat_columns = list(state["numeric"]), list(state["categorical"])
        self.mean = np.asarray(state["mean"], dtype=np.float64).reshape(-1)
        self.std = np.asarray(state["std"], dtype=np.float64).reshape(-1)
        self.vocab = {col: list(values) for col, values in state["vocab"].items()}
        self._build_index()

    # ----------------------------------------------------------------- helpers
    def _types(self) -> tuple[list[str], list[str]]:
        if self.num_columns is None or self.cat_columns is None:
            raise RuntimeError(
                f"modality '{self.name}': column types are not decided yet; call gather() on a cohort "
                "or load_state_dict() from a checkpoint first"
            )
        return self.num_columns, self.cat_columns

    def _build_index(self) -> None:
        assert self.vocab is not None
        self._index = [{v: i + 1 for i, v in enumerate(self.vocab[col])} for col in self._types()[1]]

    def _parse(self, row: pd.Series) -> tuple[dict[str, Any], list[str]]:
        """The row as {"num", "cat"} plus every problem found, each naming the column and the value."""
        num_columns, cat_columns = self._types()
        where = f"table '{self.table_path}', " if self.table_path is not None else ""
        num, problems = np.full(len(num_columns), np.nan, dtype=np.float32), []
        absent = [c for c in num_columns + cat_columns if c not in row.index]
        if absent:
            return {"num": num, "cat": [None] * len(cat_columns)}, [f"{where}columns {absent} are absent"]
        for i, col in enumerate(num_columns):
            try:
                num[i] = to_number(row[col])
            except ValueError as err:
                problems.append(f"{where}column '{col}': {err} in a numeric column")
        return {"num": num, "cat": [category(row[col]) for col in cat_columns]}, problems
