"""The patient pages rendered from small synthetic tables: every value escaped, nothing external, each
section present or saying why not, uncertainty and survival shown as the table has them."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from fusion.report.patient_pages import HeadInfo, write_patient_pages
from fusion.report.patient_pages.explanations import Explanations, ExplanationsError
from fusion.report.patient_pages.html import nested, text
from fusion.report.patient_pages.predictions import NO_UNCERTAINTY
from tests.integration.patient_pages_tables import HEADS, IDS, TRICKY_ID, page_inputs, predictions


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pages")
    written = write_patient_pages(tmp / "report", **page_inputs(tmp))
    return {p.name: p.read_text(encoding="utf-8") for p in written}


def test_one_page_per_patient_and_an_index_linking_them(pages):
    assert sorted(pages) == ["P0001.html", "P0003.html", "P_b___2_.html", "index.html"]
    links = re.findall(r'href="([^"]+)"', pages["index.html"])
    assert sorted(link for link in links if link != "data:,") == ["P0001.html", "P0003.html", "P_b___2_.html"]
    assert all('<a href="index.html">' in html for name, html in pages.items() if name != "index.html")


def test_every_value_is_escaped(pages):
    for html in pages.values():
        assert TRICKY_ID not in html and "<script" not in html and "<i>R0202" not in html
    tricky = pages["P_b___2_.html"]
    assert "Patient P&lt;b&gt;&amp;&#x27;2&quot;" in tricky
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in tricky  # a provenance value
    assert "&lt;i&gt;R0202&lt;/i&gt;" in tricky  # a neighbour id
    assert "&lt;IV&gt;" in pages["P0001.html"]  # a feature value


def test_pages_are_self_contained(pages):
    for html in pages.values():
        assert not re.search(r'(src|href)="(https?:|//)', html)
        assert all(
            src.startswith("data:image/png;base64,") for src in re.findall(r'<img[^>]* src="([^"]+)"', html)
        )
        assert "Research use only — not for clinical decision-making" in html


def test_predictions_survival_and_uncertainty_as_the_table_has_them(pages):
    first = pages["P0001.html"]
    assert "most likely" in first and "50.0%" in first
    assert "12 months" in first and "24 months" in first and "13.9 months" in first
    assert "response_prob_lower" in first and NO_UNCERTAINTY not in first
    assert "not reached" in pages["P_b___2_.html"]
    assert "was in the model's training split</b>" in pages["P_b___2_.html"]
    assert "No prediction for this patient" in pages["P0003.html"]
    assert "No similar patients for this patient" in pages["P0003.html"]  # its one empty neighbours row
    assert "Kaplan–Meier" in first and "n_neighbours" in first


def test_each_missing_input_is_said_not_skipped(tmp_path):
    bare = predictions()[
        ["patient_id", "grade_prob_G1", "grade_prob_G2", "grade_prob_G3", "risk", "response_prob"]
    ]
    written = write_patient_pages(tmp_path, bare, pd.DataFrame(columns=["patient_id"]), {}, HEADS)
    html = written[0].read_text()
    for said in (
        NO_UNCERTAINTY.split(" (")[0],
        "The predictions table has no survival probabilities or median",
        "No survival curve",
        "Which modalities this patient has was not recorded",
        "No explanations were given",
        "Similar patients were not searched",
        "No provenance was recorded",
    ):
        assert said in html, said
    assert "<img" not in html


def test_the_time_unit_is_said_when_recorded_and_when_not(tmp_path):
    heads = [HeadInfo("survival", "survival", ("risk",))]
    written = write_patient_pages(tmp_path, predictions(), pd.DataFrame(), {}, heads)
    assert "12 time units" in written[0].read_text() and "does not record it" in written[0].read_text()


def test_columns_no_head_claims_are_shown_as_they_are(tmp_path):
    table = predictions().assign(survival_time_unit="months")
    html = write_patient_pages(tmp_path, table, pd.DataFrame(), {}, HEADS[1:2])[0].read_text()
    other = html.split("Other columns", 1)[1]
    assert "grade_prob_G1" in other and "survival_time_unit" in other and "model_id" not in other
    assert "survival_prob_12" not in other and "response_prob_lower" in other  # no response head here


def test_maps_belong_to_the_longest_id_they_start_with(tmp_path):
    (tmp_path / "tiles").mkdir()
    for name in ("P1.png", "P1_grade.png", "P1_b.png", "P1_b_grade.png", "P2.png"):
        (tmp_path / "tiles" / name).write_bytes(b"png")
    maps = Explanations.load(tmp_path, ["P1", "P1_b"]).maps
    assert [p.name for p in maps["P1"]] == ["P1.png", "P1_grade.png"]
    assert [p.name for p in maps["P1_b"]] == ["P1_b.png", "P1_b_grade.png"]


def test_a_bad_explanations_folder_is_one_clear_error(tmp_path):
    with pytest.raises(ExplanationsError, match="does not exist"):
        Explanations.load(tmp_path / "nope", IDS)
    pd.DataFrame({"patient_id": ["P1"], "head": ["grade"]}).to_csv(tmp_path / "features.csv", index=False)
    with pytest.raises(ExplanationsError, match=r"features.csv has no column target"):
        Explanations.load(tmp_path, IDS)


def test_nested_provenance_and_cell_text():
    html = nested({"versions": {"torch": "2.13"}, "files": [{"name": "a&b"}], "n": [1, 2], "git": None})
    assert "<dt>torch</dt><dd>2.13</dd>" in html and "a&amp;b" in html and "1, 2" in html and "–" in html
    assert [text(v) for v in (0.123456, 3.0, float("nan"), True, None, "x")] == [
        "0.123",
        "3",
        "–",
        "yes",
        "–",
        "x",
    ]
