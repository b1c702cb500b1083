"""Two-step login in real Chromium (issue 14): an admin enrolled with an authenticator app logs in
through the real forms (password, then a TOTP made with pyotp) and reaches the admin page; an
admin who has none is led through enrolment (QR code, key, first code, recovery codes shown once)
and then into the app."""

from __future__ import annotations

from collections.abc import Iterator

import pyotp
import pytest

from db import mfa
from db.access import SYSTEM
from db.engine import make_engine, transaction
from tests.app.conftest import actor_for
from tests.db.helpers import enrol_mfa
from tests.e2e.conftest import log_in, settled_text, start_server

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def clinic(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A demo clinic server of its own whose admins must use two-step login, and its URL."""
    from tests.conftest import _seed_demo

    folder = tmp_path_factory.mktemp("mfa")
    url = f"sqlite:///{folder / 'demo.db'}"
    _seed_demo(url)
    engine = make_engine(url)
    with transaction(engine) as session:
        mfa.set_required_roles(session, actor=SYSTEM, roles=["admin", "supervisor"])
    engine.dispose()
    proc, base = start_server(url, folder / "streamlit.log")
    try:
        yield base, url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _enrol_earlier(url: str, name: str) -> str:
    """Enrol ``name`` ten minutes ago (so the code of now is a new time step); the secret."""
    engine = make_engine(url)
    secret = enrol_mfa(engine, actor_for(url, name))
    engine.dispose()
    return secret


def _type_code(page, code: str, button: str = "Continue") -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("textbox", name="Code").fill(code)
    page.get_by_role("button", name=button).click()


def test_an_enrolled_admin_logs_in_with_password_and_code_and_reaches_the_admin_page(clinic, page) -> None:  # type: ignore[no-untyped-def]
    base, url = clinic
    secret = _enrol_earlier(url, "admin")
    page.goto(f"{base}/admin")
    log_in(page, "admin")
    page.get_by_role("heading", name="Two-step login").wait_for()
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert "alliance_session" not in cookies and cookies["alliance_mfa"]["httpOnly"]
    assert cookies["alliance_mfa"]["sameSite"] == "Strict"
    _type_code(page, "000000" if pyotp.TOTP(secret).now() != "000000" else "111111")
    page.get_by_text("That code is not right").wait_for()
    _type_code(page, pyotp.TOTP(secret).now())
    page.get_by_role("heading", name="Admin").wait_for()
    assert "Accounts" in settled_text(page)
    assert "alliance_session" in {c["name"] for c in page.context.cookies()}


def test_a_supervisor_without_two_step_login_enrols_then_is_logged_in(clinic, page) -> None:  # type: ignore[no-untyped-def]
    base, _ = clinic
    page.goto(f"{base}/caseload")
    log_in(page, "supervisor.sara")
    page.get_by_role("heading", name="Set up two-step login").wait_for()
    assert page.locator(".am-qr svg").count() == 1
    secret = page.locator("#am-secret").inner_text().replace(" ", "")
    _type_code(page, pyotp.TOTP(secret).now(), button="Turn on two-step login")
    page.get_by_role("heading", name="Two-step login is on").wait_for()
    codes = page.locator("#am-recovery-codes li").all_inner_texts()
    assert len(codes) == 10
    page.get_by_role("button", name="Continue to Alliance Monitor").click()
    page.get_by_role("heading", name="Caseload").first.wait_for()
    settled_text(page)
    assert page.get_by_role("button", name="Log in").count() == 0
