"""What every command shares: clean one-line errors for bad input instead of tracebacks."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

from fusion.data.cohort import CohortError
from fusion.errors import ConfigError, ExtractionError
from fusion.fusers.base import MissingAllModalitiesError
from fusion.modalities.base import ModalityError

USER_ERRORS = (
    CohortError,
    ConfigError,
    ExtractionError,
    ModalityError,
    MissingAllModalitiesError,
    FileNotFoundError,
    FileExistsError,
)
log = logging.getLogger("fusion")


def report_user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input is the user's to fix: print what and where, exit 1; keep tracebacks for our bugs."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)

    return wrapper
