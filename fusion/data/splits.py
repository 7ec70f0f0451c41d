"""Patient-level splits: stratified train/val/test and stratified (optionally site-grouped) k-fold.

Splitting is by patient id (one row per patient in the manifest), so no patient's data can sit
in two splits. Strata combine the configured labels (e.g. grade and event status); strata too
small to be split are pooled into one, so a rare combination never makes the split fail.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, train_test_split


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
    patient_ids: list[str],
    strata: list[str],
    folds: int,
    seed: int,
    groups: list[str | None] | None = None,
) -> list[tuple[list[str], list[str]]]:
    """Stratified k-fold over patients: a list of (train+val ids, test ids), each patient tested once.

    `groups` (e.g. each patient's site) keeps every group whole: all its patients land in the same
    test fold, so no centre is ever in both the training and the test side of a fold
    (sklearn's StratifiedGroupKFold, which stratifies as well as the groups allow). A patient
    whose group is None or empty is a group of its own. There must be at least `folds` groups.
    """
    if folds < 2 or folds > len(patient_ids):
        raise ValueError(
            f"cv.folds must be between 2 and the number of patients ({len(patient_ids)}), got {folds}"
        )
    pooled = _usable_strata(strata, folds)
    ids = np.asarray(patient_ids)
    if groups is None:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        indices = splitter.split(ids, pooled)
    else:
        named = [
            f"~patient:{p}" if g is None or str(g).strip() == "" else str(g)
            for p, g in zip(patient_ids, groups, strict=True)
        ]
        if len(set(named)) < folds:
            raise ValueError(
                f"cv.folds={folds} needs at least {folds} groups, but the patients come from only "
                f"{len(set(named))}: {sorted(set(named))[:10]}; lower cv.folds or set cv.group_by=null"
            )
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        indices = splitter.split(ids, pooled, groups=named)
    return [(sorted(ids[tr].tolist()), sorted(ids[te].tolist())) for tr, te in indices]


# ---------------------------------------------------------------- frozen split files
ROLES = ("train", "val", "test")
FOLD_FILE_COLUMNS = ["patient_id", "repeat", "fold", "role"]
Fold = dict[str, Any]  # {"repeat": r, "fold": k, "train": [ids], "val": [ids], "test": [ids]}


def write_fold_file(path: str | Path, plan: list[Fold]) -> Path:
    """Write a CV fold plan as CSV (patient_id, repeat, fold, role), one row per patient and fold,
    so a benchmark can freeze its folds and every later run (any config) reuses exactly them."""
    rows = [(pid, f["repeat"], f["fold"], role) for f in plan for role in ROLES for pid in f.get(role, [])]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=FOLD_FILE_COLUMNS).to_csv(path, index=False)
    return path


def read_fold_file(path: str | Path, cohort_ids: list[str]) -> list[Fold]:
    """Read and check a fold file; raises ValueError listing every problem (unknown patients, a patient
    twice in one fold or in two test folds of a repeat, bad roles, missing columns)."""
    path = Path(path)
    frame = pd.read_csv(path, dtype={"patient_id": str})
    missing = [c for c in FOLD_FILE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"split file '{path}': missing column(s) {missing}; expected {FOLD_FILE_COLUMNS}")
    frame["patient_id"] = frame["patient_id"].str.strip()
    problems = _fold_file_problems(frame, set(cohort_ids))
    if problems:
        shown = "\n".join(f"  - {p}" for p in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise ValueError(f"split file '{path}' has {len(problems)} problem(s):\n{shown}{more}")
    plan = []
    for (repeat, fold), rows in frame.groupby(["repeat", "fold"], sort=True):
        split = {role: sorted(rows.loc[rows["role"] == role, "patient_id"]) for role in ROLES}
        plan.append({"repeat": int(repeat), "fold": int(fold), **split})
    return plan


def _fold_file_problems(frame: pd.DataFrame, known: set[str]) -> list[str]:
    problems = []
    bad_roles = sorted(set(frame["role"].astype(str)) - set(ROLES))
    if bad_roles:
        problems.append(f"role must be one of {list(ROLES)}, found {bad_roles}")
    if frame[["patient_id", "repeat", "fold"]].isna().any().any():
        problems.append("empty patient_id, repeat or fold cells")
        return problems
    for pid in sorted(set(frame["patient_id"]) - known):
        problems.append(f"patient '{pid}' is not in the cohort's manifest")
    twice = frame[frame.duplicated(["patient_id", "repeat", "fold"], keep=False)]
    for (pid, repeat, fold), _ in twice.groupby(["patient_id", "repeat", "fold"]):
        problems.append(f"patient '{pid}' has more than one role in repeat {repeat} fold {fold}")
    tests = frame[frame["role"] == "test"]
    for (pid, repeat), rows in tests.groupby(["patient_id", "repeat"]):
        if rows["fold"].nunique() > 1:
            problems.append(
                f"patient '{pid}' is in the test side of folds {sorted(rows['fold'].unique().tolist())} "
                f"of repeat {repeat}"
            )
    return problems
