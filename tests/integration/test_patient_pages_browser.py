"""The patient pages in a real browser: headless Chromium (the Debian package; .ci/run installs it)
renders every page of a small synthetic run and finds the banner, visible text, every image decoded and
no console error. Skipped when no Chromium is installed, except under FUSION_REQUIRE_CHROMIUM=1 (CI)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusion.report.patient_pages import write_patient_pages
from tests.integration.headless_chromium import Chromium, find_chromium
from tests.integration.patient_pages_tables import page_inputs

REQUIRE = "FUSION_REQUIRE_CHROMIUM"


@pytest.fixture(scope="module")
def browser() -> Iterator[Chromium]:
    binary = find_chromium()
    if binary is None:
        reason = "no chromium on PATH (apt-get install chromium; .ci/run installs it)"
        if os.environ.get(REQUIRE):
            pytest.fail(f"{REQUIRE} is set but {reason}")
        pytest.skip(reason)
    with Chromium(binary) as chromium:
        yield chromium


def test_every_page_shows_banner_text_and_images_without_console_errors(
    browser: Chromium, tmp_path: Path
) -> None:
    pages = write_patient_pages(tmp_path / "report", **page_inputs(tmp_path))
    assert [p.name for p in pages][-1] == "index.html" and len(pages) == 4
    for page in pages:
        result = browser.load(page)
        assert "Research use only" in result.banner, page.name
        assert len(result.text.strip()) > 200, f"{page.name} looks blank: {result.text!r}"
        assert "Provenance" in result.text, page.name
        broken = [image for image in result.images if not image["complete"] or image["width"] <= 0]
        assert not broken, f"{page.name}: images that did not load: {broken}"
        assert result.errors == [], f"{page.name}: {result.errors}"
    first = browser.load(pages[0])
    # the survival curve, two explanation maps and the similar patients' Kaplan–Meier curve
    assert len(first.images) == 4
    assert "Patient P0001" in first.text and "Similar patients" in first.text


def test_the_checks_see_a_broken_page(browser: Chromium, tmp_path: Path) -> None:
    """The browser checks are not vacuous: a missing image and a console error are both reported."""
    page = tmp_path / "broken.html"
    page.write_text(
        '<html><body><p>text</p><img src="missing.png" alt="x"><script>console.error("boom")</script>'
    )
    result = browser.load(page)
    assert result.images[0]["width"] == 0
    assert any("missing.png" in e for e in result.errors) and any("boom" in e for e in result.errors)
