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
- ``top_k``: each fold's model is explained on its test patients (`fusion.explanations`, no maps); the
  folds' feature rankings make ``top_features_cv.csv`` (0 = none).
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf, open_dict
from scipy import stats

from fusion.data.cohort import Cohort, CohortError
from fusion.data.demo import ensure_demo_cohort
from fusion.data.records import PatientRecord, collect_records
from fusion.data.split_sizes import SplitMinimums, size_message, split_size_problems
from fusion.data.splits import Fold, kfold_patients, read_fold_file, split_patients, write_fold_file
from fusion.errors import ConfigError
from fusion.explanations.runner import ExplainOptions, explain_manifest
from fusion.explanations.summaries import top_features_cv
from fusion.fail_soft import optional_step
from fusion.heads.base import Head, MetricRange, known_metric_range
from fusion.pipeline import build_heads, build_modalities, model_output, unimodal_weight
from fusion.scoring import records_provenance
from fusion.training import run_training

log = logging.getLogger(__name__)
SUMMARY_PREFIXES = ("test/", "oracle/")
#: a CV interval from fewer fold values (folds x repeats with a value) is flagged in `ci_notes`: with J
#: values the t quantile has J - 1 degrees of freedom (12.7 for J = 2, 4.3 for J = 3, 2.8 for J = 5) and the
#: sd itself rests on J numbers, so below 5 the interval is too wide and too unstable to mean much
MIN_FOLDS_FOR_CI = 5


def run_cross_validation(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Train one model per fold; write and return `cv_metrics.json` (per fold, mean, sd, 95% CI)."""
    output_dir = Path(output_dir)
    name = cfg.cv.get("name") or f"cv-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    plan, records, heads = _plan_with_records(cfg)
    check_fold_sizes(plan, records, heads, SplitMinimums.from_split_config(cfg.data.split))
    folds = []
    fold_provenance = []
    rankings: list[pd.DataFrame] = []
    top_k = int(cfg.cv.get("top_k") or 0)
    for split in plan:
        run = f"repeat{split['repeat']}_fold{split['fold']}"
        log.info("%s: %d train, %d val, %d test", run, *(len(split[r]) for r in ("train", "val", "test")))
        splits = {role: split[role] for role in ("train", "val", "test")}
        result = run_training(fold_config(cfg, name, run), output_dir / run, splits=splits)
        folds.append({"repeat": split["repeat"], "fold": split["fold"], **_scalars(result.metrics)})
        fold_provenance.append({"run": run, **_fold_provenance(result.output_dir)})
        if top_k and result.best_checkpoint is not None and split["test"]:
            with optional_step(f"{run}: explanations of the test patients"):
                rankings.append(_fold_ranking(cfg, result.best_checkpoint, split["test"], output_dir / run))
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
    ranges = metric_ranges({k for f in folds for k in f}, heads)
    summary = {"name": name, "setup": setup, "folds": folds, **summarise(folds, test_train_ratio, ranges)}
    resolved = cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))
    summary["provenance"] = records_provenance(
        resolved, ensure_demo_cohort(cfg), {"cohort": records}, {}, folds=fold_provenance
    )
    (output_dir / "cv_metrics.json").write_text(json.dumps(summary, indent=2))
    if rankings:
        top_features_cv(rankings, top_k).to_csv(output_dir / "top_features_cv.csv", index=False)
    log.info("cv mean: %s", json.dumps(summary["mean"], indent=1))
    for note in summary["ci_notes"]:
        log.warning("cv 95%% CI: %s", note)
    return summary


def _fold_provenance(fold_dir: Path) -> dict[str, Any]:
    """A fold's model id, input files and split sizes, from its metrics.json (empty when it has none)."""
    try:
        stored = json.loads((fold_dir / "metrics.json").read_text()).get("provenance") or {}
    except (OSError, ValueError):
        return {}
    return {k: stored.get(k) for k in ("model_id", "input_files", "n_patients")}


def _fold_ranking(cfg: DictConfig, checkpoint: Path, test_ids: list[str], folder: Path) -> pd.DataFrame:
    """One fold's top_features table: its model explained on its test patients (contributions and table
    features, no maps, no patient values), written to the fold's explanations/ folder."""
    manifest = ensure_demo_cohort(cfg)
    options = ExplainOptions(maps=False, feature_values=False)
    result = explain_manifest(
        checkpoint, manifest, folder / "explanations", patients=test_ids, options=options
    )
    return result.top_features


def check_fold_sizes(
    plan: list[Fold], records: list[PatientRecord], heads: dict[str, Head], minimums: SplitMinimums
) -> None:
    """Refuse, before the first fold trains, every fold with a split too small to evaluate (one line)."""
    by_id = {r.patient_id: r for r in records}
    problems = []
    for fold in plan:
        splits = {role: [by_id[p] for p in fold[role] if p in by_id] for role in ("train", "val", "test")}
        problems += [
            f"repeat{fold['repeat']}_fold{fold['fold']}: {p}"
            for p in split_size_problems(splits, heads, minimums)
        ]
    if problems:
        raise ConfigError(size_message(problems, "fewer cv.folds (larger test folds) or a larger cv.val"))


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
    return _plan_with_records(cfg)[0]


def _plan_with_records(cfg: DictConfig) -> tuple[list[Fold], list[PatientRecord], dict[str, Head]]:
    """`fold_plan`, with the cohort's records and the config's heads it was drawn from."""
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
        return _plan_from_file(cfg, Path(splits_file), cohort, records, usable), records, heads
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
    return _usable_only(plan, usable), records, heads


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


def metric_ranges(keys: Iterable[str], heads: Mapping[str, Head]) -> dict[str, MetricRange | None]:
    """Summary key (``test/grade_auroc``) -> the metric's range, asked of the head whose name begins the
    metric's (`Head.metric_range`); keys of no head get `known_metric_range`."""
    ranges = {}
    for key in keys:
        if not key.startswith(SUMMARY_PREFIXES):
            continue
        metric = key.split("/", 1)[1]
        owners = [name for name in heads if metric.startswith(f"{name}_")]
        owner = max(owners, key=len) if owners else None
        ranges[key] = known_metric_range(metric) if owner is None else heads[owner].metric_range(metric)
    return ranges


def summarise(
    folds: list[dict[str, Any]],
    test_train_ratio: float | None = None,
    ranges: Mapping[str, MetricRange | None] | None = None,
) -> dict[str, Any]:
    """Mean, sd and a t-based 95% CI of the mean over folds, per metric (folds with no value skipped).

    With ``test_train_ratio`` (test / training patients per fold) the interval is the corrected resampled t
    interval of Nadeau & Bengio (2003), as Bouckaert & Frank (2004) apply it to repeated k-fold CV: the
    variance of the mean is sd^2 * (1/J + n_test/n_train) over J folds instead of sd^2 / J. Why: the folds
    share training patients, so their scores are correlated and sd^2 / J understates the uncertainty (the
    more so the more repeats); a 3-fold CI widens by a factor 1.58, a 3-fold x 3-repeat one by 2.35.
    Without it (e.g. folds from unrelated runs) the plain t interval. `ci_method` says which was used.

    Each interval is clipped to its metric's range (``ranges``: key -> range or None = never clipped; keys
    not in it get `known_metric_range`: [0, 1] for AUROC, C-index, ...). `ci_notes` says which intervals
    were clipped, and that intervals from fewer than `MIN_FOLDS_FOR_CI` fold values mean little.
    """
    keys = sorted({k for f in folds for k in f if k.startswith(SUMMARY_PREFIXES)})
    mean, sd, ci = {}, {}, {}
    clipped: list[str] = []
    n_values: dict[str, int] = {}
    for key in keys:
        values = np.array(
            [f[key] for f in folds if isinstance(f.get(key), int | float) and not math.isnan(f[key])],
            dtype=float,
        )
        if len(values) == 0:
            continue
        n_values[key] = len(values)
        mean[key] = float(values.mean())
        sd[key] = float(values.std(ddof=1)) if len(values) > 1 else None
        if len(values) > 1:
            scale = 1 / len(values) + (test_train_ratio or 0.0)
            half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) * math.sqrt(scale)
            bounds = ranges[key] if ranges is not None and key in ranges else known_metric_range(key)
            ci[key] = _clip(mean[key] - half, mean[key] + half, bounds)
            if ci[key] != [mean[key] - half, mean[key] + half]:
                clipped.append(
                    f"{key}: the interval [{mean[key] - half:.3g}, {mean[key] + half:.3g}] leaves the "
                    f"metric's range {_range_text(bounds)}; clipped to [{ci[key][0]:.3g}, {ci[key][1]:.3g}]"
                )
    method = (
        "t, plain: sd * sqrt(1/J)"
        if test_train_ratio is None
        else "t, corrected (Nadeau-Bengio): sd * sqrt(1/J + n_test/n_train), "
        f"n_test/n_train = {test_train_ratio:.3f}"
    )
    notes = _few_folds_notes(n_values) + clipped
    return {"mean": mean, "sd": sd, "ci95": ci, "ci_method": method, "ci_notes": notes}


