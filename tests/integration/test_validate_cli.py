"""fusion-validate reports every cohort problem at once, naming patient, column and file."""

from __future__ import annotations

import pandas as pd

from tests.integration.conftest import run_module, tiny_overrides


def _validate(manifest, *extra):
    return run_module(
        "fusion.cli.validate",
        f"data.manifest={manifest}",
        f"hydra.run.dir={manifest.parent / 'validate_run'}",
        *tiny_overrides(*extra),
    )


def test_clean_cohort_passes(tiny_cohort):
    result = _validate(tiny_cohort)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no problems found" in result.stdout


def test_every_problem_is_listed_with_patient_column_and_file(cohort_copy):
    manifest = pd.read_csv(cohort_copy)
    ids = manifest["patient_id"].tolist()
    manifest.loc[0, "ct"] = "ct/does_not_exist"
    manifest.loc[1, "survival_time"] = -3.0
    manifest.loc[1, "survival_event"] = 1
    manifest.loc[2, "grade"] = 7
    pet = manifest["pet"].dropna().index[0]
    (cohort_copy.parent / manifest.loc[pet, "pet"]).write_bytes(b"not a nifti at all")
    manifest.to_csv(cohort_copy, index=False)

    result = _validate(cohort_copy)
    assert result.returncode == 1
    out = result.stdout
    assert f"patient '{ids[0]}', column 'ct'" in out and "does_not_exist" in out
    assert f"patient '{ids[1]}'" in out and "> 0" in out
    assert f"patient '{ids[2]}', column 'grade'" in out
    assert f"patient '{ids[pet]}', column 'pet'" in out
    assert "4 problem(s)" in out


def test_duplicate_ids_are_reported(cohort_copy):
    manifest = pd.read_csv(cohort_copy)
    manifest.loc[3, "patient_id"] = manifest.loc[4, "patient_id"]
    manifest.to_csv(cohort_copy, index=False)
    result = _validate(cohort_copy)
    assert result.returncode == 1
    assert "duplicate id" in result.stdout + result.stderr


def test_training_stops_before_epoch_one_on_broken_input(cohort_copy):
    manifest = pd.read_csv(cohort_copy)
    manifest.loc[0, "histology"] = "histology/nowhere"
    manifest.to_csv(cohort_copy, index=False)
    result = run_module(
        "fusion.cli.train",
        f"data.manifest={cohort_copy}",
        f"hydra.run.dir={cohort_copy.parent / 'run'}",
        *tiny_overrides(),
    )
    assert result.returncode == 1
    assert f"patient '{manifest.loc[0, 'patient_id']}', column 'histology'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (cohort_copy.parent / "run" / "checkpoints").exists()
