"""Markdown injection (issue 14's finding): a note, a name or a code that a user typed is shown as
typed on every screen, in real Chromium: no image fetched from outside (a tracking pixel that
tells an outsider who looked at a patient, and when), no styled text that could pass for the
app's own warning, no link."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import text as sql

from tests.e2e.conftest import free_port, log_in, settled_text, start_server

pytestmark = pytest.mark.browser


class _Pixel(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        _Pixel.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        return


@pytest.fixture
def pixel() -> Iterator[int]:
    """A tracking-pixel server on loopback; ``_Pixel.hits`` lists what was fetched from it."""
    _Pixel.hits = []
    port = free_port()
    httpd = ThreadingHTTPServer(("127.0.0.1", port), _Pixel)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield port
    httpd.shutdown()


@pytest.fixture
def planted(tmp_path: Path, pixel: int) -> Iterator[tuple[str, str, str]]:
    """A demo clinic where therapist.anna's note on P00001's rupture and her display name carry
    Markdown; a new server over it. Yields (base URL, the note, the display name)."""
    from typer.testing import CliRunner

    from db.access import Actor
    from db.engine import make_engine, transaction
    from db.models import Account
    from db.notes import mark_flag
    from manage import app

    url = f"sqlite:///{tmp_path / 'planted.db'}"
    assert CliRunner().invoke(app, ["seed-demo", "--db", url]).exit_code == 0
    note = f"![](http://127.0.0.1:{pixel}/px.png) :red[**URGENT: call the admin on 555-0100**]"
    name = f"Anna :blue[**(verified by IT)**] ![](http://127.0.0.1:{pixel}/name.png)"
    engine = make_engine(url)
    with transaction(engine) as session:
        anna = session.query(Account).filter_by(name="therapist.anna").one()
        mark_flag(session, actor=Actor.from_account(anna), patient_code="P00001", instrument="WAI-SR", week=9,
                  kind="rupture", action="addressed", note=note)
        session.execute(sql("UPDATE accounts SET display_name = :n WHERE name = 'therapist.anna'"), {"n": name})
    engine.dispose()
    proc, base = start_server(url, tmp_path / "streamlit.log")
    try:
        yield base, note, name
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_a_note_and_a_name_show_as_typed_and_fetch_nothing(planted, page) -> None:  # type: ignore[no-untyped-def]
    base, note, name = planted
    page.goto(base)
    page.get_by_role("button", name="Log in").wait_for()
    login = settled_text(page, "body").replace("\u2060", "")  # the login page is plain HTML (issue 14)
    assert name in login  # the demo clinic's account list, before anyone logs in
    log_in(page, "therapist.anna")
    page.get_by_role("heading", name="My patients").wait_for()
    settled_text(page)
    assert _Pixel.hits == [], f"the login page or My patients fetched {_Pixel.hits} from the outside server"
    page.locator("[data-testid='stSelectbox']").filter(has_text="Open a patient").click()
    page.keyboard.type("P00001")
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Open patient").click()
    page.get_by_role("heading", name="Patient P00001").wait_for()
    shown = settled_text(page).replace("\u2060", "")
    main = page.locator("[data-testid='stMain']")
    assert note in shown, shown[:2000]  # the note, character for character
    assert name in shown  # the therapist's display name in the caption
    assert main.locator("img[src*='127.0.0.1']").count() == 0
    assert main.locator("a[href*='127.0.0.1']").count() == 0
    assert main.locator("strong", has_text="URGENT").count() == 0
    assert main.locator("strong", has_text="verified by IT").count() == 0
    assert main.locator("[class*='olored'], span[style*='color']", has_text="URGENT").count() == 0
    page.wait_for_timeout(1000)
    assert _Pixel.hits == [], f"the browser fetched {_Pixel.hits} from the outside server"
