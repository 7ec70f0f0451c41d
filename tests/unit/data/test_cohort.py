import pandas as pd
import pytest

from fusion.data.cohort import Cohort, CohortError


def _write(tmp_path, frame, name="manifest.csv"):
    path = tmp_path / name
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False, sep="\t" if name.endswith(".tsv") else ",")
    return path


@pytest.mark.parametrize("name", ["manifest.csv", "manifest.tsv", "manifest.parquet"])
def test_manifest_formats_and_relative_paths(tmp_path, name):
    frame = pd.DataFrame({"patient_id": ["A", "B"], "ct": ["scans/a", None], "site": ["x", "y"]})
    cohort = Cohort.load(_write(tmp_path, frame, name))
    assert cohort.patient_ids == ["A", "B"]
    assert cohort.paths("ct") == {"A": tmp_path / "scans/a", "B": None}
    assert cohort.paths("absent_column") == {"A": None, "B": None}
    assert cohort.site() == {"A": "x", "B": "y"}


def test_duplicate_and_empty_ids_are_all_reported(tmp_path):
    frame = pd.DataFrame({"patient_id": ["A", "B", "A", None]})
    with pytest.raises(CohortError) as err:
        Cohort.load(_write(tmp_path, frame))
    text = str(err.value)
    assert "patient 'A'" in text and "duplicate id (rows [2, 4])" in text
    assert "row 5 has an empty patient_id" in text


def test_missing_patient_id_column(tmp_path):
    with pytest.raises(CohortError, match="required column is absent"):
        Cohort.load(_write(tmp_path, pd.DataFrame({"id": ["A"]})))


def test_numeric_ids_are_strings_and_tables_are_found_beside_the_manifest(tmp_path):
    cohort = Cohort.load(_write(tmp_path, pd.DataFrame({"patient_id": [101, 102]})))
    _write(tmp_path, pd.DataFrame({"patient_id": [102], "g1": [1.5]}), "genomics.tsv")
    assert cohort.patient_ids == ["101", "102"]
    path = cohort.find_table("genomics")
    assert path == tmp_path / "genomics.tsv"
    assert cohort.table(path).loc["102", "g1"] == 1.5
    assert cohort.find_table("ehr") is None
    assert cohort.find_table("ehr", "other/ehr.csv") == tmp_path / "other/ehr.csv"


def test_duplicate_ids_in_a_table_name_the_table(tmp_path):
    cohort = Cohort.load(_write(tmp_path, pd.DataFrame({"patient_id": ["A"]})))
    table = _write(tmp_path, pd.DataFrame({"patient_id": ["A", "A"], "x": [1, 2]}), "ehr.csv")
    with pytest.raises(CohortError, match="ehr.csv"):
        cohort.table(table)
