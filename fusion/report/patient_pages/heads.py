"""What a page needs to know about each head: which prediction columns it wrote and how to show them.
Plain values, so pages are rendered from tables alone (`from_heads` builds them from a model's heads)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from fusion.heads.grade import GradeHead
from fusion.heads.response import ResponseHead
from fusion.heads.survival import SurvivalHead

#: column-name endings of per-patient uncertainty (intervals, prediction sets), e.g. `response_prob_lower`
UNCERTAINTY_SUFFIXES = ("_lower", "_upper", "_set", "_std", "_se")
#: how long a time is when no head says (shown beside every time)
UNKNOWN_UNIT = "the unit of the manifest's survival times (the checkpoint does not record it)"

Kind = Literal["classes", "probability", "survival", "other"]


@dataclass(frozen=True)
class HeadInfo:
    """name: the head's name. kind: `classes` (one probability column per class, in class order),
    `probability` (one probability), `survival` (a Cox risk column; `<name>_prob_<h>` and `<name>_median`
    are found in the table), `other` (columns shown as they are). columns: the prediction columns.
    classes: the class labels (kind `classes`). time_unit: the survival time unit. time_column /
    event_column: the label columns of the similar patients' outcomes (neighbours.csv)."""

    name: str
    kind: Kind
    columns: tuple[str, ...]
    classes: tuple[str, ...] = ()
    time_unit: str | None = None
    time_column: str = "survival_time"
    event_column: str = "survival_event"

    @property
    def time_label(self) -> str:
        return f"time ({self.time_unit or 'unit not recorded'})"

    def survival_columns(self, table_columns: Iterable[str]) -> tuple[dict[str, str], str | None]:
        """horizon label -> `<name>_prob_<h>` column, and the `<name>_median` column (None if absent)."""
        prefix = f"{self.name}_prob_"
        table_columns = list(table_columns)
        horizons = {
            c[len(prefix) :]: c
            for c in table_columns
            if c.startswith(prefix) and not c.endswith(UNCERTAINTY_SUFFIXES)
        }
        median = f"{self.name}_median"
        return horizons, (median if median in table_columns else None)

    def uncertainty_columns(self, table_columns: Iterable[str]) -> list[str]:
        """The table's uncertainty columns of this head: an uncertainty ending after one of its
        prediction columns or its name."""
        stems = (*self.columns, self.name)
        return [
            c
            for c in table_columns
            if c.endswith(UNCERTAINTY_SUFFIXES) and any(c.startswith(s + "_") for s in stems)
        ]

    def owned_columns(self, table_columns: Iterable[str]) -> set[str]:
        """Every column of the table this head's section shows."""
        table_columns = list(table_columns)
        horizons, median = self.survival_columns(table_columns) if self.kind == "survival" else ({}, None)
        owned = {*self.columns, *horizons.values(), *self.uncertainty_columns(table_columns)}
        return owned | ({median} if median else set())


def from_heads(heads: Mapping[str, Any]) -> list[HeadInfo]:
    """HeadInfo of a model's heads (`fusion.heads` objects), by their kind."""
    infos = []
    for name, head in heads.items():
        columns = tuple(head.prediction_columns)
        if isinstance(head, GradeHead):
            infos.append(HeadInfo(name, "classes", columns, classes=tuple(str(c) for c in head.classes)))
        elif isinstance(head, ResponseHead):
            infos.append(HeadInfo(name, "probability", columns))
        elif isinstance(head, SurvivalHead):
            time_column, event_column = head.columns
            unit = getattr(head, "time_unit", None)
            infos.append(
                HeadInfo(
                    name,
                    "survival",
                    columns,
                    time_unit=unit,
                    time_column=time_column,
                    event_column=event_column,
                )
            )
        else:
            infos.append(HeadInfo(name, "other", columns))
    return infos
