"""A reference patient's outcomes as the manifest wrote them: one value per manifest column a head reads
(``grade`` as the class label, ``survival_time``, ``survival_event``, ``response``; a custom head's own
columns), from the labels the heads parsed. What a neighbour table shows of each neighbour."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fusion.data.records import PatientRecord
from fusion.heads.base import Head
from fusion.heads.grade import GradeHead


def label_columns(heads: dict[str, Head]) -> list[str]:
    """Every manifest column the heads read, in head order, each once."""
    return list(dict.fromkeys(c for head in heads.values() for c in head.columns))


def label_cells(head: Head, label: Any) -> dict[str, Any]:
    """One patient's parsed label back as {manifest column: value} (None when unknown): a grade's class label
    (not its index), a 0/1 column as an int, a multi-column label (survival time, event) column by column."""
    columns = list(head.columns)
    if label is None:
        return dict.fromkeys(columns)
    if isinstance(head, GradeHead):
        return {columns[0]: head.classes[label]}
    values = list(label) if isinstance(label, tuple | list) and len(columns) > 1 else [label]
    if len(values) != len(columns):
        return dict.fromkeys(columns)  # a custom head's label that is not one value per column
    return {c: _plain(v) for c, v in zip(columns, values, strict=True)}


def label_table(records: Sequence[PatientRecord], heads: dict[str, Head]) -> dict[str, list[Any]]:
    """{manifest column: one value per record} for every column the heads read."""
    table: dict[str, list[Any]] = {c: [] for c in label_columns(heads)}
    for record in records:
        cells: dict[str, Any] = {}
        for name, head in heads.items():
            for column, value in label_cells(head, record.labels.get(name)).items():
                cells.setdefault(column, value)
        for column, values in table.items():
            values.append(cells.get(column))
    return table


def _plain(value: Any) -> Any:
    """A float that is a whole number (an event or response flag, a time in days) as an int."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
