"""Fresh-server direct URLs in a real browser: before anyone has opened the app (app.py has
never run on this server), /patient?patient=P00001 and /admin show the login form and no data;
then a therapist who logs in through /admin is refused and still sees no data."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import log_in, start_server

pytestmark = pytest.mark.browser
CODE = re.compile(r"P\d{5}")


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[str]:
    """A NEW server over a freshly seeded demo clinic, not yet visited by anyone."""
    from typer.testing import CliRunner

    from manage import app

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    result = CliRunner().invoke(app, ["seed-demo", "--db", url])
    assert result.exit_code == 0, result.output
    proc, base = start_server(url, tmp_path / "streamlit.log")
    try:
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _visible_text(page) -> str:  # type: ignore[no-untyped-def]
    # the login page a logged-out visit gets is plain HTML from the server (issue 14), not the app
    return page.locator("body").inner_text()


def test_direct_urls_on_a_fresh_server_show_only_the_login_form(fresh_server: str, page) -> None:  # type: ignore[no-untyped-def]
    for path in ("/patient?patient=P00001", "/admin"):
        page.goto(f"{fresh_server}{path}")
        page.get_by_role("button", name="Log in").wait_for()
        page.wait_for_timeout(1500)  # let any late element arrive before looking for leaks
        text = _visible_text(page)
        assert page.get_by_role("textbox", name="Username").count() == 1
        assert page.get_by_role("textbox", name="Password").count() == 1
        assert CODE.findall(text) == [], (path, text[:500])
        assert page.locator("[data-testid='stDataFrame'], .js-plotly-plot").count() == 0, path
        assert page.get_by_role("heading", name=re.compile("Patient P0|Admin")).count() == 0, path
        # nothing hidden in the DOM either, but the login form's "go back to" field: the URL asked
        # for, as typed (the same whether the patient exists or not)
        html = re.sub(r'name="next" value="[^"]*"', "", page.content())
        assert CODE.findall(html) == [], path


def test_a_therapist_at_admin_is_refused(fresh_server: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{fresh_server}/admin")
    log_in(page, "therapist.anna")
    page.get_by_text("This page is not part of your role").wait_for()
    assert page.locator("[data-testid='stDataFrame']").count() == 0
    assert page.get_by_role("heading", name="Admin").count() == 0
