"""fusion-validate reports every cohort problem at once, naming patient, column and file."""

from __future__ import annotations

import pandas as pd

from tests.integration.conftest import one_error_line, run_module, tiny_overrides


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


def test_a_duplicate_id_hides_no_other_problem(cohort_copy):
    """Issue 16: a duplicate id, a missing file, a truncated NIfTI, a negative survival time and a
    non-numeric genomic value, planted at once: fusion-validate lists all five."""
    root = cohort_copy.parent
    manifest = pd.read_csv(cohort_copy, dtype={"patient_id": str})
    genomics = pd.read_csv(root / "genomics.csv", dtype={"patient_id": str})
    ids = manifest["patient_id"].tolist()
    manifest.loc[3, "patient_id"] = ids[4]  # duplicate id (rows 5 and 6 of the file)
    manifest.loc[0, "ct"] = "ct/does_not_exist"
    manifest.loc[1, "survival_time"] = -3.0
    manifest.loc[1, "survival_event"] = 1
    pet = next(i for i in manifest["pet"].dropna().index if i not in (0, 1, 3, 4))
    nifti = root / manifest.loc[pet, "pet"]
    nifti.write_bytes(nifti.read_bytes()[: nifti.stat().st_size // 2])
    gene_row = next(i for i, p in genomics["patient_id"].items() if p not in (ids[3], ids[4]))
    gene = genomics.columns[1]
    genomics[gene] = genomics[gene].astype(object)
    genomics.loc[gene_row, gene] = "n/a?"
    manifest.to_csv(cohort_copy, index=False)
    genomics.to_csv(root / "genomics.csv", index=False)

    result = _validate(cohort_copy)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert f"patient '{ids[4]}', column 'patient_id'" in out and "duplicate id (rows [5, 6])" in out
    assert f"patient '{ids[0]}', column 'ct'" in out and "does_not_exist" in out
    assert f"patient '{ids[1]}'" in out and "> 0" in out
    assert f"patient '{ids[pet]}', column 'pet'" in out
    assert f"patient '{genomics.loc[gene_row, 'patient_id']}'" in out and "n/a?" in out
    assert "5 problem(s)" in out


def test_an_excel_manifest_is_one_line_without_traceback(tmp_path):
    workbook = tmp_path / "x.xlsx"
    workbook.write_bytes(b"PK\x03\x04 an Excel workbook")
    result = run_module(
        "fusion.cli.validate", f"data.manifest={workbook}", f"hydra.run.dir={tmp_path / 'run'}"
    )
    error = one_error_line(result)
    assert "Excel files are not read" in error and "CSV UTF-8" in error


def test_a_table_keyed_differently_is_listed_by_fusion_validate(cohort_copy):
    ehr = pd.read_csv(cohort_copy.parent / "ehr.csv", dtype={"patient_id": str})
    ehr["patient_id"] = ehr["patient_id"].str.lower()  # P0001 -> p0001
    ehr.to_csv(cohort_copy.parent / "ehr.csv", index=False)
    result = _validate(cohort_copy, "modality=[ehr]", "deep=false")
    assert result.returncode == 1
    assert f"{len(ehr)} of {len(ehr)} ids match no manifest patient" in result.stdout
    first = sorted(ehr["patient_id"])[0]
    assert f"'{first}' (closest manifest id '{first.upper()}')" in result.stdout


def _zero_padded_ids(manifest_path):
    """Rename P0001.. to 0001.. in every table of the cohort, and one patient without genomics to
    X...: a reader that guesses types reads the manifest's ids as text (it has the X) and the genomics
    table's as numbers (0001 -> 1), and the two join nothing."""
    root = manifest_path.parent
    manifest = pd.read_csv(manifest_path, dtype={"patient_id": str})
    genomics = set(pd.read_csv(root / "genomics.csv", dtype={"patient_id": str})["patient_id"])
    new = {p: p[1:] for p in manifest["patient_id"]}
    odd = next(p for p in manifest["patient_id"] if p not in genomics)
    new[odd] = "X" + odd[1:]
    for name in ("manifest.csv", "ehr.csv", "genomics.csv", "truth.csv"):
        table = pd.read_csv(root / name, dtype={"patient_id": str})
        table["patient_id"] = table["patient_id"].map(new)
        table.to_csv(root / name, index=False)
    return new


def test_zero_padded_ids_keep_their_genomics_ehr_and_zeros(cohort_copy, tiny_cohort):
    before = _validate(tiny_cohort, "modality=[genomics,ehr]", "deep=false")
    new = _zero_padded_ids(cohort_copy)
    after = _validate(cohort_copy, "modality=[genomics,ehr]", "deep=false")
    assert after.returncode == 0, after.stdout + after.stderr
    assert "match no manifest patient" not in after.stdout + after.stderr
    present = [line for line in before.stdout.splitlines() if "modality" in line]
    assert present and present == [line for line in after.stdout.splitlines() if "modality" in line]

    run = cohort_copy.parent / "run"
    result = run_module(
        "fusion.cli.train",
        f"data.manifest={cohort_copy}",
        f"hydra.run.dir={run}",
        *tiny_overrides("modality=[genomics,ehr]", "trainer.max_epochs=1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    predictions = pd.read_csv(run / "predictions_test.csv", dtype={"patient_id": str})
    assert set(predictions["patient_id"]) <= set(new.values())
    assert all(p.startswith(("0", "X")) for p in predictions["patient_id"])
