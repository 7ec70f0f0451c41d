"""Base for modalities that come from their own table keyed by patient_id (genomics, EHR).

DESIGN §3: by default the table is `<name>.csv|.tsv|.parquet` beside the manifest, any other
path via `table=PATH` (relative to the manifest folder). A patient absent from the table has
the modality missing; that is not an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from fusion.modalities.base import Modality

if TYPE_CHECKING:
    from fusion.data.cohort import Cohort


class TableModality(Modality):
    """A modality whose reference for each patient is its row of a table (a pandas Series)."""

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
