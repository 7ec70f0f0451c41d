"""Tables as users save them: European Excel CSVs, BOMs, stray spaces in headers, Excel workbooks."""

from __future__ import annotations

import pandas as pd
import pytest

from fusion.data.cohort import Cohort, CohortError, read_table
from fusion.errors import FusionError
from fusion.io.tables import TableError, read_header


def test_european_excel_csv_semicolon_decimal_comma_cp1252(tmp_path):
    path = tmp_path / "manifest.csv"
    text = "patient_id;site;survival_time;note\r\n007;Montréal;12,5;ok\r\n010;Orléans;3,25;\r\n"
    path.write_bytes(text.encode("cp1252"))
    with pytest.warns(UserWarning, match="not UTF-8: read as cp1252"):
        frame = read_table(path)
    assert list(frame.columns) == ["patient_id", "site", "survival_time", "note"]
    assert frame["patient_id"].tolist() == ["007", "010"]
    assert frame["site"].tolist() == ["Montréal", "Orléans"]
    assert frame["survival_time"].tolist() == [12.5, 3.25]


def test_utf8_with_bom_and_a_tab_separated_csv(tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes("patient_id,site\n007,Montréal\n".encode("utf-8-sig"))
    assert read_table(bom).columns[0] == "patient_id"
    assert read_table(bom)["site"].tolist() == ["Montréal"]
    tabs = tmp_path / "tabs.csv"
    tabs.write_text("patient_id\tage\n007\t61.5\n")
    assert read_table(tabs).to_dict("list") == {"patient_id": ["007"], "age": [61.5]}


def test_spaces_around_column_names_are_stripped(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text(" patient_id , site \nA,x\n")
    cohort = Cohort.load(path)
    assert cohort.patient_ids == ["A"] and cohort.site() == {"A": "x"}
    assert read_header(path) == ["patient_id", "site"]


@pytest.mark.parametrize("header", ["PatientID", "Patient ID", "patientid", "patient-id"])
def test_a_near_miss_id_header_lists_the_columns_and_suggests_the_rename(tmp_path, header):
    path = tmp_path / "manifest.csv"
    path.write_text(f"{header},site,grade\nA,x,1\n")
    with pytest.raises(CohortError) as err:
        Cohort.load(path)
    text = str(err.value)
    assert "required column is absent" in text
    assert f"columns found: '{header}', 'site', 'grade'" in text
    assert f"did you mean '{header}'? rename it to patient_id" in text


def test_no_close_name_lists_the_columns_only(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text("site,grade\nx,1\n")
    with pytest.raises(CohortError, match="columns found: 'site', 'grade'") as err:
        Cohort.load(path)
    assert "did you mean" not in str(err.value)


def test_a_table_with_a_near_miss_id_header_is_named_too(tmp_path):
    (tmp_path / "manifest.csv").write_text("patient_id\nA\n")
    (tmp_path / "ehr.csv").write_text("Patient_ID;age\nA;61,5\n")
    cohort = Cohort.load(tmp_path / "manifest.csv")
    with pytest.raises(CohortError, match="did you mean 'Patient_ID'") as err:
        cohort.table(tmp_path / "ehr.csv")
    assert "ehr.csv" in str(err.value)


@pytest.mark.parametrize("suffix", [".xlsx", ".xls"])
def test_excel_is_refused_in_one_line_saying_how_to_save_as_csv(tmp_path, suffix):
    path = tmp_path / f"manifest{suffix}"
    path.write_bytes(b"PK\x03\x04 not really a workbook")
    with pytest.raises(TableError) as err:
        read_table(path)
    assert isinstance(err.value, FusionError)
    message = str(err.value)
    assert "\n" not in message and "Excel files are not read" in message and "CSV UTF-8" in message


def test_an_unknown_suffix_is_a_fusion_error(tmp_path):
    path = tmp_path / "manifest.txt"
    path.write_text("patient_id\nA\n")
    with pytest.raises(FusionError, match="unsupported format"):
        read_table(path)


def test_parquet_column_names_are_stripped(tmp_path):
    path = tmp_path / "ehr.parquet"
    pd.DataFrame({"patient_id ": ["007"], " age": [61]}).to_parquet(path)
    assert read_table(path).to_dict("list") == {"patient_id": ["007"], "age": [61]}
