"""EHR columns refused by name before training: dates and identifiers.

A date (of birth, diagnosis, surgery) is identifying and, as a category, useless to the model; a text
column with about one distinct value per patient (a name, an MRN, free text) is an identifier. Either
would reach the model as a categorical column, so the table is refused instead, naming the column and
what to do. No value of the column is ever shown.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence

import pandas as pd

from fusion.io.cohort import is_missing

#: share of a text column's values that must look like dates for the column to be a date column
DATE_SHARE = 0.9
#: share of distinct values among a text column's non-missing values that makes it an identifier
IDENTIFIER_SHARE = 0.9

_TIME = r"(?:[T ]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?"
_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_DATE_PATTERNS = [
    re.compile(rf"^\d{{4}}-\d{{1,2}}-\d{{1,2}}{_TIME}$"),  # 2021-03-04, 2021-03-04T10:00
    re.compile(rf"^\d{{4}}/\d{{1,2}}/\d{{1,2}}{_TIME}$"),  # 2021/03/04
    re.compile(rf"^\d{{1,2}}[/.-]\d{{1,2}}[/.-]\d{{2,4}}{_TIME}$"),  # 04/03/2021, 4.3.21
    re.compile(rf"^\d{{1,2}}[ -]{_MONTH}[ -]\d{{2,4}}{_TIME}$", re.IGNORECASE),  # 4 Mar 2021, 04-MAR-2021
    re.compile(rf"^{_MONTH} \d{{1,2}},? \d{{4}}{_TIME}$", re.IGNORECASE),  # March 4, 2021
]

DATE_ADVICE = (
    "convert dates to numbers relative to an event, e.g. age_at_diagnosis or days_from_diagnosis, "
    "or leave the column out with modality.{name}.exclude=[{column}]"
)
IDENTIFIER_ADVICE = (
    "drop identifier columns (names, MRNs, free text) from the table or list them in "
    "modality.{name}.exclude=[{column}]"
)


def looks_like_date(value: object) -> bool:
    """A date/datetime object, or a string in a common date format (ISO, dd/mm/yyyy, 4 Mar 2021...)."""
    if isinstance(value, dt.date | pd.Timestamp):  # datetime is a date; pandas NaT is missing before
        return True
    if not isinstance(value, str):
        return False
    text = value.strip()
    return any(pattern.match(text) for pattern in _DATE_PATTERNS)


def is_date_column(series: pd.Series) -> bool:
    """A datetime dtype (parquet, or parsed), or values that nearly all look like dates."""
    if pd.api.types.is_datetime64_any_dtype(series) or isinstance(series.dtype, pd.PeriodDtype):
        return True
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return False
    present = [v for v in series if not is_missing(v)]
    return bool(present) and sum(map(looks_like_date, present)) >= DATE_SHARE * len(present)


def is_identifier_column(series: pd.Series, min_group: int) -> bool:
    """Text with (nearly) one distinct value per patient, among at least ``min_group`` values."""
    if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        return False
    present = [str(v).strip() for v in series if not is_missing(v)]
    return len(present) >= min_group and len(set(present)) >= IDENTIFIER_SHARE * len(present)


def refused_columns(
    frame: pd.DataFrame, text_columns: Sequence[str], min_group: int, name: str
) -> dict[str, str]:
    """column -> why it is refused and what to do, for the date columns of `frame` and the identifier
    columns among `text_columns` (the ones that would be categorical)."""
    refused = {}
    for column in frame.columns:
        series = frame[column]
        if is_date_column(series):
            advice = DATE_ADVICE.format(name=name, column=column)
            refused[str(column)] = f"holds dates, which identify patients; {advice}"
        elif column in text_columns and is_identifier_column(series, min_group):
            advice = IDENTIFIER_ADVICE.format(name=name, column=column)
            refused[str(column)] = (
                f"has a distinct value for nearly every patient ({IDENTIFIER_SHARE:.0%} or more), like an "
                f"identifier; {advice}"
            )
    return refused
