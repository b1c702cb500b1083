"""Issue 18, the login half: growing delays per name+address, per address and per name, counted from
the audit trail, that an attacker cannot use to lock a user out, with a constant answer time.

Every test drives ``db.auth.authenticate`` with a fake clock on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest
from sqlalchemy import Engine, func, select

import db.auth as auth
from db.auth import BY_ADDRESS, BY_NAME, BY_NAME_AND_ADDRESS, MAX_FAILURES, authenticate, login_wait
from db.engine import session_factory, transaction
from db.models import AuditEvent
from tests.db.helpers import PASSWORD, build_clinic

T0 = dt.datetime(2026, 11, 24, 9, 0, tzinfo=dt.UTC)
WRONG = "not the password at all"
ATTACKER, USER = "203.0.113.66", "198.51.100.7"


def _try(engine: Engine, name: str, password: str, at: dt.datetime, address: str | None = ATTACKER) -> bool:
    with transaction(engine) as session:
        return authenticate(session, name=name, password=password, address=address, clock=lambda: at) is not None


def _wait(engine: Engine, name: str, at: dt.datetime, address: str | None = ATTACKER) -> dt.timedelta:
    with session_factory(engine)() as session:
        return login_wait(session, name=name, address=address, clock=lambda: at)


def _count(engine: Engine, action: str) -> int:
    with session_factory(engine)() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)) or 0


def test_the_rules_are_data() -> None:
    assert BY_NAME_AND_ADDRESS.free == MAX_FAILURES == 5
    assert [BY_NAME_AND_ADDRESS.delay(n).total_seconds() / 60 for n in range(4, 10)] == [0, 15, 30, 60, 60, 60]
    assert [BY_ADDRESS.delay(n).total_seconds() / 60 for n in (19, 20, 21, 22, 30)] == [0, 1, 2, 4, 60]
    assert [BY_NAME.delay(n).total_seconds() / 60 for n in (9, 10, 11, 12, 13, 14, 20)] == [0, 1, 2, 4, 8, 15, 15]


def test_delays_grow_and_an_early_attempt_is_refused_without_being_checked(engine: Engine) -> None:
    build_clinic(engine)
    for i in range(MAX_FAILURES):
        assert not _try(engine, "ther.a", WRONG, T0 + dt.timedelta(seconds=i))
    last = T0 + dt.timedelta(seconds=MAX_FAILURES - 1)
    assert _wait(engine, "ther.a", last) == dt.timedelta(minutes=15)
    assert not _try(engine, "ther.a", PASSWORD, last + dt.timedelta(minutes=14))  # right, but too early
    assert _count(engine, "login_throttled") == 1
    # the 6th checked failure doubles the delay, the 7th doubles it again, then it stays at an hour
    at = last + dt.timedelta(minutes=15)
    for expected in (30, 60, 60):
        assert not _try(engine, "ther.a", WRONG, at)
        assert _wait(engine, "ther.a", at) == dt.timedelta(minutes=expected)
        at += dt.timedelta(minutes=expected)
    assert _try(engine, "ther.a", PASSWORD, at)  # a waited-out delay always gets a real attempt
    assert _wait(engine, "ther.a", at) == dt.timedelta(0)  # and a login starts the count again


def test_attempts_during_a_delay_do_not_lengthen_it(engine: Engine) -> None:
    build_clinic(engine)
    for i in range(MAX_FAILURES):
        _try(engine, "ther.a", WRONG, T0 + dt.timedelta(seconds=i))
    for k in range(1, 29):  # one every 30 seconds for 14 minutes
        assert not _try(engine, "ther.a", WRONG, T0 + dt.timedelta(seconds=4 + 30 * k))
    assert _count(engine, "login_throttled") == 28 and _count(engine, "login_failed") == MAX_FAILURES
    assert _try(engine, "ther.a", PASSWORD, T0 + dt.timedelta(minutes=15, seconds=5))


def test_one_wrong_attempt_every_three_minutes_never_locks_the_user_out(engine: Engine) -> None:
    """The reported abuse: before, an attacker kept the account locked for hours."""
    build_clinic(engine)
    assert _try(engine, "ther.a", PASSWORD, T0 - dt.timedelta(days=2), address=USER)  # the user's usual address
    checked = 0
    for k in range(120):  # six hours
        at = T0 + dt.timedelta(minutes=3 * k)
        before = _count(engine, "login_failed")
        _try(engine, "ther.a", WRONG, at)
        checked += _count(engine, "login_failed") - before
        if k % 10 == 5:
            assert _try(engine, "ther.a", PASSWORD, at + dt.timedelta(seconds=1), address=USER), at
            assert _try(engine, "ther.a", PASSWORD, at + dt.timedelta(seconds=2), address=None), at  # a new place
    assert checked <= 5 + 1 + 1 + 5  # 5 free, then 15 min, 30 min and hourly: 12 guesses in 6 hours, not 120


def test_four_guesses_every_fifteen_minutes_are_throttled_too(engine: Engine) -> None:
    """Before, the count restarted every 15 minutes, so 4 guesses per 15 minutes never locked."""
    build_clinic(engine)
    for k in range(4):
        assert not _try(engine, "ther.a", WRONG, T0 + dt.timedelta(seconds=k))
    assert _wait(engine, "ther.a", T0 + dt.timedelta(minutes=15)) == dt.timedelta(0)
    assert not _try(engine, "ther.a", WRONG, T0 + dt.timedelta(minutes=15))
    assert _wait(engine, "ther.a", T0 + dt.timedelta(minutes=15)) == dt.timedelta(minutes=15)


def test_one_address_trying_many_names_is_throttled(engine: Engine) -> None:
    build_clinic(engine)
    names = [f"user{k}" for k in range(BY_ADDRESS.free)]
    for k, name in enumerate(names):  # password spraying: one guess per name
        assert not _try(engine, name, WRONG, T0 + dt.timedelta(seconds=k))
    after = T0 + dt.timedelta(seconds=len(names))
    assert _wait(engine, "someone.else", after) == dt.timedelta(seconds=59)
    assert not _try(engine, "ther.a", PASSWORD, after)  # even a right password from that address waits
    assert _try(engine, "ther.a", PASSWORD, after, address=USER)  # other addresses are not affected


def test_many_addresses_guessing_one_name_are_throttled_but_not_its_usual_address(engine: Engine) -> None:
    build_clinic(engine)
    assert _try(engine, "ther.a", PASSWORD, T0 - dt.timedelta(days=1), address=USER)
    for k in range(BY_NAME.free):
        assert not _try(engine, "ther.a", WRONG, T0 + dt.timedelta(seconds=k), address=f"192.0.2.{k + 1}")
    after = T0 + dt.timedelta(seconds=BY_NAME.free)
    assert not _try(engine, "ther.a", PASSWORD, after, address="192.0.2.200")  # a new address waits a minute
    assert _try(engine, "ther.a", PASSWORD, after, address=USER)  # the user's own address does not


def test_names_that_do_not_exist_are_throttled_exactly_like_those_that_do(engine: Engine) -> None:
    build_clinic(engine)
    for name in ("ther.a", "nobody.here"):
        for i in range(MAX_FAILURES):
            _try(engine, name, WRONG, T0 + dt.timedelta(seconds=i), address=f"192.0.2.{len(name)}")
    waits = {name: _wait(engine, name, T0 + dt.timedelta(seconds=5), address=f"192.0.2.{len(name)}")
             for name in ("ther.a", "nobody.here")}
    assert waits["ther.a"] == waits["nobody.here"] > dt.timedelta(0)
    with session_factory(engine)() as session:
        actions = session.execute(select(AuditEvent.actor, AuditEvent.action, func.count())
                                  .where(AuditEvent.actor.in_(["ther.a", "nobody.here"]))
                                  .group_by(AuditEvent.actor, AuditEvent.action)).all()
    by_actor = {who: {(a, n) for w, a, n in actions if w == who} for who in ("ther.a", "nobody.here")}
    assert by_actor["ther.a"] == by_actor["nobody.here"] == {("login_failed", 5), ("lockout", 1)}


class _CountingHasher:
    def __init__(self, real) -> None:  # type: ignore[no-untyped-def]
        self.real, self.verified = real, 0

    def verify(self, stored: str, password: str) -> bool:
        self.verified += 1
        return self.real.verify(stored, password)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.real, name)


def test_every_answer_runs_one_password_check(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """The reported leak: a locked answer was 250 times faster than a checked one."""
    actors = build_clinic(engine)
    from db import accounts

    with transaction(engine) as session:
        accounts.deactivate_account(session, actor=actors["admin"], name="sup.noteam")
    counting = _CountingHasher(auth._hasher)
    monkeypatch.setattr(auth, "_hasher", counting)
    for i in range(MAX_FAILURES):
        _try(engine, "ther.b", WRONG, T0 + dt.timedelta(seconds=i))
    cases = {"right": ("ther.a", PASSWORD), "wrong": ("ther.c", WRONG), "unknown": ("nobody", WRONG),
             "inactive": ("sup.noteam", PASSWORD), "throttled": ("ther.b", PASSWORD)}
    at = T0 + dt.timedelta(minutes=1)
    for case, (name, password) in cases.items():
        before = counting.verified
        _try(engine, name, password, at, address=ATTACKER if case == "throttled" else USER)
        assert counting.verified == before + 1, case


def test_a_throttled_answer_takes_about_as_long_as_a_checked_one(engine: Engine) -> None:
    build_clinic(engine)
    for i in range(MAX_FAILURES):
        _try(engine, "ther.b", WRONG, T0 + dt.timedelta(seconds=i))
    times: dict[str, list[float]] = {"checked": [], "throttled": []}
    others = ["ther.a", "ther.c", "ther.empty", "sup.north", "sup.south", "sup.noteam", "admin"]
    for k, other in enumerate(others):  # one failure each: none of them is throttled
        at = T0 + dt.timedelta(minutes=1, seconds=k)
        for case, (name, address) in {"checked": (other, USER), "throttled": ("ther.b", ATTACKER)}.items():
            started = time.perf_counter()
            _try(engine, name, WRONG, at, address=address)
            times[case].append(time.perf_counter() - started)
    # the fastest of seven answers is what each path must do; a median also carries whatever else
    # the machine was doing (CI under load gave medians of 0.27 s against 0.64 s for the same work)
    checked, throttled = (min(times[c]) for c in ("checked", "throttled"))
    print(f"fastest answer: checked {checked * 1000:.0f} ms, throttled {throttled * 1000:.0f} ms")
    assert throttled > 0.5 * checked  # was 1/250 before


def test_addresses_are_stored_canonically_and_unknown_ones_share_a_key(engine: Engine) -> None:
    build_clinic(engine)
    same = ["2001:DB8::1", "2001:db8:0::1", "2001:db8::1%eth0", "2001:0db8::0001", "2001:db8:0:0::1"]
    for i, address in enumerate([*same, "::ffff:0"]):
        _try(engine, "ther.a", WRONG, T0 + dt.timedelta(seconds=i), address=address)
    assert _wait(engine, "ther.a", T0 + dt.timedelta(seconds=5), address="2001:db8::1") == dt.timedelta(
        minutes=15) - dt.timedelta(seconds=1)
    assert _wait(engine, "ther.a", T0 + dt.timedelta(seconds=5), address="::ffff:0") == dt.timedelta(0)
    assert auth.normalise_address("not an address") == auth.normalise_address(None) == "unknown"
    for i, address in enumerate([None, "", "garbage", None, "256.1.1.1"]):
        _try(engine, "ther.c", WRONG, T0 + dt.timedelta(seconds=i), address=address)
    assert _wait(engine, "ther.c", T0 + dt.timedelta(seconds=4), address=None) == dt.timedelta(minutes=15)
