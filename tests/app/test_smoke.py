"""AppTest smoke tests: every page, every role, and the login gate."""

from __future__ import annotations

import pytest

from tests.app.conftest import is_login_form, main_text

ROLES = {"therapist": "therapist.anna", "supervisor": "supervisor.sara", "admin": "admin"}
COMMON_PAGES = ["pages/my_patients.py", "pages/patient.py", "pages/how_flags_work.py"]


def test_logged_out_sees_only_the_login_form(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as(None).run()
    assert not at.exception
    assert is_login_form(at)
    assert not at.text_input  # the form is plain HTML that posts to /session/login (tests/app/test_login_routes.py)
    assert "demo-password-2026" in str(at.get("html")[0].proto)


@pytest.mark.parametrize("page", COMMON_PAGES)
def test_every_page_guards_itself_when_run_directly(app_as, page: str) -> None:  # type: ignore[no-untyped-def]
    at = app_as(None, script=page).run()
    assert not at.exception
    assert is_login_form(at)
    assert "Patient P0" not in main_text(at)


@pytest.mark.parametrize("role", list(ROLES))
@pytest.mark.parametrize("page", COMMON_PAGES)
def test_every_page_renders_for_every_role(app_as, role: str, page: str) -> None:  # type: ignore[no-untyped-def]
    at = app_as(ROLES[role])
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    assert main_text(at)


def test_patient_page_draws_the_course_for_an_own_patient(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as("therapist.anna")
    at.switch_page("pages/patient.py")
    at.query_params["patient"] = "P00001"
    at.run()
    assert not at.exception
    assert "Patient P00001" in main_text(at)
    assert at.get("plotly_chart")


@pytest.mark.parametrize("code", ["P00002", "P99999", "'; DROP TABLE scores; --"])
def test_forbidden_unknown_and_tampered_codes_answer_alike(app_as, code: str) -> None:  # type: ignore[no-untyped-def]
    at = app_as("therapist.anna")
    at.switch_page("pages/patient.py")
    at.query_params["patient"] = code
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "No such patient. Check the code, or choose a patient from the list; you can only open patients "
        "on your own caseload (supervisors: your team's)."]
    assert not at.get("plotly_chart")
