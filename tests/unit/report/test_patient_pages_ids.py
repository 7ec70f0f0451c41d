"""Patient ids as page file names: path separators refused, other characters made safe, clashes refused."""

from __future__ import annotations

import pytest

from fusion.errors import FusionError
from fusion.report.patient_pages import PatientIdError, page_stem
from fusion.report.patient_pages.ids import page_stems


@pytest.mark.parametrize("pid", ["../etc/passwd", "a/b", "a\\b", "", ".", "..", "a\0b"])
def test_an_id_that_could_leave_the_folder_is_refused(pid):
    with pytest.raises(PatientIdError, match="cannot name a page file") as err:
        page_stem(pid)
    assert isinstance(err.value, FusionError) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("pid", "stem"),
    [
        ("P0007", "P0007"),
        ("TCGA-AB-1234.01", "TCGA-AB-1234.01"),
        ("a b:c<d>", "a_b_c_d_"),
        (".hidden", "_hidden"),
    ],
)
def test_other_characters_become_underscores(pid, stem):
    assert page_stem(pid) == stem


def test_two_ids_sharing_a_file_are_refused_also_by_case():
    with pytest.raises(PatientIdError, match="'P 1'.*file of.*'P_1'"):
        page_stems(["P_1", "P 1"])
    with pytest.raises(PatientIdError, match="'p1'"):
        page_stems(["P1", "p1"])  # one file on a case-insensitive file system


def test_an_id_that_would_overwrite_the_index_is_refused():
    with pytest.raises(PatientIdError, match="index page"):
        page_stems(["P1", "index"])


def test_a_very_long_id_is_refused():
    with pytest.raises(PatientIdError, match="longer than"):
        page_stem("P" * 300)
