"""A cohort: a manifest table (one row per patient) plus tables keyed by patient_id.

The format is the README's "The cohort you bring". The cohort only reads tables and resolves paths;
what a path or a table row means is each modality's business, and what a label means is each head's.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fusion.errors import FusionError
from fusion.io.id_join import match_ids
from fusion.io.tables import TABLE_SUFFIXES, absent_column_message, read_table

__all__ = ["TABLE_SUFFIXES", "Cohort", "CohortError", "Problem", "is_missing", "read_table"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a cohort, precise enough to fix without a debugger."""

    patient_id: str | None
    column: str | None
    message: str
    file: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.patient_id is not None:
            parts.append(f"patient '{self.patient_id}'")
        if self.column is not None:
            parts.append(f"column '{self.column}'")
        if self.file is not None:
            parts.append(f"file '{self.file}'")
        return (", ".join(parts) + ": " if parts else "") + self.message


class CohortError(FusionError, ValueError):
    """Raised with *every* problem found, so a user fixes them all in one pass."""

    def __init__(self, problems: list[Problem], source: str = "cohort"):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source} has {len(problems)} problem(s):\n{lines}")


def is_missing(value: object) -> bool:
    """Empty cell: None, NaN or a blank string. Missing is normal, never an error."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


class Cohort:
    """The manifest and its folder. Construct with `Cohort.load(path)`."""

    def __init__(
        self, manifest: pd.DataFrame, root: Path, manifest_path: Path | None = None, strict: bool = True
    ):
        """`strict` (training, prediction): any id problem raises. Not strict (`fusion-validate`): the
        problems are kept in `id_problems`, rows without an id are left out and a duplicated id keeps
        its first row, so every other check still runs and all problems are reported at once."""
        self.root = Path(root)
        self.manifest_path = manifest_path
        self.manifest = manifest
        source = str(manifest_path or "manifest")
        self.id_problems = self._check_ids(manifest, source)
        if self.id_problems and (strict or "patient_id" not in manifest.columns):
            raise CohortError(self.id_problems, f"manifest '{manifest_path}'")
        manifest = manifest[~manifest["patient_id"].map(is_missing)]
        manifest = manifest.assign(patient_id=manifest["patient_id"].astype(str).str.strip())
        manifest = manifest.drop_duplicates("patient_id", keep="first")
        self.manifest = manifest.set_index("patient_id", drop=False)
        self._tables: dict[Path, pd.DataFrame] = {}

    @classmethod
    def load(cls, manifest_path: str | Path, strict: bool = True) -> Cohort:
        path = Path(manifest_path).expanduser().resolve()
        frame = read_table(path)
        return cls(frame, root=path.parent, manifest_path=path, strict=strict)

    @staticmethod
    def _check_ids(frame: pd.DataFrame, source: str) -> list[Problem]:
        if "patient_id" not in frame.columns:
            return [Problem(None, "patient_id", absent_column_message("patient_id", frame.columns), source)]
        problems = []
        ids = frame["patient_id"]
        for row, value in ids.items():
            if is_missing(value):
                problems.append(Problem(None, "patient_id", f"row {row + 2} has an empty patient_id", source))
        text = ids.astype(str).str.strip()
        dup = text[text.duplicated(keep=False) & ~ids.map(is_missing)]
        for pid in sorted(set(dup)):
            rows = [int(r) + 2 for r in dup.index[dup == pid]]
            problems.append(Problem(pid, "patient_id", f"duplicate id (rows {rows})", source))
        return problems

    def check_joined_ids(self, table_ids: Iterable[object], table: str | Path) -> None:
        """A table's ids against the manifest's: mostly unmatched is a CohortError naming a few and the
        closest manifest ids (ids written differently); a few unmatched ones are a warning with their
        count (those rows are not used)."""
        report = match_ids([str(i) for i in table_ids], self.patient_ids)
        if report.fatal:
            raise CohortError([Problem(None, "patient_id", report.message(), str(table))], f"table '{table}'")
        if report.unmatched:
            warnings.warn(f"table '{table}': {report.message()}", stacklevel=2)

    # ------------------------------------------------------------------ access
    @property
    def patient_ids(self) -> list[str]:
        return list(self.manifest.index)

    def __len__(self) -> int:
        return len(self.manifest)

    def column(self, name: str) -> dict[str, object]:
        """patient_id -> raw cell of a manifest column (None when empty or when the column is absent)."""
        if name not in self.manifest.columns:
            return dict.fromkeys(self.patient_ids)
        return {pid: (None if is_missing(v) else v) for pid, v in self.manifest[name].items()}

    def paths(self, column: str) -> dict[str, Path | None]:
        """patient_id -> absolute path in a manifest path column (relative to the manifest folder)."""
        return {pid: None if v is None else self.resolve(str(v)) for pid, v in self.column(column).items()}

    def resolve(self, path: str | Path) -> Path:
        path = Path(path).expanduser()
        return path if path.is_absolute() else self.root / path

    def find_table(self, name: str, table: str | Path | None = None) -> Path | None:
        """A tabular modality's table: `table` if given, else `<name>.csv|.tsv|.parquet` by the manifest."""
        if table is not None:
            return self.resolve(table)
        for suffix in TABLE_SUFFIXES:
            candidate = self.root / f"{name}{suffix}"
            if candidate.exists():
                return candidate
        return None

    def table(self, path: Path) -> pd.DataFrame:
        """A table keyed by patient_id (validated: column present, ids unique, ids matching the
        manifest's, see `check_joined_ids`); cached per path."""
        if path not in self._tables:
            frame = read_table(path)
            problems = self._check_ids(frame, str(path))
            if problems:
                raise CohortError(problems, f"table '{path}'")
            frame = frame.assign(patient_id=frame["patient_id"].astype(str).str.strip())
            self.check_joined_ids(frame["patient_id"], path)
            self._tables[path] = frame.set_index("patient_id")
        return self._tables[path]

    def site(self) -> dict[str, str | None]:
        return {pid: None if v is None else str(v) for pid, v in self.column("site").items()}
