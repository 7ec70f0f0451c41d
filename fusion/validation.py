"""The old name of `fusion.cohort_check` (what `fusion-validate` runs), kept so existing imports work."""

import warnings

from fusion.cohort_check import ValidationReport, validate_cohort

warnings.warn(
    "fusion.validation is now fusion.cohort_check; import validate_cohort from there",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["ValidationReport", "validate_cohort"]
