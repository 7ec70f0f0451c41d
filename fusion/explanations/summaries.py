"""Cohort-level tables of an explanation run and of a cross-validation: names and averages only.

summary.csv       head, modality, mean_abs_contribution, n_patients
top_features.csv  head, modality, rank, feature, mean_abs_attribution, mean_attribution, n_patients
top_features_cv.csv  head, modality, feature, n_folds_top_k, share_of_folds, mean_rank, n_folds, k

A head with several targets (the grade head's class probabilities) is averaged over them: |attribution| per
target, then the mean over targets, then over patients. `mean_attribution` is the signed mean of the head's
primary target (`Head.primary_target`: the highest grade, the log-hazard, the response logit), so a
reader sees which way a feature pushes. These tables hold no patient value: they may leave the hospital.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

SUMMARY_COLUMNS = ("head", "modality", "mean_abs_contribution", "n_patients")
TOP_FEATURE_COLUMNS = (
    "head",
    "modality",
    "rank",
    "feature",
    "mean_abs_attribution",
    "mean_attribution",
    "n_patients",
)
TOP_FEATURES_CV_COLUMNS = (
    "head",
    "modality",
    "feature",
    "n_folds_top_k",
    "share_of_folds",
    "mean_rank",
    "n_folds",
    "k",
)


def summary_table(contributions: pd.DataFrame) -> pd.DataFrame:
    """Mean |contribution| per head and modality over the patients who have it (from the rows of
    modality_contributions.csv)."""
    if contributions.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    frame = contributions.assign(abs_contribution=contributions["contribution"].abs())
    per_patient = frame.groupby(["head", "modality", "patient_id"], sort=False)["abs_contribution"].mean()
    grouped = per_patient.groupby(level=["head", "modality"], sort=False)
    table = pd.DataFrame(
        {"mean_abs_contribution": grouped.mean(), "n_patients": grouped.size()}
    ).reset_index()
    table = table.sort_values(["head", "mean_abs_contribution"], ascending=[True, False], kind="stable")
    return table[list(SUMMARY_COLUMNS)].reset_index(drop=True)


def top_features_table(features: pd.DataFrame, primary: Mapping[str, str]) -> pd.DataFrame:
    """Every feature ranked per head and modality by mean |attribution| (features.csv rows); `primary`:
    head -> its primary target, whose signed mean is `mean_attribution`."""
    if features.empty:
        return pd.DataFrame(columns=list(TOP_FEATURE_COLUMNS))
    keys = ["head", "modality", "feature"]
    frame = features.assign(abs_attribution=features["attribution"].abs())
    per_patient = frame.groupby([*keys, "patient_id"], sort=False)["abs_attribution"].mean()
    grouped = per_patient.groupby(level=keys, sort=False)
    table = pd.DataFrame({"mean_abs_attribution": grouped.mean(), "n_patients": grouped.size()}).reset_index()
    is_primary = features["target"] == features["head"].map(primary)
    signed = features[is_primary].groupby(keys, sort=False)["attribution"].mean().rename("mean_attribution")
    table = table.merge(signed.reset_index(), on=keys, how="left")
    table = table.sort_values(
        ["head", "modality", "mean_abs_attribution"], ascending=[True, True, False], kind="stable"
    )
    table["rank"] = table.groupby(["head", "modality"], sort=False).cumcount() + 1
    return table[list(TOP_FEATURE_COLUMNS)].reset_index(drop=True)


def top_features_cv(folds: Sequence[pd.DataFrame], k: int) -> pd.DataFrame:
    """How often each feature is in a fold's top `k` (per head and modality), over the folds' top_features
    tables: a fold-stable ranking. Sorted by share of folds, then mean rank (over the folds ranking it)."""
    ranked = [f for f in folds if not f.empty]
    if not ranked:
        return pd.DataFrame(columns=list(TOP_FEATURES_CV_COLUMNS))
    frame = pd.concat([f.assign(fold=i) for i, f in enumerate(ranked)], ignore_index=True)
    keys = ["head", "modality", "feature"]
    grouped = frame.groupby(keys, sort=False)
    table = pd.DataFrame(
        {
            "n_folds_top_k": grouped["rank"].apply(lambda r: int((r <= k).sum())),
            "mean_rank": grouped["rank"].mean(),
        }
    ).reset_index()
    n_folds = len(ranked)
    table["share_of_folds"] = table["n_folds_top_k"] / n_folds
    table["n_folds"], table["k"] = n_folds, k
    table = table.sort_values(
        ["head", "modality", "share_of_folds", "mean_rank"],
        ascending=[True, True, False, True],
        kind="stable",
    )
    return table[list(TOP_FEATURES_CV_COLUMNS)].reset_index(drop=True)
