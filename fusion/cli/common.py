"""What every command shares: clean one-line errors for bad input instead of tracebacks."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from fusion.errors import FusionError

#: the user's to fix: a FusionError (bad cohort, config, modality input, ...) or a path that is not there
USER_ERRORS = (FusionError, FileNotFoundError, FileExistsError)


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
