"""Main journeys in a real browser against a real server."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import log_in, settled_text

pytestmark = pytest.mark.browser


def test_therapist_logs_in_and_sees_a_chart(server: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server)
    page.get_by_role("button", name="Log in").wait_for()
    assert page.get_by_text("demo-password-2026").count() >= 1  # demo mode lists the accounts
    log_in(page, "therapist.anna")
    page.get_by_role("heading", name="My patients").wait_for()
    page.get_by_role("link", name="Patient", exact=True).click()
    page.get_by_role("combobox").first.click()
    page.keyboard.type("P00001")
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Patient P00001").wait_for()
    page.locator(".js-plotly-plot .main-svg").first.wait_for()
    assert page.locator(".js-plotly-plot .scatterlayer .trace").count() > 4


def test_deep_link_on_a_fresh_session_asks_to_log_in_then_opens_the_patient(server: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{server}/patient?patient=P00001")
    page.get_by_role("button", name="Log in").wait_for()
    assert page.get_by_role("heading", name=re.compile("Patient P0")).count() == 0
    log_in(page, "therapist.anna")
    page.get_by_role("heading", name="Patient P00001").wait_for()


def test_forbidden_patient_answers_like_a_missing_one(server: str, page) -> None:  # type: ignore[no-untyped-def]
    answers = []
    page.goto(server)
    log_in(page, "therapist.anna")  # once: the login lasts across page loads (issue 14)
    page.get_by_role("heading", name="My patients").wait_for()
    for code in ("P00002", "P99999"):  # P00002 is on another therapist's caseload (sample_data/CATALOG.md)
        page.goto(f"{server}/patient?patient={code}")
        page.get_by_text("No such patient").wait_for()
        page.get_by_role("button", name="Log in").wait_for(state="detached")
        page.get_by_text("Patient", exact=True).first.wait_for()
        answers.append(settled_text(page))
        assert page.locator(".js-plotly-plot").count() == 0
    assert answers[0] == answers[1]
