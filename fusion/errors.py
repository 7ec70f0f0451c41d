"""Errors that mean "the user's config or cohort needs fixing", reported without a traceback."""


class ConfigError(ValueError):
    """A config value that cannot work (no cohort given, nothing selected, names that disagree)."""
