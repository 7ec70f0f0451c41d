"""Repeated, stratified, patient-level k-fold CV: each fold is a normal training run.

Each fold's training patients are split again into train/val (for early stopping and the best
checkpoint), so the held-out fold is touched only once, for its test metrics. Folds are drawn over
every patient of the manifest, whatever modalities are selected, so two configs on the same cohort and
seed share their folds; a run leaves out the patients with none of its modalities (a one-modality
model has nothing to predict them from), so its test folds are subsets of the shared ones.

Options (``cv.*`` in `conf/cv.yaml`):
- ``group_by``: a manifest column (e.g. ``site``) whose values are kept whole, so one centre is never
  on both sides of a fold (patients with an empty cell are a group of their own).
- ``splits_file``: a CSV (patient_id, repeat, fold, role). If it exists the folds are read from it and
  checked; else the computed folds are written there. Freezing folds in a file is what lets an
  ablation or a benchmark compare every config on exactly the same patients.
- ``name``: the CV run's name, the W&B group of its fold runs (null = a fresh unique name).
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, open_dict
from scipy import stats

from fusion.data.cohort import Cohort, CohortError
from fusion.data.demo import ensure_demo_cohort
from fusion.data.records import PatientRecord, collect_records
from fusion.data.splits import Fold, kfold_patients, read_fold_file, split_patients, write_fold_file
from fusion.errors import ConfigError
from fusion.pipeline import build_heads, build_modalities, model_output, unimodal_weight
from fusion.training import run_training

log = logging.getLogger(__name__)
SUMMARY_PREFIXES = ("test/", "oracle/")


def run_cross_validation(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Train one model per fold; write and return `cv_metrics.json` (per fold, mean, sd, 95% CI)."""
    output_dir = Path(output_dir)
    name = cfg.cv.get("name") or f"cv-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    plan = fold_plan(cfg)
    folds = []
    for split in plan:
        run = f"repeat{split['repeat']}_fold{split['fold']}"
        log.info("%s: %d train, %d val, %d test", run, *(len(split[r]) for r in ("train", "val", "test")))
        splits = {role: split[role] for role in ("train", "val", "test")}
        result = run_training(fold_config(cfg, name, run), output_dir / run, splits=splits)
        folds.append({"repeat": split["repeat"], "fold": split["fold"], **_scalars(result.metrics)})
    setup = {
        "modality": sorted(cfg.modality),
        "head": sorted(cfg.head),
        "fuser": cfg.fuser.get("_target_"),
        "unimodal_weight": unimodal_weight(cfg),
        "model_output": model_output(cfg),
        "group_by": cfg.cv.get("group_by"),
        "splits_file": cfg.cv.get("splits_file"),
    }
    test_train_ratio = float(np.mean([len(f["test"]) / len(f["train"] + f["val"]) for f in plan]))
    summary = {"name": name, "setup": setup, "folds": folds, **summarise(folds, test_train_ratio)}
    (output_dir / "cv_metrics.json").write_text(json.dumps(summary, indent=2))
    log.info("cv mean: %s", json.dumps(summary["mean"], indent=1))
    return summary


def fold_config(cfg: DictConfig, cv_name: str, run: str) -> DictConfig:
    """The fold's training config: its W&B run joins the CV's group, named by fold (job_type cv-fold)."""
    cfg = cfg.copy()
    wandb = (cfg.get("logger") or {}).get("wandb")
    if wandb is not None:
        with open_dict(wandb):
            wandb.group, wandb.name, wandb.job_type = cv_name, run, "cv-fold"
    return cfg


def fold_plan(cfg: DictConfig) -> list[Fold]:
    """Every (repeat, fold) with its train/val/test patient ids: read from cv.splits_file, or computed."""
    cohort = Cohort.load(ensure_demo_cohort(cfg))
    heads = build_heads(cfg)
    records, problems = collect_records(cohort, build_modalities(cfg), heads)
    if problems:
        raise CohortError(problems, f"cohort '{cohort.manifest_path}'")
    usable = {
        r.patient_id for r in records if r.has_any_modality()
    }  # the others are left out, as in training
    splits_file = cfg.cv.get("splits_file")
    if splits_file and Path(splits_file).exists():
        return _plan_from_file(cfg, Path(splits_file), cohort, records, usable)
    # folds are drawn over every manifest patient, whatever the modality selection, so each config on the
    # same cohort and seed gets the same folds; a run then leaves out the patients it has no input for
    by = [h for h in (cfg.data.split.stratify_by or list(heads)[:1]) if h in heads]
    strata = {r.patient_id: "|".join(heads[h].stratum(r.labels[h]) for h in by) for r in records}
    ids = [r.patient_id for r in records]
    groups = _groups(cfg, cohort, records)
    plan = []
    for repeat in range(cfg.cv.repeats):
        seed = cfg.seed + 1000 * repeat
        try:
            outer = kfold_patients(ids, [strata[p] for p in ids], cfg.cv.folds, seed, groups)
        except ValueError as err:
            raise ConfigError(str(err)) from err
        for k, (train_ids, test_ids) in enumerate(outer):
            inner = split_patients(train_ids, [strata[p] for p in train_ids], cfg.cv.val, 0.0, seed + k)
            plan.append(
                {"repeat": repeat, "fold": k, "train": inner["train"], "val": inner["val"], "test": test_ids}
            )
    if splits_file:
        log.info(
            "wrote the folds to %s (later runs with cv.splits_file=%s reuse them)",
            write_fold_file(splits_file, plan),
            splits_file,
        )
    return _usable_only(plan, usable)


