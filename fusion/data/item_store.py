"""Loads each patient's modality inputs once, reports every broken one, and keeps them in memory.

Loading is the deterministic, state-free part of a modality (`Modality.load`), so its result is
the same every epoch; caching it is what makes a CPU epoch take seconds instead of minutes.
Broken inputs are collected over the *whole* cohort before training: `on_error=raise` stops
with all of them listed; `on_error=drop_modality` warns and treats that input as missing.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fusion.data.cohort import CohortError, Problem
from fusion.data.records import PatientRecord, _file
from fusion.modalities.base import Modality, ModalityError

log = logging.getLogger(__name__)


class ItemStore:
    """patient_id x modality -> loaded item (None when missing or dropped)."""

    def __init__(self, modalities: dict[str, Modality], threads: int | None = None):
        self.modalities = modalities
        self.threads = threads or min(8, os.cpu_count() or 1)
        self.items: dict[tuple[str, str], Any] = {}

    def load_all(self, records: list[PatientRecord]) -> None:
        """Load every present input of these patients; raise or drop broken ones per modality policy."""
        jobs = [(r.patient_id, m, ref) for r in records for m, ref in r.refs.items() if ref is not None]
        jobs = [job for job in jobs if (job[0], job[1]) not in self.items]
        with ThreadPoolExecutor(self.threads) as pool:
            results = list(pool.map(self._load_one, jobs))
        problems = []
        for (pid, name, ref), (item, error) in zip(jobs, results, strict=True):
            if error is None:
                self.items[(pid, name)] = item
                continue
            if self.modalities[name].on_error == "drop_modality":
                log.warning("dropping %s (treated as missing): %s", name, error)
                self.items[(pid, name)] = None
            else:
                problems.append(Problem(pid, self.modalities[name].column, error.problem, _file(ref)))
        if problems:
            raise CohortError(problems, "cohort inputs")
        log.info("loaded %d inputs of %d patients", len(jobs), len(records))

    def _load_one(self, job: tuple[str, str, Any]) -> tuple[Any, ModalityError | None]:
        pid, name, ref = job
        try:
            return self.modalities[name].load(ref), None
        except ModalityError as err:
            return None, err
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
            return None, ModalityError(pid, name, f"{type(err).__name__}: {err}", _file(ref))

    def get(self, record: PatientRecord, name: str) -> Any:
        """The loaded item, loading lazily (and caching) when `load_all` did not run for it."""
        if record.refs.get(name) is None:
            return None
        key = (record.patient_id, name)
        if key not in self.items:
            item, error = self._load_one((record.patient_id, name, record.refs[name]))
            if error is not None:
                if self.modalities[name].on_error != "drop_modality":
                    raise error
                log.warning("dropping %s (treated as missing): %s", name, error)
            self.items[key] = item
        return self.items[key]
