"""EHR: clinical variables (age, sex, stage, ECOG, LDH ...) from `ehr.csv`, one row per patient.

Column types are decided once, from the table's pandas dtypes (numbers -> numeric, anything
else -> categorical), unless `numeric` / `categorical` / `ordinal` / `boolean` say otherwise
(`ehr_types.py`). Numerics are mapped to normal scores through the training patients' quantiles
(`scaling: quantile`, the default; see `quantile_scaling.py` for why) or z-scored (`scaling: zscore`);
ordinal ranks and booleans are z-scored with training statistics; every number carries a missing
indicator. Categories map to indices of a vocabulary learned on the training patients, with 0
reserved for missing and unseen values.

encoder="tokens": one token per column (FT-Transformer tokenizer) -> (n, n_columns, embed_dim)
encoder="mlp":    numerics + indicators + category embeddings -> MLP -> (n, embed_dim)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from fusion.modalities.ehr_types import (
    ColumnTypes,
    category,
    infer_column_types,
    ordinal_levels,
    to_boolean,
    to_rank,
)
from fusion.modalities.quantile_scaling import fit_quantiles, quantile_normal
from fusion.modalities.table import TableModality, nan_mean_std, select_table_columns, to_number
from fusion.nn.tokenizer import FeatureTokenizer

ENCODERS = ("tokens", "mlp")
SCALINGS = ("quantile", "zscore")
__all__ = ["EHRModality", "category", "infer_column_types"]  # the helpers moved to ehr_types


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
        ordinal: ``{column: [levels, lowest first]}``; a value outside the levels is an error.
        boolean: columns of true/false, yes/no, 1/0 (any case); any other value is an error.
        encoder: ``tokens`` (FT-Transformer tokenizer) or ``mlp``.
        scaling: numeric columns -> ``quantile`` normal scores (default) or ``zscore``.
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
        ordinal: Mapping[str, Sequence[Any]] | None = None,
        boolean: Sequence[str] | None = None,
        encoder: str = "tokens",
        scaling: str = "quantile",
        embed_dim: int = 32,
        dropout: float = 0.1,
    ):
        super().__init__(name=name, table=table, on_error=on_error)
        if encoder not in ENCODERS:
            raise ValueError(f"modality '{name}': encoder must be one of {ENCODERS}, got '{encoder}'")
        if scaling not in SCALINGS:
            raise ValueError(f"modality '{name}': scaling must be one of {SCALINGS}, got '{scaling}'")
        self.scaling = scaling
        self.columns = None if columns is None else [str(c) for c in columns]
        self.numeric = [str(c) for c in numeric or []]
        self.categorical = [str(c) for c in categorical or []]
        self.ordinal = ordinal_levels(ordinal, f"modality '{name}'")
        self.boolean = [str(c) for c in boolean or []]
        kinds: dict[str, list[str]] = {}
        declared = {"numeric": self.numeric, "categorical": self.categorical}
        for kind, cols in {**declared, "ordinal": list(self.ordinal), "boolean": self.boolean}.items():
            for col in cols:
                kinds.setdefault(col, []).append(kind)
        clashes = [f"'{c}' both {' and '.join(k)}" for c, k in kinds.items() if len(k) > 1]
        if clashes:
            raise ValueError(f"modality '{name}': columns declared with two types: {', '.join(clashes)}")
        self.encoder, self.embed_dim, self.dropout = encoder, int(embed_dim), float(dropout)
        # The column decision (made in gather, or restored from a checkpoint) and the fitted state.
        self.types: ColumnTypes | None = None
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None
        # quantile scaling of the numeric columns: (q, n_numeric) training quantiles and value counts
        self.quantiles: np.ndarray | None = None
        self.counts: np.ndarray | None = None
        self.vocab: dict[str, list[str]] | None = None
        self._index: list[dict[str, int]] = []

    @property
    def num_columns(self) -> list[str] | None:
        """Numeric columns (ordinal and boolean ones are listed separately); None before gather."""
        return None if self.types is None else self.types.numeric

    @property
    def cat_columns(self) -> list[str] | None:
        return None if self.types is None else self.types.categorical

    # ----------------------------------------------------------------- cohort side
    def select_columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The used columns; their types are decided here once and kept (also across cohorts)."""
        what = f"modality '{self.name}': columns"
        if self.types is None:
            wanted = self.columns if self.columns is not None else [str(c) for c in frame.columns]
            declared = self.numeric + self.categorical + list(self.ordinal) + self.boolean
            undeclared = [c for c in declared if c not in wanted]
            if undeclared:
                raise ValueError(
                    f"modality '{self.name}': numeric/categorical/ordinal/boolean name {undeclared}, "
                    f"which are not among the used columns (table '{self.table_path}')"
                )
            if not wanted:
                raise ValueError(f"modality '{self.name}': table '{self.table_path}' has no columns to use")
            chosen = select_table_columns(frame, wanted, what, self.table_path)
            rest = [c for c in chosen.columns if c not in self.ordinal and c not in self.boolean]
            num, cat = infer_column_types(chosen[rest], self.numeric, self.categorical)
            ordinal = {c: self.ordinal[c] for c in wanted if c in self.ordinal}
            self.types = ColumnTypes(num, cat, ordinal, [c for c in wanted if c in self.boolean])
        return select_table_columns(frame, self.types.columns, what, self.table_path)

    def check(self, ref: Any) -> list[str]:
        """Bad values (non-numeric, infinite, unknown level, non-boolean), each naming row and column."""
        return [] if ref is None else self._parse(ref)[1]

    # ----------------------------------------------------------------- data side
    def load(self, ref: pd.Series) -> dict[str, Any]:
        """{"num": float32 (numeric, ordinal ranks, booleans; NaN = missing), "cat": strings or None}."""
        item, problems = self._parse(ref)
        if problems:
            raise ValueError("; ".join(problems))
        return item

    def fit(self, items: list[dict[str, Any]]) -> None:
        """Numeric mean/std (and quantiles) and category vocabularies from the training items only."""
        if not items:
            raise ValueError(f"modality '{self.name}': fit() got no training items")
        cat_columns = self._types().categorical
        num = np.stack([np.asarray(item["num"], dtype=np.float64) for item in items]).reshape(len(items), -1)
        self.mean, self.std = nan_mean_std(num)
        if self.scaling == "quantile":
            self.quantiles, self.counts = fit_quantiles(num[:, : len(self._types().numeric)])
        self.vocab = {
            col: sorted({item["cat"][j] for item in items if item["cat"][j] is not None})
            for j, col in enumerate(cat_columns)
        }
        self._build_index()

    def transform(self, item: dict[str, Any], train: bool) -> dict[str, Tensor]:
        """Scaled numerics (missing -> 0), missing indicators, category indices (unseen -> 0)."""
        if self.mean is None or self.std is None or self.vocab is None:
            raise RuntimeError(
                f"modality '{self.name}': transform() called before fit(); fit on the training items "
                "or load_state_dict() from a checkpoint first"
            )
        x = np.asarray(item["num"], dtype=np.float64)
        missing = np.isnan(x)
        z = (x - self.mean) / self.std
        if self.quantiles is not None and self.counts is not None:
            n_numeric = self.quantiles.shape[1]
            z[:n_numeric] = quantile_normal(x[:n_numeric], self.quantiles, self.counts)
        z = np.where(missing, 0.0, z)
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
        types = self._types()
        cards = [len(self.vocab[col]) + 1 for col in types.categorical]
        if self.encoder == "tokens":
            return EHRTokenEncoder(len(types.features), cards, self.embed_dim)
        return EHRMLPEncoder(len(types.features), cards, self.embed_dim, self.dropout)

    @property
    def out_dim(self) -> int:
        return self.embed_dim

    @property
    def n_tokens(self) -> int:
        """Tokens per patient from the ``tokens`` encoder (one per column)."""
        return len(self._types().columns) if self.encoder == "tokens" else 1

    # ----------------------------------------------------------------- fitted state
    def state_dict(self) -> dict[str, Any]:
        if self.mean is None or self.std is None or self.vocab is None or self.types is None:
            return {}
        return {
            "numeric": list(self.types.numeric),
            "categorical": list(self.types.categorical),
            "ordinal": {col: list(levels) for col, levels in self.types.ordinal.items()},
            "boolean": list(self.types.boolean),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            **(
                {"quantiles": self.quantiles.tolist(), "counts": self.counts.tolist()}
                if self.quantiles is not None and self.counts is not None
                else {}
            ),
            "vocab": {col: list(values) for col, values in self.vocab.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        ordinal = {str(c): [str(v) for v in levels] for c, levels in state.get("ordinal", {}).items()}
        self.types = ColumnTypes(
            list(state["numeric"]), list(state["categorical"]), ordinal, list(state.get("boolean", []))
        )
        self.mean = np.asarray(state["mean"], dtype=np.float64).reshape(-1)
        self.std = np.asarray(state["std"], dtype=np.float64).reshape(-1)
        if self.mean.shape[0] != len(self.types.features):
            raise ValueError(
                f"modality '{self.name}': checkpoint state has {self.mean.shape[0]} numeric statistics "
                f"for {len(self.types.features)} numeric/ordinal/boolean columns"
            )
        # the fitted state decides the scaling (a zscore checkpoint carries no quantiles)
        self.scaling = "quantile" if "quantiles" in state else "zscore"
        if self.scaling == "quantile":
            self.quantiles = np.asarray(state["quantiles"], dtype=np.float64).reshape(
                -1, len(self.types.numeric)
            )
            self.counts = np.asarray(state["counts"], dtype=np.float64).reshape(-1)
        self.vocab = {col: list(values) for col, values in state["vocab"].items()}
        self._build_index()

    # ----------------------------------------------------------------- helpers
    def _types(self) -> ColumnTypes:
        if self.types is None:
            raise RuntimeError(
                f"modality '{self.name}': column types are not decided yet; call gather() on a cohort "
                "or load_state_dict() from a checkpoint first"
            )
        return self.types

    def _build_index(self) -> None:
        assert self.vocab is not None
        self._index = [{v: i + 1 for i, v in enumerate(self.vocab[col])} for col in self._types().categorical]

    def _parse(self, row: pd.Series) -> tuple[dict[str, Any], list[str]]:
        """The row as {"num", "cat"} plus every problem found, each naming table, row, column and value."""
        types = self._types()
        where = f"table '{self.table_path}', " if self.table_path is not None else ""
        where += f"patient '{row.name}', " if row.name is not None else ""
        features = types.features
        num, problems = np.full(len(features), np.nan, dtype=np.float32), []
        absent = [c for c in types.columns if c not in row.index]
        if absent:
            return {"num": num, "cat": [None] * len(types.categorical)}, [
                f"{where}columns {absent} are absent"
            ]
        for i, col in enumerate(features):
            try:
                if col in types.ordinal:
                    num[i] = to_rank(row[col], types.ordinal[col])
                elif col in types.boolean:
                    num[i] = to_boolean(row[col])
                else:
                    num[i] = to_number(row[col])
            except ValueError as err:
                kind = "ordinal" if col in types.ordinal else "boolean" if col in types.boolean else "numeric"
                problems.append(f"{where}column '{col}': {err} in a {kind} column")
        return {"num": num, "cat": [category(row[col]) for col in types.categorical]}, problems
