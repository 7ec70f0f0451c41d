"""EHR column types: numeric, categorical, ordinal, boolean — the decision and the cell parsers.

numeric      numbers, z-scored with training statistics, missing indicator
categorical  anything else; vocabulary learned on the training patients (0 = missing / unseen)
ordinal      ordered categories given in config (``{stage: [I, II, III, IV]}``) -> rank 0..k-1,
             then handled like a numeric column (z-scored, missing indicator); a value not among
             the levels is an error, not a silent new category (a typo such as 'IIII' must not pass)
boolean      true/false, yes/no, 1/0 (case-insensitive) -> 1/0, then like a numeric column

Only numeric and categorical are inferred (numbers -> numeric, else categorical), as the README's
cohort section says; ordinal and boolean are always declared.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fusion.io.cohort import is_missing

TRUE_WORDS = frozenset({"true", "yes", "1"})
FALSE_WORDS = frozenset({"false", "no", "0"})


def category(value: Any) -> str | None:
    """A categorical cell as a canonical string (1.0 -> '1', ' F ' -> 'F'); None when empty."""
    if is_missing(value):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def to_boolean(value: Any) -> float:
    """A boolean cell as 1.0 / 0.0; NaN when empty. ValueError names the value otherwise."""
    if is_missing(value):
        return math.nan
    if isinstance(value, bool | np.bool_):
        return float(bool(value))
    word = category(value)
    word = word.lower() if word is not None else ""
    if word in TRUE_WORDS:
        return 1.0
    if word in FALSE_WORDS:
        return 0.0
    raise ValueError(f"value {value!r} is not a boolean (true/false, yes/no, 1/0, any case)")


def to_rank(value: Any, levels: Sequence[str]) -> float:
    """An ordinal cell as its rank among ``levels`` (0-based); NaN when empty; ValueError when unknown."""
    key = category(value)
    if key is None:
        return math.nan
    try:
        return float(levels.index(key))
    except ValueError:
        raise ValueError(f"value {value!r} is not one of the ordinal levels {list(levels)}") from None


def ordinal_levels(ordinal: Mapping[str, Sequence[Any]] | None, where: str) -> dict[str, list[str]]:
    """Config ``{column: [levels]}`` as canonical strings; empty or repeated levels are errors."""
    out: dict[str, list[str]] = {}
    for col, levels in (ordinal or {}).items():
        if isinstance(levels, str) or not isinstance(levels, Sequence) or not levels:
            raise ValueError(
                f"{where}: ordinal column '{col}' needs a non-empty list of levels, got {levels!r}"
            )
        canonical = [category(v) for v in levels]
        if any(v is None or v == "" for v in canonical):
            raise ValueError(f"{where}: ordinal column '{col}' has an empty level in {list(levels)}")
        repeated = sorted({v for v in canonical if v is not None and canonical.count(v) > 1})
        if repeated:
            raise ValueError(f"{where}: ordinal column '{col}' lists levels {repeated} twice")
        out[str(col)] = [str(v) for v in canonical]
    return out


@dataclass
class ColumnTypes:
    """The decided type of every used column; ``features`` is the order of the numeric vector."""

    numeric: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    ordinal: dict[str, list[str]] = field(default_factory=dict)
    boolean: list[str] = field(default_factory=list)

    @property
    def features(self) -> list[str]:
        """Columns of the numeric vector: numeric, then ordinal ranks, then booleans."""
        return [*self.numeric, *self.ordinal, *self.boolean]

    @property
    def columns(self) -> list[str]:
        return [*self.features, *self.categorical]


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
                # the patients, not the cells: a table value never reaches a log
                bad = [str(pid) for pid in present.index[parsed.isna()]]
                shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
                warnings.warn(
                    f"EHR column '{col}' is treated as categorical because {len(bad)} of its values are not "
                    f"numbers (patients {shown}); fix them or declare numeric=[{col}]",
                    stacklevel=2,
                )
    return num, cat
