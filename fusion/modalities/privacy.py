"""The shared rule for fitted state: no stored number or string belongs to one patient.

A checkpoint travels between hospitals, so what `fit` keeps must be an aggregate of several training
patients, never an individual's value:

- a statistic (mean, std, quantile, colour statistic) is stored only when at least ``min_group``
  training patients have a value; below that the column, gene or channel falls back to a plainer
  treatment (missing / the default) and a log line says so, naming the column but no value;
- a category (an EHR string) is stored only when at least ``min_group`` training patients have it;
  rarer ones are pooled into one "rare" level that is stored as a count, never as the strings.

``min_group`` is one setting, ``privacy.min_group`` in the run config (default 10), which every
built-in modality's config reads.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

MIN_GROUP = 10


def checked_min_group(value: int, where: str) -> int:
    """`value` as an int >= 1, or a ValueError naming `where`."""
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{where}: min_group must be a positive integer (patients), got {value!r}")
    return int(value)


def pool_rare(values: Iterable[str | None], min_group: int) -> tuple[list[str], int]:
    """The categories held by at least ``min_group`` patients (sorted), and how many rarer ones were
    pooled into the rare level. ``values`` holds one entry per training patient (None = missing)."""
    counts = Counter(v for v in values if v is not None)
    kept = sorted(v for v, n in counts.items() if n >= min_group)
    return kept, len(counts) - len(kept)
