"""The cohort reader, at its historical import path (`fusion.data.cohort.Cohort`).

It lives in `fusion.io.cohort` (the I/O layer, below modalities and heads); this module only
re-exports it so existing imports keep working.
"""

from fusion.io.cohort import TABLE_SUFFIXES, Cohort, CohortError, Problem, is_missing, read_table

__all__ = ["TABLE_SUFFIXES", "Cohort", "CohortError", "Problem", "is_missing", "read_table"]
