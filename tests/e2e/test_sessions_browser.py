"""Logins that last and end when they should, in real Chromium (issue 14).

A login is a server-side session behind an HttpOnly cookie: reload, a new tab, a deep link and a
click on a patient code keep it; logout in one tab ends the others; a tampered cookie is refused
and audited; the idle timeout ends a session; and what a login made (downloads, media files,
fragments) is nothing once the login has ended.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from db.engine import make_engine, session_factory
from db.models import AuditEvent
from tests.e2e.conftest import log_in, settled_text, start_server

pytestmark = pytest.mark.browser
COOKIE = "alliance_session"


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A server of its own (so the test can read its audit trail), idle timeout 0.1 minute = 6 s."""
    from tests.conftest import _seed_demo

    folder = tmp_path_factory.mktemp("sessions")
    url = f"sqlite:///{folder / 'demo.db'}"
    _seed_demo(url)
    proc, base = start_server(url, folder / "streamlit.log", env_extra={"ALLIANCE_IDLE_MINUTES": "0.1"})
    try:
        yield base, url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _audit(url: str, action: str) -> list[tuple[str, str]]:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        rows = session.execute(select(AuditEvent.actor, AuditEvent.detail).where(AuditEvent.action == action)
                               .order_by(AuditEvent.id)).all()
    engine.dispose()
    return [(r[0], r[1]) for r in rows]


def _second_tab_then_log_out(page, base: str):  # type: ignore[no-untyped-def]
    """Open P00001 in a second tab of the same browser, then log out in the first tab."""
    tab = page.context.new_page()
    tab.goto(f"{base}/patient?patient=P00001")
    tab.get_by_role("heading", name="Patient P00001").wait_for()
    settled_text(tab)
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").wait_for()
    return tab


def test_reload_new_tab_deep_link_and_a_patient_code_keep_the_login(server: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server)
    log_in(page, "therapist.anna")
    page.get_by_role("heading", name="My patients").wait_for()
    page.reload()
    page.get_by_role("heading", name="My patients").wait_for()
    assert page.get_by_role("button", name="Log in").count() == 0
    tab = page.context.new_page()  # a new tab of the same browser
    tab.goto(f"{server}/patient?patient=P00001")  # a deep link
    tab.get_by_role("heading", name="Patient P00001").wait_for()
    assert tab.get_by_role("button", name="Log in").count() == 0
    tab.close()
    # a click on the first patient code of My patients opens it in a new tab
    grid = page.locator("[data-testid='stDataFrame']").first
    grid.wait_for()
    settled_text(page)
    box = grid.bounding_box()
    assert box is not None
    x, y = box["x"] + 30, box["y"] + 35 + 17  # below the header row: the first row's code
    page.mouse.move(x, y)  # the grid finds the link under the pointer first
    page.wait_for_timeout(500)
    with page.context.expect_page() as opened:
        page.mouse.click(x, y)
    new = opened.value
    new.get_by_role("heading", name="Patient P00001").wait_for()
    assert new.get_by_role("button", name="Log in").count() == 0


def test_the_cookie_is_httponly_samesite_and_carries_no_name(server: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server)
    log_in(page, "therapist.anna")
    page.get_by_role("heading", name="My patients").wait_for()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert COOKIE in cookies
    cookie = cookies[COOKIE]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] in ("Lax", "Strict")
    assert not re.search(r"anna|therapist|supervisor|admin", cookie["value"], re.IGNORECASE)
    assert len(cookie["value"]) >= 40
    assert COOKIE not in page.evaluate("document.cookie")  # no script in the page can read it


def test_logout_in_one_tab_ends_the_others(server: str, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server)
    log_in(page, "therapist.anna")
    page.get_by_role("heading", name="My patients").wait_for()
    other = _second_tab_then_log_out(page, server)
    # the other tab's next click reruns its script, which finds the session ended
    other.get_by_role("link", name="My patients").click()
    other.get_by_role("button", name="Log in").wait_for()
    other.get_by_text("Your login was ended").wait_for()
    assert other.get_by_role("heading", name="My patients").count() == 0
    other.reload()
    other.get_by_role("button", name="Log in").wait_for()
    assert re.findall(r"P\d{5}", other.content()) == []


def test_a_tampered_cookie_is_refused_and_audited(clinic: tuple[str, str], page) -> None:  # type: ignore[no-untyped-def]
    base, url = clinic
    page.goto(base)
    log_in(page, "therapist.anna")
    page.get_by_role("heading", name="My patients").wait_for()
    (cookie,) = [c for c in page.context.cookies() if c["name"] == COOKIE]
    value = cookie["value"]
    tampered = value[:-1] + ("A" if value[-1] != "A" else "B")
    page.context.add_cookies([{**cookie, "value": tampered}])
    before = len(_audit(url, "session_refused"))
    page.goto(f"{base}/patient?patient=P00001")
    page.get_by_role("button", name="Log in").wait_for()
    page.get_by_text("could not be recognised").wait_for()
    assert set(re.findall(r"P\d{5}", page.content())) <= {"P00001"}  # only the link the user followed
    assert page.get_by_role("heading", name="Patient P00001").count() == 0
    refused = _audit(url, "session_refused")[before:]
    assert refused and '"reason": "unknown"' in refused[0][1]
    assert tampered not in refused[0][1] and value not in refused[0][1]


