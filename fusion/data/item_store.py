"""Loads each patient's modality inputs once, reports every broken one, and keeps the results.

Loading is the deterministic, state-free part of a modality (`Modality.load`), so its result is
the same every epoch; caching it is what makes a CPU epoch take seconds instead of minutes.
Broken inputs are collected over the *whole* cohort before training: `on_error=raise` stops
with all of them listed; `on_error=drop_modality` warns and treats that input as missing.

Where results are kept (``data.cache``):
    memory  every item in this process's memory (the default; fine for the demo and small cohorts)
    disk    items of file inputs in a persistent `DiskCache` under ``data.cache_dir``, read on each
            access (memory stays bounded by a batch, and the next run skips the preprocessing);
            items of table rows, and any the disk cannot hold, stay in memory
    none    nothing kept: `load` runs on every access, and inputs are not checked up front
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fusion.data.disk_cache import DiskCache, NotCacheable, cache_mode, count_non_finite, entry_key
from fusion.data.records import PatientRecord, reference_file
from fusion.errors import ConfigError
from fusion.io.cohort import CohortError, Problem
from fusion.modalities.base import Modality, ModalityError

log = logging.getLogger(__name__)

Job = tuple[str, str, Any]  # patient_id, modality name, reference


class ItemStore:
    """patient_id x modality -> loaded item (None when missing or dropped).

    Args:
        modalities: name -> modality.
        threads: loader threads for `load_all` (DICOM reads are serialised anyway, NIfTI reads are not).
        cache: ``memory`` | ``disk`` | ``none`` (``True``/``False`` mean memory/none); see the module doc.
        cache_dir: root folder of the disk cache (``data.cache_dir``); needed for ``disk``.
    """

    def __init__(
        self,
        modalities: dict[str, Modality],
        threads: int | None = None,
        cache: str | bool = "memory",
        cache_dir: str | Path | None = None,
    ):
        self.modalities = modalities
        self.threads = threads or min(8, os.cpu_count() or 1)
        self.mode = cache_mode(cache)
        self.disk: DiskCache | None = None
        if self.mode == "disk":
            if not cache_dir:
                raise ConfigError("data.cache=disk needs data.cache_dir (the folder that holds the cache)")
            self.disk = DiskCache(cache_dir)
        self.items: dict[tuple[str, str], Any] = {}  # kept in memory (None = dropped)
        self.keys: dict[tuple[str, str], str] = {}  # on disk: the entry's key
        # inputs read by `load`, found on disk up front, and items read back from disk
        self.counts = {"loaded": 0, "disk_found": 0, "disk_reads": 0}
        self._warned: set[str] = set()

    # ---------------------------------------------------------------- up front
    def load_all(self, records: list[PatientRecord]) -> None:
        """Load (or find in the disk cache) every present input of these patients, raising or dropping
        broken ones per modality policy. With ``none`` the inputs are only checked, not kept."""
        jobs = [(r.patient_id, m, ref) for r in records for m, ref in r.refs.items() if ref is not None]
        jobs = [job for job in jobs if job[:2] not in self.items and job[:2] not in self.keys]
        with ThreadPoolExecutor(self.threads) as pool:
            # items that went to disk are not returned: memory stays bounded by the threads' items
            results = list(pool.map(lambda job: self._prepare(job)[:2], jobs))
        problems = []
        for (pid, name, ref), (outcome, value) in zip(jobs, results, strict=True):
            if outcome == "error":
                if self.modalities[name].on_error == "drop_modality":
                    log.warning("dropping %s (treated as missing): %s", name, value)
                    self.items[(pid, name)] = None
                else:
                    problems.append(
                        Problem(pid, self.modalities[name].column, value.problem, reference_file(ref))
                    )
            else:
                self._keep((pid, name), outcome, value)
        if problems:
            raise CohortError(problems, "cohort inputs")
        hits = sum(outcome == "disk-hit" for outcome, _ in results)
        log.info(
            "loaded %d inputs of %d patients (%d read from source, %d found in the disk cache)",
            len(jobs),
            len(records),
            len(jobs) - hits,
            hits,
        )

    def _prepare(self, job: Job) -> tuple[str, Any, Any]:
        """Load one input or find it on disk (runs in loader threads): (outcome, value, loaded item).

        ("disk-hit", key, None): already on disk; ("disk-new", key, item): loaded and written;
        ("source", item, item): loaded, not on disk; ("error", ModalityError, None).
        """
        pid, name, ref = job
        key = self._entry_key(name, ref)
        if key is not None and self._on_disk.contains(name, key):
            return "disk-hit", key, None
        item, error = self._load_one(job)
        if error is not None:
            return "error", error, None
        if key is not None and self._write(name, key, item):
            return "disk-new", key, item
        return "source", item, item

    def _keep(self, slot: tuple[str, str], outcome: str, value: Any) -> None:
        self.counts["disk_found" if outcome == "disk-hit" else "loaded"] += 1
        if outcome in ("disk-hit", "disk-new"):
            self.keys[slot] = value
        elif self.mode != "none":
            self.items[slot] = value

    # ---------------------------------------------------------------- on access
    def get(self, record: PatientRecord, name: str) -> Any:
        """The item: from memory, from the disk cache, or loaded now (and kept per the cache mode)."""
        ref = record.refs.get(name)
        if ref is None:
            return None
        slot = (record.patient_id, name)
        if slot in self.items:
            return self.items[slot]
        if slot in self.keys:
            owner = f"patient '{record.patient_id}', modality '{name}'"
            hit, item = self._on_disk.get(name, self.keys[slot], owner)
            if hit:
                self.counts["disk_reads"] += 1
                return item
            del self.keys[slot]  # corrupt entry (deleted and logged by the cache): recompute it
        outcome, value, item = self._prepare((record.patient_id, name, ref))
        if outcome == "error":
            if self.modalities[name].on_error != "drop_modality":
                raise value
            log.warning("dropping %s (treated as missing): %s", name, value)
            self.items[slot] = None
            return None
        self._keep(slot, outcome, value)
        if outcome == "disk-hit":
            return self.get(record, name)
        return item

    # ---------------------------------------------------------------- helpers
    def _load_one(self, job: Job) -> tuple[Any, ModalityError | None]:
        pid, name, ref = job
        modality = self.modalities[name]
        try:
            item = modality.load(ref)
        except ModalityError as err:
            return None, err
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
            return None, ModalityError(pid, name, f"{type(err).__name__}: {err}", reference_file(ref))
        problem = non_finite_problem(modality, item, "loaded")
        if problem is not None:
            return None, ModalityError(pid, name, problem, reference_file(ref))
        return item, None

    @property
    def _on_disk(self) -> DiskCache:
        """`disk` where it must exist: only a disk cache makes disk keys (`_entry_key`, `keys`)."""
        assert self.disk is not None, "a disk-cache key without a disk cache"
        return self.disk

    def _entry_key(self, name: str, ref: Any) -> str | None:
        """The disk-cache key, or None when this item stays in memory (no disk cache, no file)."""
        if self.disk is None:
            return None
        try:
            return entry_key(self.modalities[name], ref)
        except NotCacheable as err:
            self._warn_once(name, f"modality '{name}': kept in memory, not on disk: {err}")
            return None

    def _write(self, name: str, key: str, item: Any) -> bool:
        try:
            self._on_disk.put(name, key, item)
            return True
        except NotCacheable as err:
            self._warn_once(name, f"modality '{name}': kept in memory, not on disk: {err}")
        except OSError as err:
            self._warn_once(
                f"{name}:os",
                f"disk cache: cannot write under '{self._on_disk.root}' ({err}); keeping in memory",
            )
        return False

    def _warn_once(self, topic: str, message: str) -> None:
        if topic not in self._warned:
            self._warned.add(topic)
            log.warning(message)


def non_finite_problem(modality: Modality, item: Any, stage: str) -> str | None:
    """Why `item` must not reach the network, or None: NaN/inf values, except the NaN with which a
    modality marks missing values (`Modality.missing_as_nan`). `stage`: ``loaded`` or ``transformed``."""
    allows_nan = modality.missing_as_nan
    count = count_non_finite(item, nan=not allows_nan)
    if not count:
        return None
    what = "infinite" if allows_nan else "NaN/inf"
    hint = (
        ""
        if allows_nan
        else f" (modality '{modality.name}' does not use NaN for missing values; a custom modality that "
        "does, and handles it in transform or its encoder, sets missing_as_nan = True)"
    )
    return f"the {stage} input holds {count} {what} value(s), which would reach the network{hint}"
