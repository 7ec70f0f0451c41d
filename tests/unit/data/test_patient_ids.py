"""Patient ids are text, exactly as written, everywhere a table is joined to the manifest (issue 16).

A number-parsed id turned `007` into `7`, made `001` and `1` duplicates, and silently cost patients
their genomics and EHR when one table's ids were read as text and another's as numbers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fusion.data.cohort import Cohort, CohortError
from fusion.data.records import collect_records
from fusion.data.splits import read_fold_file
from fusion.data.synthetic.oracle import oracle_metrics
from fusion.io.genomic import read_maf, read_matrix
from fusion.modalities.ehr import EHRModality
from fusion.modalities.genomics import GenomicsModality

#: numeric-looking ids with leading zeros, and one alphanumeric id
IDS = ["007", "7", "001", "1", "010", "P11"]


def write_manifest(root: Path, ids: list[str], **columns: list[object]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "manifest.csv"
    pd.DataFrame({"patient_id": ids, **columns}).to_csv(path, index=False)
    return path


def test_ids_are_read_as_written_and_leading_zeros_are_no_duplicates(tmp_path):
    path = write_manifest(tmp_path, IDS)
    text = path.read_text()
    assert "007" in text  # the file really holds the leading zeros
    cohort = Cohort.load(path)
    assert cohort.patient_ids == IDS


def test_surrounding_whitespace_is_stripped_and_na_is_an_id(tmp_path):
    (tmp_path / "manifest.csv").write_text("patient_id,site\n 007 ,a\nNA,b\n")
    assert Cohort.load(tmp_path / "manifest.csv").patient_ids == ["007", "NA"]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_every_table_format_joins_on_the_text_id(tmp_path, suffix):
    cohort = Cohort.load(write_manifest(tmp_path, IDS))
    table = pd.DataFrame({"patient_id": IDS, "age": [50, 51, 52, 53, 54, 55]})
    path = tmp_path / f"ehr{suffix}"
    if suffix == ".parquet":
        table.to_parquet(path)
    else:
        table.to_csv(path, index=False, sep="\t" if suffix == ".tsv" else ",")
    frame = cohort.table(path)
    assert list(frame.index) == IDS
    assert frame.loc["007", "age"] == 50 and frame.loc["7", "age"] == 51


def test_a_parquet_table_with_integer_ids_joins_their_text(tmp_path):
    cohort = Cohort.load(write_manifest(tmp_path, ["7", "8"]))
    pd.DataFrame({"patient_id": [7, 8], "g1": [1.0, 2.0]}).to_parquet(tmp_path / "genomics.parquet")
    assert list(cohort.table(tmp_path / "genomics.parquet").index) == ["7", "8"]


def test_sixty_patients_keep_their_genomics_and_ehr(tmp_path):
    """The reported case: numeric-looking ids plus one alphanumeric one; no patient may lose a table row."""
    ids = [f"{i:03d}" for i in range(1, 60)] + ["X60"]
    write_manifest(tmp_path, ids, grade=[1 + i % 3 for i in range(60)])
    rng = np.random.default_rng(0)
    pd.DataFrame({"patient_id": ids, **{f"G{g}": rng.random(60) for g in range(4)}}).to_csv(
        tmp_path / "genomics.csv", index=False
    )
    pd.DataFrame({"patient_id": ids, "age": rng.integers(30, 80, 60)}).to_csv(
        tmp_path / "ehr.csv", index=False
    )
    cohort = Cohort.load(tmp_path / "manifest.csv")
    modalities = {"genomics": GenomicsModality(embed_dim=4), "ehr": EHRModality(embed_dim=4)}
    records, problems = collect_records(cohort, modalities, {})
    assert problems == []
    assert [r.patient_id for r in records][:2] == ["001", "002"]
    assert all(r.refs["genomics"] is not None and r.refs["ehr"] is not None for r in records)


def test_genes_by_patients_header_ids_keep_their_zeros(tmp_path):
    path = tmp_path / "rna.csv"
    path.write_text("gene,007,010\nTP53,1.5,2.5\n")
    assert list(read_matrix(path, "genes_by_patients").index) == ["007", "010"]


def test_maf_barcodes_map_to_text_ids(tmp_path):
    path = tmp_path / "mutations.maf"
    path.write_text(
        "Hugo_Symbol\tTumor_Sample_Barcode\tVariant_Classification\n"
        "TP53\t007-T1\tMissense_Mutation\nKRAS\t010-T1\tNonsense_Mutation\n"
    )
    frame, sequenced = read_maf(path, sample_to_patient=r"^(\d+)-")
    assert sequenced == {"007", "010"}
    assert frame.loc["007", "TP53"] == 1.0


def test_split_files_read_ids_as_text(tmp_path):
    path = tmp_path / "folds.csv"
    rows = [("007", 0, 0, "test"), ("7", 0, 0, "train"), ("010", 0, 0, "val")]
    pd.DataFrame(rows, columns=["patient_id", "repeat", "fold", "role"]).to_csv(path, index=False)
    plan = read_fold_file(path, ["007", "7", "010"])
    assert plan[0]["test"] == ["007"] and plan[0]["train"] == ["7"]


def test_oracle_joins_truth_on_text_ids(tmp_path):
    ids = ["001", "002", "003", "004"]
    write_manifest(
        tmp_path,
        ids,
        grade=[1, 2, 3, 1],
        survival_time=[1.0, 2.0, 3.0, 4.0],
        survival_event=[1, 1, 0, 1],
        response=[0, 1, 0, 1],
    )
    truth = pd.DataFrame(
        {
            "patient_id": ids,
            "grade_prob_0": [0.8, 0.1, 0.1, 0.7],
            "grade_prob_1": [0.1, 0.8, 0.1, 0.2],
            "grade_prob_2": [0.1, 0.1, 0.8, 0.1],
            "true_risk": [4.0, 3.0, 2.0, 1.0],
            "response_prob": [0.1, 0.9, 0.2, 0.8],
        }
    )
    truth.to_csv(tmp_path / "truth.csv", index=False)
    metrics = oracle_metrics(tmp_path, patient_ids=ids)
    assert metrics["oracle/response_auroc"] == 1.0


# ---------------------------------------------------------------- the join check (case 2)
def test_a_table_keyed_differently_is_an_error_naming_ids_and_closest_manifest_ids(tmp_path):
    ids = [f"P{i:03d}" for i in range(20)]
    cohort = Cohort.load(write_manifest(tmp_path, ids))
    pd.DataFrame({"patient_id": [f"p-{i:03d}" for i in range(20)], "x": range(20)}).to_csv(
        tmp_path / "ehr.csv", index=False
    )
    with pytest.raises(CohortError) as err:
        cohort.table(tmp_path / "ehr.csv")
    text = str(err.value)
    assert "20 of 20 ids match no manifest patient" in text
    assert "'p-000' (closest manifest id 'P000')" in text and "15 more" in text


def test_a_keyed_differently_table_is_a_problem_of_collect_records(tmp_path):
    cohort = Cohort.load(write_manifest(tmp_path, ["A1", "A2", "A3"]))
    pd.DataFrame({"patient_id": ["1", "2", "3"], "G1": [1.0, 2.0, 3.0]}).to_csv(
        tmp_path / "genomics.csv", index=False
    )
    _, problems = collect_records(cohort, {"genomics": GenomicsModality(embed_dim=4)}, {})
    assert len(problems) == 1 and "3 of 3 ids match no manifest patient" in str(problems[0])
    assert "genomics.csv" in str(problems[0])


def test_a_few_unmatched_ids_are_a_warning_with_their_count(tmp_path):
    ids = [f"P{i}" for i in range(10)]
    cohort = Cohort.load(write_manifest(tmp_path, ids))
    pd.DataFrame({"patient_id": [*ids[:8], "Q1", "Q2"], "x": range(10)}).to_csv(
        tmp_path / "ehr.csv", index=False
    )
    with pytest.warns(UserWarning, match="2 of 10 ids match no manifest patient"):
        frame = cohort.table(tmp_path / "ehr.csv")
    assert len(frame) == 10


def test_a_superset_table_is_only_warned(tmp_path):
    """A whole project's table for a subset cohort finds every manifest patient: not an error."""
    cohort = Cohort.load(write_manifest(tmp_path, ["P1", "P2"]))
    pd.DataFrame({"patient_id": [f"P{i}" for i in range(1, 11)], "x": range(10)}).to_csv(
        tmp_path / "ehr.csv", index=False
    )
    with pytest.warns(UserWarning, match="8 of 10 ids match no manifest patient"):
        cohort.table(tmp_path / "ehr.csv")


def test_a_keyed_differently_maf_is_an_error(tmp_path):
    cohort = Cohort.load(write_manifest(tmp_path, ["TCGA-AA-0001", "TCGA-AA-0002"]))
    (tmp_path / "mutations.maf").write_text(
        "Hugo_Symbol\tTumor_Sample_Barcode\nTP53\tAA-0001-01\nKRAS\tAA-0002-01\n"
    )
    mod = GenomicsModality(name="mutations", format="maf", value_type="binary", embed_dim=4)
    with pytest.raises(CohortError, match="closest manifest id"):
        mod.gather(cohort)


# ---------------------------------------------------------------- lenient cohort (case 3)
def test_strict_cohort_refuses_duplicates_lenient_keeps_the_first_row(tmp_path):
    path = write_manifest(tmp_path, ["A", "B", "A", ""], site=["x", "y", "z", "w"])
    with pytest.raises(CohortError, match="duplicate id"):
        Cohort.load(path)
    cohort = Cohort.load(path, strict=False)
    assert cohort.patient_ids == ["A", "B"]
    assert cohort.site() == {"A": "x", "B": "y"}
    assert [p.message for p in cohort.id_problems] == [
        "row 5 has an empty patient_id",
        "duplicate id (rows [2, 4])",
    ]
