"""How well a table's patient ids join the manifest's, and what to tell the user when they do not.

A table keyed by ids written differently from the manifest's (`7` for `007`, `p-001` for `P001`, sample
barcodes for patient ids) would otherwise join nothing and its patients would silently lose the
modality. The rule (README, "The cohort you bring"):

- an error when MORE THAN HALF of the table's ids match no manifest patient AND the table has FEWER
  THAN HALF of the manifest's patients: it is keyed differently. A table that is a superset of the
  cohort (a whole project's expression matrix for a subset of its patients) still finds most of the
  manifest's patients and passes;
- otherwise any unmatched id is a warning with their count (those rows are not used).
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

#: how many unmatched ids a message names
EXAMPLES = 5


@dataclass(frozen=True)
class IdMatch:
    n_table: int  # distinct ids in the table
    n_manifest: int
    unmatched: list[str]  # table ids that are no manifest patient, sorted
    closest: dict[str, str | None]  # a few unmatched ids -> the most similar manifest id

    @property
    def matched(self) -> int:
        return self.n_table - len(self.unmatched)

    @property
    def fatal(self) -> bool:
        return 2 * len(self.unmatched) > self.n_table and 2 * self.matched < self.n_manifest

    def message(self) -> str:
        named = ", ".join(
            repr(u) + ("" if c is None else f" (closest manifest id {c!r})") for u, c in self.closest.items()
        )
        rest = len(self.unmatched) - len(self.closest)
        more = f" and {rest} more" if rest else ""
        text = (
            f"{len(self.unmatched)} of {self.n_table} ids match no manifest patient: {named}{more}; "
            f"the table has {self.matched} of the manifest's {self.n_manifest} patients"
        )
        if self.fatal:
            return text + (
                "; its ids look written differently from the manifest's (ids are compared as text,"
                " exactly as written: '007' is not '7'); fix the ids, or keep in the table only this"
                " cohort's patients"
            )
        return text + "; their rows are not used"


def match_ids(table_ids: Sequence[str], manifest_ids: Sequence[str]) -> IdMatch:
    """Which of a table's ids are manifest patients; the closest manifest id (difflib) to a few others."""
    manifest = set(manifest_ids)
    distinct = sorted(set(table_ids))
    unmatched = [i for i in distinct if i not in manifest]
    closest = {}
    for pid in unmatched[:EXAMPLES]:
        near = difflib.get_close_matches(pid, manifest_ids, n=1, cutoff=0.5)
        closest[pid] = near[0] if near else None
    return IdMatch(len(distinct), len(manifest), unmatched, closest)
