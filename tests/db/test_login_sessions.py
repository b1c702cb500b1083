"""Server-side login sessions (db/sessions.py), on SQLite and PostgreSQL: a fresh hashed token
at every login, idle and absolute limits on the server, and every way a session ends."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, select

from db import sessions
from db.accounts import deactivate_account, reset_password, set_role, set_team
from db.engine import session_factory, transaction
from db.models import AuditEvent, LoginSession
from db.sessions import create_session, list_sessions, resume_session, revoke_account_sessions, revoke_session
from tests.db.helpers import build_clinic

T0 = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
IDLE = dt.timedelta(minutes=30)


def at(minutes: float):  # type: ignore[no-untyped-def]
    return lambda: T0 + dt.timedelta(minutes=minutes)


def login(engine: Engine, actor, *, minutes: float = 0, agent: str = "Mozilla/5.0 (X11; Linux) Chrome/140") -> str:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        return create_session(session, actor=actor, user_agent=agent, address="10.0.0.5", clock=at(minutes),
                              lifetime=dt.timedelta(hours=12))


def resume(engine: Engine, token: str | None, *, minutes: float = 0) -> sessions.Resumed:
    with transaction(engine) as session:
        return resume_session(session, token=token, clock=at(minutes), idle=IDLE)


def test_a_login_stores_only_the_hash_of_a_fresh_random_token(engine: Engine) -> None:
    actors = build_clinic(engine)
    first, second = login(engine, actors["ther.a"]), login(engine, actors["ther.a"])
    assert first != second and len(first) >= 43  # 256 random bits, new at every login (no fixation)
    with session_factory(engine)() as session:
        ids = set(session.scalars(select(LoginSession.id)))
        row = session.get(LoginSession, sessions.token_id(first))
    assert ids == {sessions.token_id(first), sessions.token_id(second)}
    assert first not in ids and second not in ids
    assert row is not None and row.user_agent.startswith("Mozilla") and row.address == "10.0.0.5"
    assert "ther.a" not in first  # the token says nothing about who holds it
    resumed = resume(engine, first, minutes=1)
    assert resumed.actor is not None and resumed.actor.name == "ther.a" and resumed.reason is None
    assert resumed.actor.scope  # carries the access fingerprint the cached loaders key on


@pytest.mark.parametrize("token", ["", None])
def test_no_cookie_is_no_login_and_nothing_to_audit(engine: Engine, token: str | None) -> None:
    build_clinic(engine)
    assert resume(engine, token) == sessions.Resumed(None)


@pytest.mark.parametrize("tamper", [lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), lambda t: t + "x",
                                    lambda t: "x" * 500, lambda t: "é" + t, lambda t: "therapist.anna"])
def test_a_tampered_or_made_up_token_is_refused(engine: Engine, tamper) -> None:  # type: ignore[no-untyped-def]
    actors = build_clinic(engine)
    token = login(engine, actors["ther.a"])
    resumed = resume(engine, tamper(token))
    assert resumed.actor is None and resumed.reason == "unknown"
    assert resume(engine, token).actor is not None  # the real one still works


def test_idle_timeout_is_enforced_on_the_server_and_activity_keeps_it(engine: Engine) -> None:
    actors = build_clinic(engine)
    token = login(engine, actors["ther.a"])
    for minutes in (29, 58, 87):  # a click every 29 minutes keeps it alive
        assert resume(engine, token, minutes=minutes).actor is not None, minutes
    resumed = resume(engine, token, minutes=87 + 31)
    assert resumed.actor is None and resumed.reason == "idle"
    # ended for good: coming back at an earlier-looking time or with a longer limit does not revive it
    assert resume(engine, token, minutes=88).reason == "revoked"
    with session_factory(engine)() as session:
        assert session.get(LoginSession, sessions.token_id(token)).revoke_reason == "idle"


def test_a_check_without_touch_does_not_extend_the_session(engine: Engine) -> None:
    actors = build_clinic(engine)
    token = login(engine, actors["ther.a"])
    with transaction(engine) as session:
        assert resume_session(session, token=token, clock=at(20), idle=IDLE, touch=False).actor is not None
    assert resume(engine, token, minutes=31).reason == "idle"


def test_absolute_lifetime_ends_even_an_active_session(engine: Engine) -> None:
    actors = build_clinic(engine)
    token = login(engine, actors["ther.a"])
    minute = 0.0
    while minute < 12 * 60:
        assert resume(engine, token, minutes=minute).actor is not None, minute
        minute += 25
    assert resume(engine, token, minutes=12 * 60 + 1).reason == "expired"


def test_fractional_minutes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ALLIANCE_IDLE_MINUTES", "0.1")
    monkeypatch.setenv("ALLIANCE_SESSION_HOURS", "2")
    assert sessions.idle_timeout() == dt.timedelta(seconds=6)
    assert sessions.absolute_lifetime() == dt.timedelta(hours=2)
    monkeypatch.setenv("ALLIANCE_IDLE_MINUTES", "soon")
    with pytest.raises(ValueError, match="ALLIANCE_IDLE_MINUTES is 'soon', which is not a number"):
        sessions.idle_timeout()
    monkeypatch.setenv("ALLIANCE_IDLE_MINUTES", "0")
    with pytest.raises(ValueError, match="must be more than 0"):
        sessions.idle_timeout()


def test_logout_ends_one_session_and_leaves_the_others(engine: Engine) -> None:
    actors = build_clinic(engine)
    laptop, phone = login(engine, actors["ther.a"]), login(engine, actors["ther.a"])
    with transaction(engine) as session:
        assert revoke_session(session, session_id=sessions.token_id(laptop), clock=at(1))
        assert not revoke_session(session, session_id=sessions.token_id(laptop), clock=at(1))  # already ended
    assert resume(engine, laptop, minutes=2).reason == "revoked"
    assert resume(engine, phone, minutes=2).actor is not None


def test_a_user_can_list_and_end_only_their_own_sessions(engine: Engine) -> None:
    actors = build_clinic(engine)
    mine, theirs = login(engine, actors["ther.a"]), login(engine, actors["ther.b"])
    login(engine, actors["ther.a"], agent="Mozilla/5.0 (iPhone) Safari/605")
    with session_factory(engine)() as session:
        listed = list_sessions(session, actor=actors["ther.a"], clock=at(1), idle=IDLE)
    assert len(listed) == 2 and sessions.token_id(theirs) not in set(listed["session_id"])
    assert mine not in listed.to_string()  # the token itself is nowhere
    with transaction(engine) as session:  # ther.a cannot end ther.b's session by its id
        assert not revoke_session(session, session_id=sessions.token_id(theirs), account_id=actors["ther.a"].id)
        assert revoke_session(session, session_id=sessions.token_id(mine), account_id=actors["ther.a"].id,
                              reason="ended by user")
    assert resume(engine, theirs).actor is not None
    with session_factory(engine)() as session:
        assert len(list_sessions(session, actor=actors["ther.a"], clock=at(1), idle=IDLE)) == 1
        ended = list_sessions(session, actor=actors["ther.a"], clock=at(1), idle=IDLE, include_ended=True)
    assert set(ended["ended_because"].dropna()) == {"ended by user"}
    assert sessions.describe_browser("Mozilla/5.0 (iPhone) Safari/605") == "Safari on iPhone"


@pytest.mark.parametrize("change", ["reset", "deactivate", "role"])
def test_a_password_reset_deactivation_or_role_change_ends_every_session_at_once(engine: Engine, change: str) -> None:
    actors = build_clinic(engine)
    name = "sup.north"
    tokens = [login(engine, actors[name]) for _ in range(3)]
    other = login(engine, actors["ther.a"])
    with transaction(engine) as session:
        if change == "reset":
            reset_password(session, actor=actors["admin"], name=name, password="a new long passphrase 42")
        elif change == "deactivate":
            deactivate_account(session, actor=actors["admin"], name=name, reason="left")
        else:
            set_role(session, actor=actors["admin"], name=name, role="admin")
    for token in tokens:
        resumed = resume(engine, token, minutes=1)
        assert resumed.actor is None and resumed.reason == "account"
    assert resume(engine, other, minutes=1).actor is not None
    with session_factory(engine)() as session:
        reasons = set(session.scalars(select(LoginSession.revoke_reason).where(
            LoginSession.account_id == actors[name].id)))
    assert reasons == {{"reset": "password reset", "deactivate": "deactivated", "role": "role changed"}[change]}


def test_the_reset_and_the_revocation_are_one_transaction(engine: Engine) -> None:
    actors = build_clinic(engine)
    token = login(engine, actors["ther.a"])
    with pytest.raises(ValueError), transaction(engine) as session:
        reset_password(session, actor=actors["admin"], name="ther.a", password="short")  # refused by the policy
    assert resume(engine, token).actor is not None  # nothing happened, the session lives on


def test_a_team_change_keeps_the_sessions_but_not_the_old_access(engine: Engine) -> None:
    actors = build_clinic(engine)
    token = login(engine, actors["sup.north"])
    before = resume(engine, token).actor
    with transaction(engine) as session:
        set_team(session, actor=actors["admin"], name="sup.north", team="South")
    after = resume(engine, token).actor
    assert before is not None and after is not None and after.team == "South" and after.scope != before.scope


def test_a_deactivated_account_is_refused_even_if_its_rows_were_not_revoked(engine: Engine) -> None:
    actors = build_clinic(engine)
    token = login(engine, actors["ther.empty"])
    with transaction(engine) as session:
        from db.models import Account

        session.get(Account, actors["ther.empty"].id).active = False  # behind db.accounts' back
    assert resume(engine, token).reason == "account"


def test_refusals_are_audited_with_the_reason(engine: Engine) -> None:
    actors = build_clinic(engine)
    token = login(engine, actors["ther.a"])
    with transaction(engine) as session:
        revoke_account_sessions(session, account_id=actors["ther.a"].id, reason="logout")
    for tok in (token, "made-up-token"):
        with transaction(engine) as session:
            resumed = resume_session(session, token=tok, clock=at(1), idle=IDLE)
            sessions.audit_refusal(session, resumed=resumed, address="10.0.0.9", where="/patient")
    with session_factory(engine)() as session:
        rows = session.execute(select(AuditEvent.actor, AuditEvent.detail)
                               .where(AuditEvent.action == "session_refused").order_by(AuditEvent.id)).all()
    assert [r[0] for r in rows] == ["ther.a", "(unknown session)"]
    assert '"reason": "revoked"' in rows[0][1] and '"reason": "unknown"' in rows[1][1]
    assert token not in rows[0][1]
