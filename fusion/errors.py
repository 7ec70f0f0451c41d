"""Errors that mean "the user's config or cohort needs fixing", reported without a traceback."""


class ConfigError(ValueError):
    """A config value that cannot work (no cohort given, nothing selected, names that disagree)."""


class ExtractionError(ValueError):
    """A patient's tiles could not be read or encoded; names the patient, the file and the problem."""
