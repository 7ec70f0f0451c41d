"""Repeated, stratified, patient-level k-fold CV: each fold is a normal training run.

Each fold's training patients are split again into train/val (for early stopping and the best
checkpoint), so the held-out fold is touched only once, for its test metrics.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from scipy import stats

from fusion.data.cohort import Cohort, CohortError
from fusion.data.demo import ensure_demo_cohort
from fusion.data.records import collect_records
from fusion.data.splits import kfold_patients, split_patients
from fusion.pipeline import build_heads, build_modalities
from fusion.training import run_training

log = logging.getLogger(__name__)


def run_cross_validation(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    output_dir = Path(output_dir)
    cohort = Cohort.load(ensure_demo_cohort(cfg))
    heads = build_heads(cfg)
    records, problems = collect_records(cohort, build_modalities(cfg), heads)
    if problems:
        raise CohortError(problems, f"cohort '{cohort.manifest_path}'")
    records = [r for r in records if r.has_any_modality()]  # the others are left out, as in training
    by = [h for h in (cfg.data.split.stratify_by or list(heads)[:1]) if h in heads]
    strata = {r.patient_id: "|".join(heads[h].stratum(r.labels[h]) for h in by) for r in records}
    ids = [r.patient_id for r in records]

    folds = []
    for repeat in range(cfg.cv.repeats):
        seed = cfg.seed + 1000 * repeat
        for k, (train_ids, test_ids) in enumerate(
            kfold_patients(ids, [strata[p] for p in ids], cfg.cv.folds, seed)
        ):
            inner = split_patients(train_ids, [strata[p] for p in train_ids], cfg.cv.val, 0.0, seed + k)
            splits = {"train": inner["train"], "val": inner["val"], "test": test_ids}
            log.info("repeat %d fold %d: %d train, %d val, %d test", repeat, k, *map(len, splits.values()))
            metrics = run_training(cfg, output_dir / f"repeat{repeat}_fold{k}", splits=splits)
            folds.append(
                {"repeat": repeat, "fold": k, **{m: v for m, v in metrics.items() if m.startswith("test/")}}
            )
    summary = {"folds": folds, **summarise(folds)}
    (output_dir / "cv_metrics.json").write_text(json.dumps(summary, indent=2))
    log.info("cv mean: %s", json.dumps(summary["mean"], indent=1))
    return summary


def summarise(folds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean, sd and a t-based 95% CI of the mean over folds, per metric (folds with no value skipped)."""
    keys = sorted({k for f in folds for k in f if k.startswith("test/")})
    mean, sd, ci = {}, {}, {}
    for key in keys:
        values = np.array(
            [f[key] for f in folds if f.get(key) is not None and not math.isnan(f[key])], dtype=float
        )
        if len(values) == 0:
            continue
        mean[key] = float(values.mean())
        sd[key] = float(values.std(ddof=1)) if len(values) > 1 else None
        if len(values) > 1:
            half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
            ci[key] = [mean[key] - half, mean[key] + half]
    return {"mean": mean, "sd": sd, "ci95": ci}
