"""Patient-level splits: stratified train/val/test and stratified k-fold, reproducible by seed.

Splitting is by patient id (one row per patient in the manifest), so no patient's data can sit
in two splits. Strata combine the configured labels (e.g. grade and event status); strata too
small to be split are pooled into one, so a rare combination never makes the split fail.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split


def _usable_strata(strata: list[str], min_count: int) -> list[str]:
    counts = Counter(strata)
    pooled = ["~rare" if counts[s] < min_count else s for s in strata]
    if Counter(pooled)["~rare"] and Counter(pooled)["~rare"] < min_count:
        # the pooled group itself is too small: fold it into the most common stratum
        common = Counter(pooled).most_common(1)[0][0]
        pooled = [common if s == "~rare" else s for s in pooled]
    return pooled


def _split_off(ids: list[str], strata: list[str], fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(rest, held_out) with `fraction` of ids held out, stratified where possible."""
    if fraction <= 0:
        return ids, []
    n_held = max(1, round(len(ids) * fraction))
    pooled = _usable_strata(strata, 2)
    stratify = pooled if len(set(pooled)) > 1 and n_held >= len(set(pooled)) else None
    rest, held = train_test_split(ids, test_size=n_held, random_state=seed, stratify=stratify)
    return list(rest), list(held)


def split_patients(
    patient_ids: list[str], strata: list[str], val: float, test: float, seed: int
) -> dict[str, list[str]]:
    """Stratified train/val/test split of patient ids (fractions of the whole cohort)."""
    if not 0 <= val < 1 or not 0 <= test < 1 or val + test >= 1:
        raise ValueError(
            f"split fractions must satisfy 0 <= val, test and val + test < 1; got val={val}, test={test}"
        )
    if len(set(patient_ids)) != len(patient_ids):
        raise ValueError("split_patients: patient ids are not unique")
    stratum = dict(zip(patient_ids, strata, strict=True))
    rest, test_ids = _split_off(patient_ids, strata, test, seed)
    val_fraction = val / (1 - test) if test < 1 else 0
    train_ids, val_ids = _split_off(rest, [stratum[p] for p in rest], val_fraction, seed + 1)
    return {"train": sorted(train_ids), "val": sorted(val_ids), "test": sorted(test_ids)}


def kfold_patients(
    patient_ids: list[str], strata: list[str], folds: int, seed: int
) -> list[tuple[list[str], list[str]]]:
    """Stratified k-fold over patients: a list of (train+val ids, test ids), each patient tested once."""
    if folds < 2 or folds > len(patient_ids):
        raise ValueError(
            f"cv.folds must be between 2 and the number of patients ({len(patient_ids)}), got {folds}"
        )
    pooled = _usable_strata(strata, folds)
    ids = np.asarray(patient_ids)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [(sorted(ids[tr].tolist()), sorted(ids[te].tolist())) for tr, te in splitter.split(ids, pooled)]
