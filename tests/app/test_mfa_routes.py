"""The second step of a login over HTTP (ui/web.py, ``POST /session/mfa``), with Starlette's test
client over a private copy of the demo clinic that requires two-step login of admins: a right
password alone gives no session, a right code does, a challenge lasts five minutes and is used
once, and an admin without two-step login is sent to enrolment (issue 14)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pyotp
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

import ui.session
from db import mfa
from db.access import SYSTEM
from db.engine import make_engine, session_factory, transaction
from db.models import AuditEvent, LoginSession
from db.sessions import COOKIE_NAME, token_id
from tests.app.conftest import actor_for
from tests.app.test_login_routes import _post_login
from tests.db.helpers import enrol_mfa

NOW = dt.datetime(2026, 12, 4, 10, 0, 5, tzinfo=dt.UTC)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[dt.datetime]:
    """The server's clock, movable: ``clock[0] += dt.timedelta(...)``."""
    now = [NOW]
    monkeypatch.setattr(ui.session, "clock", lambda: now[0])
    return now


@pytest.fixture
def mfa_client(client: TestClient, writable_demo: str, clock: list[dt.datetime]) -> Iterator[TestClient]:
    """The demo clinic with the default rule back: admins must use two-step login."""
    engine = make_engine(writable_demo)
    with transaction(engine) as session:
        mfa.set_required_roles(session, actor=SYSTEM, roles=["admin"])
    engine.dispose()
    yield client


def _enrol(url: str, name: str) -> str:
    """Enrol ``name`` directly in the database at NOW - 10 min; the secret."""
    engine = make_engine(url)
    secret = enrol_mfa(engine, actor_for(url, name), when=NOW - dt.timedelta(minutes=10))
    engine.dispose()
    return secret


def _code(client: TestClient, code: str):  # type: ignore[no-untyped-def]
    return client.post("/session/mfa", data={"code": code}, headers={"Origin": "http://testserver"})


def _actions(url: str) -> list[str]:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        rows = list(session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))
    engine.dispose()
    return rows


def test_a_right_password_alone_gives_no_session_but_a_strict_short_challenge(mfa_client: TestClient,
                                                                               writable_demo: str) -> None:
    _enrol(writable_demo, "therapist.anna")
    answer = _post_login(mfa_client, "therapist.anna", next_path="/patient?patient=P00001")
    assert answer.status_code == 200 and 'action="/session/mfa"' in answer.text and ">Code<" in answer.text
    cookie = answer.headers["set-cookie"]
    assert COOKIE_NAME + "=" not in cookie  # no login session yet
    assert cookie.startswith("alliance_mfa=") and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Max-Age=300" in cookie and "Path=/session/" in cookie and "anna" not in cookie
    assert mfa_client.get("/patient?patient=P00001").text != "THE APP"  # the challenge is no login
    assert "password_ok" in _actions(writable_demo)


def test_a_right_code_gives_a_fresh_session_and_goes_back(mfa_client: TestClient, writable_demo: str,
                                                          clock: list[dt.datetime]) -> None:
    secret = _enrol(writable_demo, "therapist.anna")
    _post_login(mfa_client, "therapist.anna", next_path="/patient?patient=P00001")
    answer = _code(mfa_client, pyotp.TOTP(secret).at(clock[0]))
    assert answer.status_code == 303 and answer.headers["location"] == "/patient?patient=P00001"
    token = answer.cookies[COOKIE_NAME]
    assert "alliance_mfa=\"\"" in answer.headers["set-cookie"]  # the challenge cookie is cleared
    assert mfa_client.get("/patient?patient=P00001").text == "THE APP"
    engine = make_engine(writable_demo)
    with session_factory(engine)() as session:
        assert session.get(LoginSession, token_id(token)) is not None
    engine.dispose()
    assert _actions(writable_demo)[-1] == "login"


def test_a_wrong_code_shows_the_form_again_with_what_to_do_and_is_audited(mfa_client: TestClient,
                                                                          writable_demo: str) -> None:
    secret = _enrol(writable_demo, "therapist.anna")
    _post_login(mfa_client, "therapist.anna")
    wrong = "000000" if pyotp.TOTP(secret).at(NOW) != "000000" else "111111"
    answer = _code(mfa_client, wrong)
    assert answer.status_code == 401 and "That code is not right" in answer.text
    assert "authenticator app" in answer.text and 'action="/session/mfa"' in answer.text
    assert COOKIE_NAME + "=" not in answer.headers.get("set-cookie", "")
    assert _actions(writable_demo)[-1] == "login_failed"


