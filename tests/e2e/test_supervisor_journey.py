"""The supervisor's journey in a real browser: caseload scan, a patient, the clinic meeting.

With ``ALLIANCE_SCREENSHOTS=DIR`` it also saves the pages as PNG (docs/img/caseload.png and
docs/img/clinic.png were made this way).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.e2e.conftest import log_in, settled_text

pytestmark = pytest.mark.browser
SHOTS = os.environ.get("ALLIANCE_SCREENSHOTS")


def _main(page) -> str:  # type: ignore[no-untyped-def]
    return page.locator("[data-testid='stMain']").inner_text()


def test_supervisor_scans_the_caseload_then_the_clinic_meeting(server: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server)
    log_in(page, "supervisor.sara")
    page.get_by_role("heading", name="Patients").wait_for()
    page.get_by_role("link", name="Caseload").click()  # in-app navigation keeps the session
    page.get_by_role("heading", name="Caseload").wait_for()
    page.locator("[data-testid='stDataFrame']").first.wait_for()

    # filter by therapist: only Ben's alerts remain
    page.locator("[data-testid='stMultiSelect']").filter(has_text="Therapist").locator("input").click()
    page.get_by_role("option", name="therapist.ben").click()
    page.keyboard.press("Escape")
    page.get_by_text(re.compile(r"alerts in team North, for \d+ patients")).wait_for()
    page.wait_for_timeout(1500)
    caption = page.get_by_text(re.compile(r"alerts in team North")).inner_text()
    assert re.match(r"\d+ of \d+ alerts", caption)
    if SHOTS:
        page.get_by_text("Show the alliance courses of up to 12 flagged patients").click()  # drawn on request
        page.locator(".js-plotly-plot").first.wait_for()
        page.screenshot(path=str(Path(SHOTS) / "caseload.png"), full_page=True)

    # open a patient in the same tab (the session, and so the login, carries on): Ben's unrepaired
    # rupture P00027 (sample_data/CATALOG.md)
    page.locator("[data-testid='stSelectbox']").filter(has_text="Open a patient").click()
    page.keyboard.type("P00027")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Open patient").click()
    page.get_by_role("heading", name="Patient P00027").wait_for()
    assert page.get_by_role("button", name="Log in").count() == 0

    # the clinic meeting in meeting mode: no patient code anywhere
    page.get_by_role("link", name="Clinic meeting").click()
    page.get_by_role("heading", name="Clinic meeting").wait_for()
    page.get_by_text("Meeting mode", exact=True).click()
    page.get_by_text(re.compile("Meeting mode: no patient codes")).wait_for()
    page.get_by_text("What the within-person estimate means").wait_for()
    page.locator(".js-plotly-plot").nth(2).wait_for()
    page.wait_for_timeout(1000)
    text = page.locator("body").inner_text()
    assert not re.search(r"P\d{5}", text), re.search(r"P\d{5}", text)
    for name in ("therapist.anna", "therapist.ben", "therapist.carla"):
        assert name not in text
    assert "≤10" in text
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / "clinic.png"), full_page=True)

    # the meeting's figures download as PNG, drawn by the server's chart browser
    settled_text(page)
    with page.expect_download(timeout=150_000) as info:
        page.get_by_role("button", name="Forest plot (PNG)").click()
    assert info.value.suggested_filename == "forest-plot.png"
    png = Path(info.value.path()).read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