def test_the_idle_timeout_ends_a_session(clinic: tuple[str, str], page) -> None:  # type: ignore[no-untyped-def]
    base, url = clinic
    page.goto(f"{base}/patient?patient=P00001")
    log_in(page, "therapist.anna")
    page.get_by_role("heading", name="Patient P00001").wait_for()  # the deep link is kept through the login
    settled_text(page)
    page.wait_for_timeout(8_000)  # longer than the 6-second idle limit
    page.get_by_text("Show item answers").click()  # a fragment's own rerun
    page.get_by_role("button", name="Log in").wait_for()
    page.get_by_text("logged out after a period without activity").wait_for()
    assert page.get_by_role("heading", name="Patient P00001").count() == 0
    assert any('"reason": "idle"' in d for _, d in _audit(url, "session_refused"))


def test_a_generated_file_answers_only_its_login_and_nothing_after_logout(server: str, page,  # type: ignore[no-untyped-def]
                                                                           browser) -> None:
    base = server
    page.goto(f"{base}/patient?patient=P00001")
    log_in(page, "therapist.anna")
    page.get_by_role("heading", name="Patient P00001").wait_for()
    settled_text(page)
    with page.expect_download() as info:
        page.get_by_role("button", name="Download the scores (CSV)").click()
    download = info.value
    media = download.url
    assert "/media/" in media
    assert Path(download.path()).read_bytes().startswith(b"patient_id")
    # the same URL without the login's cookie: as if the file did not exist
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(media, timeout=10)
    assert refused.value.code == 404
    # another browser, logged in as someone else, cannot fetch it either
    other = browser.new_context()
    try:
        them = other.new_page()
        them.goto(base)
        log_in(them, "therapist.ben")
        them.get_by_role("heading", name="My patients").wait_for()
        answer = them.request.get(media)
        assert answer.status == 404 and b"patient_id" not in answer.body()
    finally:
        other.close()
    # after logout the button of an open tab makes nothing
    stale = _second_tab_then_log_out(page, base)
    got_file = False
    try:
        with stale.expect_download(timeout=8_000):
            stale.get_by_role("button", name="Download the scores (CSV)").click()
        got_file = True
    except Exception:  # no download: what a logged-out tab must get
        pass
    assert not got_file
    assert page.request.get(media).status == 404


def test_a_streamlit_session_id_in_an_upload_url_is_not_a_credential(server: str, page,  # type: ignore[no-untyped-def]
                                                                      browser) -> None:
    base = server
    page.goto(f"{base}/import")
    log_in(page, "admin")
    page.get_by_role("heading", name=re.compile("Import")).first.wait_for()
    settled_text(page)
    with page.expect_request(lambda r: "/_stcore/upload_file/" in r.url and r.method == "PUT") as info:
        page.locator("input[type=file]").first.set_input_files(
            files=[{"name": "scores.csv", "mimeType": "text/csv",
                    "buffer": b"patient_id,therapist_id,week,instrument,score\nP00001,therapist.anna,1,WAI-SR,40\n"}])
    upload_url = info.value.url
    # a second browser with no login, or with another login, that learnt the URL gets nothing in
    other = browser.new_context()
    try:
        them = other.new_page()
        answer = them.request.put(upload_url, multipart={"file": {"name": "x.csv", "mimeType": "text/csv",
                                                                  "buffer": b"x"}})
        assert answer.status == 403
        them.goto(base)
        log_in(them, "therapist.anna")
        them.get_by_role("heading", name="My patients").wait_for()
        answer = them.request.put(upload_url, multipart={"file": {"name": "x.csv", "mimeType": "text/csv",
                                                                  "buffer": b"x"}})
        assert answer.status == 403
    finally:
        other.close()


def test_a_deep_link_as_the_first_visit_of_a_fresh_server_gets_the_apps_menu(tmp_path: Path, page) -> None:  # type: ignore[no-untyped-def]
    """Found taking screenshots: a fresh server whose first visit was /admin ran pages/admin.py alone
    (Streamlit's old pages-folder mode), with the raw file list "app, admin, caseload…" as the menu."""
    from tests.conftest import _seed_demo

    url = f"sqlite:///{tmp_path / 'demo.db'}"
    _seed_demo(url)
    proc, base = start_server(url, tmp_path / "streamlit.log")
    try:
        page.goto(f"{base}/admin")
        log_in(page, "admin")
        page.get_by_role("heading", name="Admin").wait_for()
        menu = settled_text(page, "[data-testid='stSidebarNav']")
        assert "My patients" in menu and "How flags work" in menu, menu
        assert "my patients" not in menu and not re.search(r"^app$", menu, re.M), menu
    finally:
        proc.terminate()
        proc.wait(timeout=20)
