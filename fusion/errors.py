"""Errors that mean "the user's config or cohort needs fixing", reported without a traceback.

Every such error derives from `FusionError`; the console commands catch that one class and print the
message on one line (exit status 1), keeping tracebacks for real bugs. Each also derives from the
built-in class it refines (ValueError), so `except ValueError` in user code keeps working.
"""


class FusionError(Exception):
    """Base class: bad input or settings, with a message that names what and where to fix."""


class ConfigError(FusionError, ValueError):
    """A config value that cannot work (no cohort given, nothing selected, names that disagree)."""


class ExtractionError(FusionError, ValueError):
    """A patient's tiles could not be read or encoded; names the patient, the file and the problem."""


class TrainingDiverged(FusionError, FloatingPointError):
    """A loss, an output or a weight became NaN or infinite; names the epoch, the step and the head."""


class TrainingInterrupted(FusionError, RuntimeError):
    """Training was stopped by a signal (SIGTERM); names the checkpoint saved and the command to resume."""
