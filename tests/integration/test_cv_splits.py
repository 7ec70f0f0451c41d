"""fusion-cv fold plans: site grouping, frozen split files, and the checks on them (no training)."""

from __future__ import annotations

import pandas as pd
import pytest

import fusion
from fusion.cross_validation import fold_config, fold_plan
from fusion.errors import ConfigError


def _cfg(manifest, *overrides):
    return fusion.compose(
        [f"data.manifest={manifest}", "modality=[genomics,ehr]", "cv.folds=3", *overrides], config_name="cv"
    )


def test_site_grouped_folds_keep_every_site_on_one_side(tiny_cohort):
    site = pd.read_csv(tiny_cohort).set_index("patient_id")["site"].to_dict()
    plan = fold_plan(_cfg(tiny_cohort, "cv.group_by=site"))
    assert len(plan) == 3
    for fold in plan:
        train = {site[p] for p in fold["train"] + fold["val"]}
        assert fold["test"] and not train & {site[p] for p in fold["test"]}
    tested = [p for f in plan for p in f["test"]]
    assert len(tested) == len(set(tested))


def test_group_by_an_absent_column_is_a_clear_error(tiny_cohort):
    with pytest.raises(ConfigError, match=r"cv.group_by='hospital'.*no such column"):
        fold_plan(_cfg(tiny_cohort, "cv.group_by=hospital"))


def test_splits_file_is_written_then_reused_by_another_config(tiny_cohort, tmp_path):
    path = tmp_path / "folds.csv"
    first = fold_plan(_cfg(tiny_cohort, f"cv.splits_file={path}", "cv.repeats=2"))
    assert path.exists() and len(first) == 6
    # another config and seed read the same folds; a config with one modality drops the patients without it
    again = fold_plan(_cfg(tiny_cohort, f"cv.splits_file={path}", "cv.repeats=2", "seed=7"))
    assert again == first
    genomics_only = fold_plan(
        _cfg(tiny_cohort, f"cv.splits_file={path}", "cv.repeats=2", "modality=[genomics]")
    )
    for a, b in zip(first, genomics_only, strict=True):
        assert set(b["test"]) <= set(a["test"]) and set(b["train"]) <= set(a["train"])
    assert sum(len(f["test"]) for f in genomics_only) < sum(len(f["test"]) for f in first)
    with pytest.raises(ConfigError, match=r"holds 2 repeat\(s\) x 3 fold\(s\).*cv.repeats=1"):
        fold_plan(_cfg(tiny_cohort, f"cv.splits_file={path}"))


def test_a_tampered_splits_file_is_refused_naming_the_patient(tiny_cohort, tmp_path):
    path = tmp_path / "folds.csv"
    fold_plan(_cfg(tiny_cohort, f"cv.splits_file={path}"))
    frame = pd.read_csv(path)
    victim = frame.loc[frame["role"] == "test", "patient_id"].iloc[0]
    frame.loc[frame["patient_id"] == victim, "role"] = "test"
    frame.to_csv(path, index=False)
    with pytest.raises(ConfigError, match=rf"patient '{victim}' is in the test side of folds \[0, 1, 2\]"):
        fold_plan(_cfg(tiny_cohort, f"cv.splits_file={path}"))
    frame = frame[frame["patient_id"] != victim]
    frame.to_csv(path, index=False)
    with pytest.raises(ConfigError, match=rf"tests no fold on patient\(s\) \['{victim}'\]"):
        fold_plan(_cfg(tiny_cohort, f"cv.splits_file={path}"))


def test_a_splits_file_that_mixes_sites_is_refused_under_group_by(tiny_cohort, tmp_path):
    path = tmp_path / "folds.csv"
    fold_plan(_cfg(tiny_cohort, f"cv.splits_file={path}"))  # ungrouped folds: sites on both sides
    with pytest.raises(ConfigError, match="on both the training and the test side"):
        fold_plan(_cfg(tiny_cohort, f"cv.splits_file={path}", "cv.group_by=site"))


def test_fold_runs_join_the_cv_group_in_wandb(tiny_cohort):
    cfg = _cfg(tiny_cohort, "logger=[csv,wandb]")
    fold = fold_config(cfg, "cv-abc", "repeat0_fold2")
    assert (fold.logger.wandb.group, fold.logger.wandb.name, fold.logger.wandb.job_type) == (
        "cv-abc",
        "repeat0_fold2",
        "cv-fold",
    )
    assert cfg.logger.wandb.group is None  # the CV's own config is untouched
    assert "wandb" not in fold_config(_cfg(tiny_cohort, "logger=[csv]"), "cv-abc", "r").logger


def test_folds_are_shared_by_modality_selections_with_or_without_a_file(tiny_cohort, tmp_path):
    full = fold_plan(_cfg(tiny_cohort))
    ehr_only = fold_plan(_cfg(tiny_cohort, "modality=[ehr]"))
    for a, b in zip(full, ehr_only, strict=True):
        assert set(b["test"]) <= set(a["test"]) and set(b["train"]) <= set(a["train"])
    # a one-modality run may write the file first: it holds every patient, so the full config can read it
    path = tmp_path / "folds.csv"
    fold_plan(_cfg(tiny_cohort, "modality=[ehr]", f"cv.splits_file={path}"))
    assert set(pd.read_csv(path)["patient_id"]) == set(pd.read_csv(tiny_cohort)["patient_id"])
    assert fold_plan(_cfg(tiny_cohort, f"cv.splits_file={path}")) == full