def _clip(low: float, high: float, bounds: MetricRange | None) -> list[float]:
    lowest, highest = bounds or (None, None)
    floor = -math.inf if lowest is None else lowest
    ceiling = math.inf if highest is None else highest
    return [min(max(low, floor), ceiling), min(max(high, floor), ceiling)]


def _range_text(bounds: MetricRange | None) -> str:
    lowest, highest = bounds or (None, None)
    left = "(-inf" if lowest is None else f"[{lowest:g}"
    return f"{left}, {'inf)' if highest is None else f'{highest:g}]'}"


def _few_folds_notes(n_values: dict[str, int]) -> list[str]:
    """One note per fold count under `MIN_FOLDS_FOR_CI`, naming the metrics whose interval rests on it."""
    notes = []
    for n in sorted({n for n in n_values.values() if n < MIN_FOLDS_FOR_CI}):
        keys = [k for k, m in n_values.items() if m == n]
        if n == 1:
            notes.append(f"no interval for {', '.join(keys)}: only one fold has a value")
            continue
        what = (
            "every interval rests"
            if len(keys) == len(n_values)
            else f"the intervals of {', '.join(keys)} rest"
        )
        notes.append(
            f"{what} on {n} fold values, fewer than {MIN_FOLDS_FOR_CI}: too few to mean much (the t "
            f"quantile with {n - 1} degree(s) of freedom and an sd from {n} values make it wide and "
            "unstable); run more folds or repeats (cv.folds, cv.repeats)"
        )
    return notes
