"""EHR: clinical variables (age, sex, stage, ECOG, LDH ...) from `ehr.csv`, one row per patient.

Column types are decided once, from the table's pandas dtypes (numbers -> numeric, anything
else -> categorical), unless `numeric` / `categorical` / `ordinal` / `boolean` say otherwise
(`ehr_types.py`). Numerics are mapped to normal scores through the training patients' quantiles
(`scaling: quantile`, the default; see `quantile_scaling.py` for why) or z-scored (`scaling: zscore`);
ordinal ranks and booleans are z-scored with training statistics; every number carries a missing
indicator. Categories map to indices of a vocabulary learned on the training patients, with 0
reserved for missing values and the last index for the rare level.

The fitted state holds no patient's value (`privacy.py`): a statistic needs ``min_group`` training
values in its column (else the column is treated as missing), quantiles need twice that (else the
column is z-scored), and a category needs ``min_group`` training patients (else it joins the rare
level, stored as a count). Date and identifier columns are refused before training (`ehr_refusals.py`).

encoder="tokens": one token per column (FT-Transformer tokenizer) -> (n, n_columns, embed_dim)
encoder="mlp":    numerics + indicators + category embeddings -> MLP -> (n, embed_dim)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from fusion.io.cohort import CohortError, Problem
from fusion.modalities.ehr_encoders import EHRMLPEncoder, EHRTokenEncoder
from fusion.modalities.ehr_refusals import refused_columns
from fusion.modalities.ehr_types import (
    ColumnTypes,
    category,
    infer_column_types,
    ordinal_levels,
    to_boolean,
    to_rank,
)
from fusion.modalities.privacy import MIN_GROUP, checked_min_group, pool_rare
from fusion.modalities.quantile_scaling import (
    QUANTILE_GROUPS,
    fit_quantiles,
    has_quantiles,
    quantile_grid,
    quantile_normal,
)
from fusion.modalities.table import TableModality, group_mean_std, select_table_columns, to_number

ENCODERS = ("tokens", "mlp")
SCALINGS = ("quantile", "zscore")
__all__ = ["EHRModality", "category", "infer_column_types"]  # the helpers moved to ehr_types

log = logging.getLogger(__name__)


class EHRModality(TableModality):
    """Clinical table -> per-column tokens (default) or one vector per patient.

    Args:
        name: modality key; also the default table name (`<name>.csv` beside the manifest).
        table: table path (relative to the manifest folder); default `<name>.csv|.tsv|.parquet`.
        on_error: ``raise`` or ``drop_modality`` for a broken row.
        columns: columns to use; None = every column but patient_id.
        exclude: columns left out (identifiers, dates, anything not to learn from).
        numeric / categorical: columns whose type is declared rather than inferred from the dtype.
        ordinal: ``{column: [levels, lowest first]}``; a value outside the levels is an error.
        boolean: columns of true/false, yes/no, 1/0 (any case); any other value is an error.
        encoder: ``tokens`` (FT-Transformer tokenizer) or ``mlp``.
        scaling: numeric columns -> ``quantile`` normal scores (default) or ``zscore``.
        embed_dim: token / output size.
        dropout: dropout of the ``mlp`` encoder.
        min_group: the fewest training patients behind any stored statistic or category
            (`fusion.modalities.privacy`); also the fewest values that make a text column an identifier.
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
        exclude: Sequence[str] | None = None,
        min_group: int = MIN_GROUP,
    ):
        super().__init__(name=name, table=table, on_error=on_error)
        self.exclude = [str(c) for c in exclude or []]
        self.min_group = checked_min_group(min_group, f"modality '{name}'")
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
        self._probs: np.ndarray | None = None  # the probabilities of the quantiles' rows
        # numeric-vector columns with at least min_group training values (the others count as missing)
        self.usable: np.ndarray | None = None
        self.vocab: dict[str, list[str]] | None = None
        # per categorical column, how many categories were pooled into the rare level; None = a
        # checkpoint from before the rare level (unseen categories then map to 0, like missing)
        self.rare: dict[str, int] | None = None
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
            wanted = [c for c in wanted if c not in self.exclude]
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
            self._refuse_dates_and_identifiers(chosen, [c for c in rest if c not in self.numeric])
            num, cat = infer_column_types(chosen[rest], self.numeric, self.categorical)
            ordinal = {c: self.ordinal[c] for c in wanted if c in self.ordinal}
            self.types = ColumnTypes(num, cat, ordinal, [c for c in wanted if c in self.boolean])
        return select_table_columns(frame, self.types.columns, what, self.table_path)

    def _refuse_dates_and_identifiers(self, chosen: pd.DataFrame, text_columns: list[str]) -> None:
        """A CohortError naming every date or identifier column (no value shown), before training."""
        refused = refused_columns(chosen, text_columns, self.min_group, self.name)
        if refused:
            file = None if self.table_path is None else str(self.table_path)
            problems = [
                Problem(None, col, f"modality '{self.name}': the column {why}", file)
                for col, why in refused.items()
            ]
            raise CohortError(problems, f"modality '{self.name}' table '{self.table_path}'")

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
        """Numeric mean/std (and quantiles) and category vocabularies from the training items only,
        each from at least `min_group` patients (see the module docstring)."""
        if not items:
            raise ValueError(f"modality '{self.name}': fit() got no training items")
        types = self._types()
        num = np.stack([np.asarray(item["num"], dtype=np.float64) for item in items]).reshape(len(items), -1)
        self.mean, self.std, self.usable = group_mean_std(num, types.features, self.min_group, self.name)
        if self.scaling == "quantile":
            self.quantiles, self.counts = fit_quantiles(num[:, : len(types.numeric)], self.min_group)
            self._probs = quantile_grid(self.quantiles.shape[0])
            zscored = [
                col
                for col, fitted, ok in zip(
                    types.numeric, has_quantiles(self.quantiles), self.usable, strict=False
                )
                if ok and not fitted
            ]
            if zscored:
                log.info(
                    "modality '%s': columns %s have fewer than %d x min_group=%d training values; they are "
                    "z-scored instead of quantile-scaled",
                    self.name,
                    zscored,
                    QUANTILE_GROUPS,
                    self.min_group,
                )
        self.vocab, self.rare = {}, {}
        for j, col in enumerate(types.categorical):
            self.vocab[col], self.rare[col] = pool_rare((item["cat"][j] for item in items), self.min_group)
        pooled = {col: n for col, n in self.rare.items() if n}
        if pooled:
            log.info(
                "modality '%s': categories of fewer than min_group=%d training patients are pooled into one "
                "rare level (number pooled per column: %s)",
                self.name,
                self.min_group,
                pooled,
            )
        self._build_index()

    def transform(self, item: dict[str, Any], train: bool) -> dict[str, Tensor]:
        """Scaled numerics (missing -> 0), missing indicators, category indices (missing -> 0, rare or
        unseen -> the rare level, the last index)."""
        if self.mean is None or self.std is None or self.vocab is None:
            raise RuntimeError(
                f"modality '{self.name}': transform() called before fit(); fit on the training items "
                "or load_state_dict() from a checkpoint first"
            )
        x = np.asarray(item["num"], dtype=np.float64)
        missing = np.isnan(x) if self.usable is None else np.isnan(x) | ~self.usable
        z = (x - self.mean) / self.std
        if self.quantiles is not None and self.counts is not None:
            n_numeric = self.quantiles.shape[1]
            scored = quantile_normal(x[:n_numeric], self.quantiles, self.counts, self.quantile_probs)
            quantile_scaled = has_quantiles(self.quantiles) | (self.counts == 0)  # 0 for an empty column
            z[:n_numeric] = np.where(quantile_scaled, scored, z[:n_numeric])
        z = np.where(missing, 0.0, z)
        cat = [
            index.get(value, self._rare_index(index)) if value is not None else 0
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
        extra = (
            1 if self.rare is None else 2
        )  # missing (0), then the rare level (last) unless an old checkpoint
        cards = [len(self.vocab[col]) + extra for col in types.categorical]
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
            **({} if self.usable is None else {"usable": [bool(v) for v in self.usable]}),
            **(
                {
                    # a column without quantiles (too few values) is None: plain JSON, comparable
                    "quantiles": [
                        [None if np.isnan(v) else v for v in row] for row in self.quantiles.tolist()
                    ],
                    "quantile_probs": self.quantile_probs.tolist(),
                    "counts": self.counts.tolist(),
                }
                if self.quantiles is not None and self.counts is not None
                else {}
            ),
            "vocab": {col: list(values) for col, values in self.vocab.items()},
            **({} if self.rare is None else {"rare": dict(self.rare)}),
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
            # checkpoints before the fixed grid stored quantiles at evenly spaced probabilities 0..1
            probs = state.get("quantile_probs")
            self._probs = (
                np.linspace(0.0, 1.0, self.quantiles.shape[0])
                if probs is None
                else np.asarray(probs, dtype=np.float64)
            )
        usable = state.get("usable")
        self.usable = None if usable is None else np.asarray(usable, dtype=bool).reshape(-1)
        self.vocab = {col: list(values) for col, values in state["vocab"].items()}
        rare = state.get("rare")
        self.rare = None if rare is None else {str(c): int(n) for c, n in rare.items()}
        self._build_index()

    # ----------------------------------------------------------------- helpers
    @property
    def quantile_probs(self) -> np.ndarray:
        """The probabilities of the rows of `quantiles` (the fixed grid, or an old checkpoint's)."""
        if self._probs is None:
            raise RuntimeError(f"modality '{self.name}': no quantiles fitted")
        return self._probs

    def _types(self) -> ColumnTypes:
        if self.types is None:
            raise RuntimeError(
                f"modality '{self.name}': column types are not decided yet; call gather() on a cohort "
                "or load_state_dict() from a checkpoint first"
            )
        return self.types

    def _rare_index(self, index: dict[str, int]) -> int:
        """Where rare and unseen categories go: the last index (0, like missing, in old checkpoints)."""
        return 0 if self.rare is None else len(index) + 1

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