def test_a_challenge_is_refused_after_five_minutes_and_after_use(mfa_client: TestClient, writable_demo: str,
                                                                 clock: list[dt.datetime]) -> None:
    secret = _enrol(writable_demo, "therapist.anna")
    _post_login(mfa_client, "therapist.anna")
    challenge = mfa_client.cookies["alliance_mfa"]
    clock[0] += dt.timedelta(minutes=5, seconds=1)
    late = _code(mfa_client, pyotp.TOTP(secret).at(clock[0]))
    assert late.status_code == 401 and "longer than 5 minutes" in late.text and "set-cookie" in late.headers
    assert COOKIE_NAME + "=" not in late.headers["set-cookie"]
    _post_login(mfa_client, "therapist.anna")  # a new challenge, used once
    first = mfa_client.cookies["alliance_mfa"]
    assert first != challenge
    assert _code(mfa_client, pyotp.TOTP(secret).at(clock[0])).status_code == 303
    clock[0] += dt.timedelta(seconds=30)
    mfa_client.cookies.clear()
    mfa_client.cookies.set("alliance_mfa", first, path="/session/")  # a copy of the used challenge
    again = _code(mfa_client, pyotp.TOTP(secret).at(clock[0]))
    assert again.status_code == 401 and "already used" in again.text and COOKIE_NAME + "=" not in again.headers[
        "set-cookie"]


def test_a_recovery_code_logs_in_once(mfa_client: TestClient, writable_demo: str) -> None:
    _enrol(writable_demo, "therapist.anna")
    engine = make_engine(writable_demo)
    with transaction(engine) as session:
        codes = mfa.renew_recovery_codes(session, actor=actor_for(writable_demo, "therapist.anna"))
    engine.dispose()
    _post_login(mfa_client, "therapist.anna")
    assert _code(mfa_client, codes[0]).status_code == 303
    _post_login(mfa_client, "therapist.anna", fresh=True)
    assert _code(mfa_client, codes[0]).status_code == 401


def test_an_admin_without_two_step_login_is_sent_to_enrolment_then_logged_in(mfa_client: TestClient,
                                                                              writable_demo: str,
                                                                              clock: list[dt.datetime]) -> None:
    answer = _post_login(mfa_client, "admin", next_path="/patient?patient=P00001")
    assert answer.status_code == 200 and "Set up two-step login" in answer.text
    assert "<svg" in answer.text and COOKIE_NAME + "=" not in answer.headers["set-cookie"]
    secret = re.search(r'<code id="am-secret">([A-Z2-7 ]+)</code>', answer.text).group(1)  # type: ignore[union-attr]
    secret = secret.replace(" ", "")
    assert mfa_client.get("/patient?patient=P00001").text != "THE APP"
    wrong = _code(mfa_client, "12345")
    assert wrong.status_code == 401 and "That code is not right" in wrong.text and "<svg" in wrong.text
    done = _code(mfa_client, pyotp.TOTP(secret).at(clock[0]))
    assert done.status_code == 200 and "shown only this once" in done.text
    shown = re.findall(r"<li>([a-z2-7]{5}-[a-z2-7]{5})</li>", done.text)
    assert len(shown) == 10
    assert 'href="/patient?patient=P00001"' in done.text and done.cookies[COOKIE_NAME]
    assert mfa_client.get("/patient?patient=P00001").text == "THE APP"
    assert "mfa_enrolled" in _actions(writable_demo)
    # from now on the admin's password leads to the code form
    assert 'action="/session/mfa"' in _post_login(mfa_client, "admin", fresh=True).text


def test_five_wrong_codes_end_the_challenge(mfa_client: TestClient, writable_demo: str) -> None:
    secret = _enrol(writable_demo, "therapist.anna")
    _post_login(mfa_client, "therapist.anna")
    wrong = "000000" if pyotp.TOTP(secret).at(NOW) != "000000" else "111111"
    answers = [_code(mfa_client, wrong) for _ in range(5)]
    assert all(a.status_code == 401 for a in answers)
    assert "too many wrong codes" in answers[-1].text and 'action="/session/login"' in answers[-1].text
    assert _code(mfa_client, pyotp.TOTP(secret).at(NOW)).status_code == 401


def test_a_code_posted_from_another_site_is_refused(mfa_client: TestClient) -> None:
    answer = mfa_client.post("/session/mfa", data={"code": "123456"}, headers={"Origin": "http://evil.example"})
    assert answer.status_code == 403 and "another web site" in answer.text


def test_the_demo_clinic_requires_no_second_step(client: TestClient) -> None:
    answer = _post_login(client, "admin")  # the demo seed sets mfa_required_roles to none
    assert answer.status_code == 303 and answer.cookies[COOKIE_NAME]
