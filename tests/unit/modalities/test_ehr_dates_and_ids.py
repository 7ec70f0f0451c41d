"""Issue 17, case 2: EHR date and identifier columns are refused by name, before training.

A date column (ISO, dd/mm/yyyy, ISO datetime, or a parquet datetime dtype) or a text column with about
one distinct value per patient stops `gather` with a CohortError naming the column, the file and what
to do; `collect_records` (what fusion-validate and training run) reports it with every other problem.
The demo cohort's EHR table is not refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fusion.data.cohort import Cohort, CohortError
from fusion.data.records import collect_records
from fusion.data.synthetic.latent import sample_patients
from fusion.data.synthetic.tables import ehr_table
from fusion.modalities.ehr import EHRModality
from fusion.modalities.ehr_refusals import looks_like_date
from fusion.modalities.genomics import GenomicsModality

IDS = [f"p{i:02d}" for i in range(20)]


def clinical(**extra: list) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "patient_id": IDS,
            "age": rng.uniform(40, 80, len(IDS)).round(1),
            "stage": (["I", "II", "III", "IV"] * 5)[: len(IDS)],
        }
    )
    for name, values in extra.items():
        frame[name] = values
    return frame


def write_cohort(root: Path, frame: pd.DataFrame, suffix: str = ".csv") -> Cohort:
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"patient_id": IDS}).to_csv(root / "manifest.csv", index=False)
    if suffix == ".parquet":
        frame.to_parquet(root / "ehr.parquet", index=False)
    else:
        frame.to_csv(root / "ehr.csv", index=False)
    return Cohort.load(root / "manifest.csv")


def dates(fmt: str) -> list[str | None]:
    days = pd.date_range("2019-01-05", periods=len(IDS), freq="17D")
    values: list[str | None] = [d.strftime(fmt) for d in days]
    values[4] = None  # a missing date is still a date column
    return values


@pytest.mark.parametrize("fmt", ["%Y-%m-%d", "%d/%m/%Y", "%Y-%m-%dT%H:%M", "%d %b %Y"])
def test_a_date_column_is_refused_by_name(tmp_path, fmt):
    cohort = write_cohort(tmp_path, clinical(diagnosis_date=dates(fmt)))
    mod = EHRModality()
    with pytest.raises(CohortError) as err:
        mod.gather(cohort)
    text = str(err.value)
    assert "column 'diagnosis_date'" in text and str(tmp_path / "ehr.csv") in text
    assert "days_from_diagnosis" in text and "modality.ehr.exclude=[diagnosis_date]" in text
    assert "2019" not in text  # no value of the column is shown
    assert [p.column for p in err.value.problems] == ["diagnosis_date"]


def test_a_parquet_datetime_column_is_refused(tmp_path):
    frame = clinical(surgery=pd.to_datetime(dates("%Y-%m-%d")))
    assert pd.api.types.is_datetime64_any_dtype(frame["surgery"])
    with pytest.raises(CohortError, match="column 'surgery'"):
        EHRModality().gather(write_cohort(tmp_path, frame, ".parquet"))


def test_an_identifier_column_is_refused_and_exclude_lets_the_table_through(tmp_path):
    mrn = [f"MRN{1000 + i}" for i in range(len(IDS))]
    names = [f"Name {chr(65 + i)}" for i in range(len(IDS))]
    names[0] = names[1]  # 19 distinct of 20: still an identifier
    cohort = write_cohort(tmp_path, clinical(mrn=mrn, name=names))
    with pytest.raises(CohortError) as err:
        EHRModality().gather(cohort)
    assert [p.column for p in err.value.problems] == ["mrn", "name"]
    assert "identifier" in str(err.value) and "MRN10" not in str(err.value)
    mod = EHRModality(exclude=["mrn", "name"])
    refs = mod.gather(cohort)
    assert mod.cat_columns == ["stage"] and refs["p00"] is not None


def test_few_values_or_repeated_text_is_not_an_identifier(tmp_path):
    notes = [None] * len(IDS)
    notes[:5] = ["a", "b", "c", "d", "e"]  # distinct, but fewer than min_group values
    smoking = (["never", "former", "current"] * 7)[: len(IDS)]
    mod = EHRModality()
    mod.gather(write_cohort(tmp_path, clinical(notes=notes, smoking=smoking)))
    assert mod.cat_columns == ["stage", "notes", "smoking"]
    assert not looks_like_date("IIIa") and not looks_like_date("12.5") and looks_like_date("2021-03-04")


def test_collect_records_reports_the_refusal_with_every_other_problem(tmp_path):
    cohort = write_cohort(tmp_path, clinical(visit=dates("%Y-%m-%d")))
    genes = pd.DataFrame({"patient_id": IDS, "g0": ["1.5"] * 19 + ["high"]})
    genes.to_csv(tmp_path / "genomics.csv", index=False)
    modalities = {"ehr": EHRModality(), "genomics": GenomicsModality()}
    _, problems = collect_records(cohort, modalities, {})
    text = "\n".join(map(str, problems))
    assert "column 'visit'" in text and "dates" in text
    assert "patient 'p19'" in text and "high" in text  # the genomics problem is reported too


def test_the_demo_ehr_table_is_not_refused(tmp_path):
    """The quickstart's ehr.csv (the demo cohort's own generator) passes: no dates, no identifiers."""
    patients = sample_patients(200, 0, 0.1, 0.05)
    table = ehr_table(patients, 0)
    table.to_csv(tmp_path / "ehr.csv", index=False)
    patients[["patient_id"]].to_csv(tmp_path / "manifest.csv", index=False)
    mod = EHRModality()
    refs = mod.gather(Cohort.load(tmp_path / "manifest.csv"))
    assert sum(ref is not None for ref in refs.values()) == len(table) > 100
    assert set(mod.types.columns) == {"age", "sex", "stage", "ecog", "smoking", "ldh"}
