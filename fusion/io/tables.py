"""Reading a user's table (.csv/.tsv/.parquet) as written: ids as text, separator and encoding detected.

Every table of a cohort (the manifest, genomics, EHR, ...) comes through `read_table`:

- `patient_id` is read as text, exactly as written, surrounding whitespace stripped: `007` stays
  `007` (a number would become `7`, and `001` would clash with `1`), and `NA` is an id, not a gap.
- column names are stripped of surrounding whitespace (`patient_id ` is `patient_id`).
- a text table's separator is detected from its header line (`,` `;` or tab); with `;` (European
  Excel) a decimal comma is read as a decimal point.
- its encoding is UTF-8 (with or without a byte-order mark), else cp1252 (Windows Western European,
  what Excel writes in Europe) with a warning saying so.
- an Excel workbook is refused with one line saying how to save it as CSV.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from fusion.errors import FusionError

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet")
EXCEL_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")
SEPARATORS = (",", ";", "\t")
ID_COLUMN = "patient_id"
FALLBACK_ENCODING = "cp1252"
_SEPARATOR_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


class TableError(FusionError, ValueError):
    """A table that cannot be read as given (Excel, an unknown format, unparseable text)."""


def read_table(path: str | Path) -> pd.DataFrame:
    """A .csv/.tsv/.parquet table: `patient_id` as text, every other cell as pandas infers it."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"table not found: {path}")
    suffix = path.suffix.lower()
    if suffix in EXCEL_SUFFIXES:
        raise TableError(
            f"table '{path}': Excel files are not read; save it as CSV (in Excel: File > Save As > "
            f"'CSV UTF-8 (Comma delimited) (*.csv)') and point to the .csv"
        )
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
        frame.columns = [str(c).strip() for c in frame.columns]
        if ID_COLUMN in frame.columns:
            frame[ID_COLUMN] = [_id_text(v) for v in frame[ID_COLUMN]]
        return frame
    if suffix not in (".csv", ".tsv"):
        raise TableError(f"table '{path}': unsupported format '{path.suffix}' (use one of {TABLE_SUFFIXES})")
    # UTF-8 first (with or without a BOM); a file that is not is read once more as cp1252, with a warning
    for encoding in ("utf-8-sig", FALLBACK_ENCODING):
        try:
            return _read_text_table(path, encoding)
        except UnicodeDecodeError as err:
            if encoding == FALLBACK_ENCODING:
                raise TableError(f"table '{path}': unreadable as UTF-8 or {encoding} text ({err})") from None
            _warn_fallback_encoding(path)
    raise AssertionError("unreachable")  # the loop returns or raises


def _read_text_table(path: Path, encoding: str) -> pd.DataFrame:
    sep = detect_separator(path, encoding)
    header = _raw_header(path, sep, encoding)
    ids = {c: _id_text for c in header if c.strip() == ID_COLUMN}
    try:
        frame = pd.read_csv(
            path, sep=sep, encoding=encoding, decimal="," if sep == ";" else ".", converters=ids
        )
    except pd.errors.ParserError as err:
        what = f"{_SEPARATOR_NAMES[sep]}-separated {encoding} text"
        raise TableError(f"table '{path}': unreadable as {what} ({err})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def read_header(path: str | Path) -> list[str]:
    """The column names exactly as written, stripped (pandas would rename a duplicate 'g1' to 'g1.1')."""
    path = Path(path)
    if path.suffix.lower() != ".parquet" and path.suffix.lower() not in EXCEL_SUFFIXES and path.exists():
        for encoding in ("utf-8-sig", FALLBACK_ENCODING):  # the header line only, not the whole file
            try:
                return [c.strip() for c in _raw_header(path, detect_separator(path, encoding), encoding)]
            except UnicodeDecodeError:
                if encoding == FALLBACK_ENCODING:
                    raise TableError(f"table '{path}': its header is not UTF-8 or {encoding} text") from None
    return [str(c) for c in read_table(path).columns]


def _warn_fallback_encoding(path: Path) -> None:
    warnings.warn(
        f"table '{path}' is not UTF-8: read as {FALLBACK_ENCODING} (Windows Western European); "
        f"if accented characters look wrong, save it as 'CSV UTF-8'",
        stacklevel=4,
    )


def detect_separator(path: Path, encoding: str) -> str:
    """The separator the header line uses most (`,` `;` or tab); by suffix when it has none of them."""
    with path.open(encoding=encoding, newline="") as handle:
        first = handle.readline()
    counts = {sep: first.count(sep) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda s: counts[s])
    if counts[best] == 0:
        return "\t" if path.suffix.lower() == ".tsv" else ","
    return best


def _raw_header(path: Path, sep: str, encoding: str) -> list[str]:
    try:
        header = pd.read_csv(path, sep=sep, encoding=encoding, header=None, nrows=1, dtype=str)
    except pd.errors.EmptyDataError:
        raise TableError(f"table '{path}' is empty (no header line)") from None
    return ["" if pd.isna(c) else str(c) for c in header.iloc[0]]


def _id_text(value: object) -> object:
    """An id cell as text, stripped; a gap stays a gap (None). A parquet integer 7 is '7', 7.0 too."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text if text else None


def absent_column_message(column: str, found: Sequence[str]) -> str:
    """'required column is absent' plus the columns found and, when one is close, which to rename (the
    caller names `column` before this text)."""
    shown = ", ".join(repr(str(c)) for c in list(found)[:20]) + (" ..." if len(found) > 20 else "")
    message = f"required column is absent (columns found: {shown or 'none'})"
    close = closest_name(column, found)
    if close is not None:
        message += f"; did you mean '{close}'? rename it to {column}"
    return message


def closest_name(wanted: str, names: Sequence[str]) -> str | None:
    """The name that is `wanted` but for case and punctuation (PatientID, Patient-Id), else the closest."""

    def squash(name: str) -> str:
        return re.sub(r"[^a-z0-9]", "", str(name).lower())

    for name in names:
        if squash(name) == squash(wanted):
            return str(name)
    squashed = {squash(n): str(n) for n in names}
    match = difflib.get_close_matches(squash(wanted), list(squashed), n=1, cutoff=0.6)
    return squashed[match[0]] if match else None
