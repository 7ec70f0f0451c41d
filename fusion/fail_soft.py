"""Optional steps after training (oracle metrics, the report, W&B tables) must not lose the run.

`optional_step("report")` runs its block and turns any error into one warning naming the step, so
the metrics and predictions a run has computed are still written and the command still succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


@contextmanager
def optional_step(name: str) -> Iterator[None]:
    """Run the block; on an error, warn "<name> skipped: <error>" and carry on."""
    try:
        yield
    except Exception as err:  # noqa: BLE001 - any failure of an optional step is reported, not raised
        log.warning("%s skipped: %s: %s", name, type(err).__name__, err)