def _groups(cfg: DictConfig, cohort: Cohort, records: list[PatientRecord]) -> list[str | None] | None:
    column = cfg.cv.get("group_by")
    if not column:
        return None
    if column not in cohort.manifest.columns:
        raise ConfigError(
            f"cv.group_by='{column}': the manifest '{cohort.manifest_path}' has no such column "
            f"(columns: {sorted(map(str, cohort.manifest.columns))})"
        )
    cells = cohort.column(column)
    return [None if cells[r.patient_id] is None else str(cells[r.patient_id]) for r in records]


def _plan_from_file(
    cfg: DictConfig, path: Path, cohort: Cohort, records: list[PatientRecord], usable: set[str]
) -> list[Fold]:
    try:
        plan = read_fold_file(path, cohort.patient_ids)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    repeats = len({f["repeat"] for f in plan})
    folds = len(plan) // max(repeats, 1)
    if (repeats, folds) != (cfg.cv.repeats, cfg.cv.folds):
        raise ConfigError(
            f"cv.splits_file '{path}' holds {repeats} repeat(s) x {folds} fold(s) but the config asks for "
            f"cv.repeats={cfg.cv.repeats} cv.folds={cfg.cv.folds}; set them to match the file"
        )
    for repeat in sorted({f["repeat"] for f in plan}):
        tested = {p for f in plan if f["repeat"] == repeat for p in f["test"]}
        untested = sorted(usable - tested)
        if untested:
            raise ConfigError(
                f"cv.splits_file '{path}': repeat {repeat} tests no fold on patient(s) {untested[:10]} "
                f"({len(untested)} in all); the cohort has changed since the file was written"
            )
    groups = _groups(cfg, cohort, records)
    if groups is not None:
        _check_groups_whole(path, plan, dict(zip([r.patient_id for r in records], groups, strict=True)))
    return _usable_only(plan, usable)


def _usable_only(plan: list[Fold], usable: set[str]) -> list[Fold]:
    """The plan without the patients that have none of the selected modalities (nothing to predict from)."""
    dropped = {p for f in plan for r in ("train", "val", "test") for p in f[r]} - usable
    if dropped:
        log.info("%d patient(s) have none of the selected modalities: left out of every fold", len(dropped))
    return [{**f, **{r: [p for p in f[r] if p in usable] for r in ("train", "val", "test")}} for f in plan]


def _check_groups_whole(path: Path, plan: list[Fold], group_of: dict[str, str | None]) -> None:
    for f in plan:
        test = {g for p in f["test"] if (g := group_of.get(p)) is not None}
        train = {g for p in f["train"] + f["val"] if (g := group_of.get(p)) is not None}
        if test & train:
            raise ConfigError(
                f"cv.splits_file '{path}': repeat {f['repeat']} fold {f['fold']} has group(s) "
                f"{sorted(test & train)} on both the training and the test side, but cv.group_by is set"
            )


def _scalars(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The fold's test and oracle metrics that are single numbers (CIs and other extras are left out)."""
    return {
        k: v
        for k, v in metrics.items()
        if k.startswith(SUMMARY_PREFIXES)
        and (v is None or (isinstance(v, int | float) and not isinstance(v, bool)))
    }


def summarise(folds: list[dict[str, Any]], test_train_ratio: float | None = None) -> dict[str, Any]:
    """Mean, sd and a t-based 95% CI of the mean over folds, per metric (folds with no value skipped).

    With ``test_train_ratio`` (test / training patients per fold) the interval is the corrected resampled t
    interval of Nadeau & Bengio (2003), as Bouckaert & Frank (2004) apply it to repeated k-fold CV: the
    variance of the mean is sd^2 * (1/J + n_test/n_train) over J folds instead of sd^2 / J. Why: the folds
    share training patients, so their scores are correlated and sd^2 / J understates the uncertainty (the
    more so the more repeats); a 3-fold CI widens by a factor 1.58, a 3-fold x 3-repeat one by 2.35.
    Without it (e.g. folds from unrelated runs) the plain t interval. `ci_method` says which was used.
    """
    keys = sorted({k for f in folds for k in f if k.startswith(SUMMARY_PREFIXES)})
    mean, sd, ci = {}, {}, {}
    for key in keys:
        values = np.array(
            [f[key] for f in folds if isinstance(f.get(key), int | float) and not math.isnan(f[key])],
            dtype=float,
        )
        if len(values) == 0:
            continue
        mean[key] = float(values.mean())
        sd[key] = float(values.std(ddof=1)) if len(values) > 1 else None
        if len(values) > 1:
            scale = 1 / len(values) + (test_train_ratio or 0.0)
            half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) * math.sqrt(scale)
            ci[key] = [mean[key] - half, mean[key] + half]
    method = (
        "t, plain: sd * sqrt(1/J)"
        if test_train_ratio is None
        else "t, corrected (Nadeau-Bengio): sd * sqrt(1/J + n_test/n_train), "
        f"n_test/n_train = {test_train_ratio:.3f}"
    )
    return {"mean": mean, "sd": sd, "ci95": ci, "ci_method": method}
