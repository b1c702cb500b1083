"""The audit trail is append-only and chained; logins lock after repeated failures."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from db import audit
from db.auth import MAX_FAILURES, authenticate, check_password_policy
from db.engine import session_factory, transaction
from tests.db.helpers import PASSWORD, build_clinic


def test_audit_rows_cannot_be_updated_or_deleted(engine: Engine) -> None:
    with transaction(engine) as session:
        audit.record(session, actor="someone", action="export", rows=3)
    for sql in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(DBAPIError, match="append-only"), transaction(engine) as session:
            session.execute(text(sql))
    with session_factory(engine)() as session:
        ok, message = audit.verify_chain(session)
    assert ok, message


def test_tampering_is_detected(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from db.engine import make_engine, upgrade

    engine = make_engine(f"sqlite:///{tmp_path / 'a.db'}")
    upgrade(engine)
    with transaction(engine) as session:
        for i in range(4):
            audit.record(session, actor="ther.a", action="view_patient", patient_code=f"P{i}")
    with engine.begin() as conn:  # an attacker with file access drops the trigger first
        conn.execute(text("DROP TRIGGER audit_events_no_update"))
        conn.execute(text("UPDATE audit_events SET patient_code = 'P9' WHERE id = 3"))
    with session_factory(engine)() as session:
        ok, message = audit.verify_chain(session)
    assert not ok and "row 3" in message
    with engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_events_no_delete"))
        conn.execute(text("DELETE FROM audit_events WHERE id = 2"))
    with session_factory(engine)() as session:
        ok, message = audit.verify_chain(session)
    assert not ok and "row 3" in message


def test_lockout_after_five_failures_kept_in_the_database(engine: Engine) -> None:
    build_clinic(engine)
    now = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
    for i in range(MAX_FAILURES):
        with transaction(engine) as session:
            assert authenticate(session, name="ther.a", password="wrong password!",
                                clock=lambda i=i: now + dt.timedelta(seconds=i)) is None
    with transaction(engine) as session:  # the right password is refused while locked
        assert authenticate(session, name="ther.a", password=PASSWORD,
                            clock=lambda: now + dt.timedelta(minutes=5)) is None
    with transaction(engine) as session:
        assert authenticate(session, name="ther.a", password=PASSWORD,
                            clock=lambda: now + dt.timedelta(minutes=21)) is not None


def test_unknown_names_lock_the_same_way(engine: Engine) -> None:
    build_clinic(engine)
    now = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
    for _ in range(MAX_FAILURES):
        with transaction(engine) as session:
            authenticate(session, name="nobody", password="whatever it is", clock=lambda: now)
    with session_factory(engine)() as session:
        events = audit.read_events(session)
    assert (events["action"] == "lockout").sum() == 1


def test_password_policy_is_length_only() -> None:
    with pytest.raises(ValueError, match="at least 12"):
        check_password_policy("Sh0rt!pass")
    check_password_policy("all lower case words")
