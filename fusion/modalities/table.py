"""Base for modalities that come from their own table keyed by patient_id (genomics, EHR).

As the README's cohort section says: by default the table is `<name>.csv|.tsv|.parquet` beside the
manifest, any other path via `table=PATH` (relative to the manifest folder). A patient absent from the
table has the modality missing; that is not an error.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from fusion.io.cohort import is_missing
from fusion.modalities.base import Modality

if TYPE_CHECKING:
    from fusion.io.cohort import Cohort


class TableModality(Modality):
    """A modality whose reference for each patient is its row of a table (a pandas Series)."""

    missing_as_nan = True  # an empty cell is NaN in the loaded item (see `to_number`)

    def __init__(self, name: str, table: str | Path | None = None, on_error: str = "raise"):
        super().__init__(name=name, on_error=on_error)
        self.table = table
        self.table_path: Path | None = None

    def gather(self, cohort: Cohort) -> dict[str, Any]:
        path = cohort.find_table(self.name, self.table)
        if path is None:
            return dict.fromkeys(cohort.patient_ids)
        if not path.exists():
            raise FileNotFoundError(f"modality '{self.name}': table not found: {path}")
        self.table_path = path
        frame = self.select_columns(cohort.table(path))
        return {pid: (frame.loc[pid] if pid in frame.index else None) for pid in cohort.patient_ids}

    def select_columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Columns of the table this modality uses. Default: all but patient_id (already the index)."""
        return frame

    def check(self, ref: Any) -> list[str]:
        return []


def to_number(value: Any) -> float:
    """One table cell as a finite float; NaN for an empty cell. ValueError names the bad value."""
    if is_missing(value):
        return math.nan
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ValueError(f"non-numeric value {value!r}") from None
    if math.isnan(number):
        return math.nan
    if math.isinf(number):
        raise ValueError(f"infinite value {value!r}")
    return number


def nan_mean_std(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column mean and std ignoring NaN; a column with no values gets 0 / 1, a constant one std 1."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice" for all-NaN columns
        mean, std = np.nanmean(matrix, axis=0), np.nanstd(matrix, axis=0)
    return np.nan_to_num(mean, nan=0.0), np.where(std > 1e-12, std, 1.0)


def group_mean_std(
    matrix: np.ndarray, names: Sequence[str], min_group: int, modality: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`nan_mean_std` of the columns with at least `min_group` training values, and that (p,) bool mask;
    the other columns get 0 / 1 (no statistic of fewer patients is stored), named in a warning
    (`fusion.modalities.privacy`)."""
    usable = (~np.isnan(matrix)).sum(axis=0) >= min_group
    mean, std = nan_mean_std(matrix)
    too_few = [name for name, ok in zip(names, usable, strict=True) if not ok]
    if too_few:
        logging.getLogger(__name__).warning(
            "modality '%s': %d column(s) (%s%s) have fewer than min_group=%d training values; they are "
            "treated as missing (no statistic of fewer patients is stored)",
            modality,
            len(too_few),
            ", ".join(too_few[:5]),
            ", ..." if len(too_few) > 5 else "",
            min_group,
        )
    return np.where(usable, mean, 0.0), np.where(usable, std, 1.0), usable


def select_table_columns(
    frame: pd.DataFrame, wanted: Sequence[str], what: str, table: Path | None
) -> pd.DataFrame:
    """`frame[wanted]`, or a ValueError that lists every configured column the table lacks."""
    absent = [c for c in wanted if c not in frame.columns]
    if absent:
        raise ValueError(
            f"{what} {absent} not found in table '{table}' (it has {len(frame.columns)} columns)"
        )
    return frame[list(wanted)]
