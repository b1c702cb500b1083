"""Account administration (db/accounts.py): admin-only, audited, logs out everywhere, keeps
patients in sight; and the access fingerprint that keys the caches."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import Engine, select

from db import accounts, audit
from db.access import Actor, refresh_actor, visible_patients
from db.auth import authenticate
from db.engine import session_factory, transaction
from db.models import Account, Patient
from db.writes import PermissionDenied
from tests.db.helpers import PASSWORD, build_clinic

NEW_PASSWORD = "a brand new long passphrase"


def _events(engine: Engine, action: str) -> list[dict]:
    with session_factory(engine)() as session:
        frame = audit.read_events(session)
    rows = frame[frame["action"] == action]
    return [{"actor": a, "patient_code": p, **json.loads(d)}
            for a, p, d in zip(rows["actor"], rows["patient_code"], rows["detail"], strict=True)]


def _refresh(engine: Engine, actor: Actor) -> Actor | None:
    with session_factory(engine)() as session:
        return refresh_actor(session, actor)


def _codes(engine: Engine, actor: Actor) -> set[str]:
    with session_factory(engine)() as session:
        return set(session.scalars(select(Patient.code).where(Patient.id.in_(visible_patients(actor)))))


ADMIN_ONLY = [
    lambda s, a: accounts.deactivate_account(s, actor=a, name="ther.b"),
    lambda s, a: accounts.reactivate_account(s, actor=a, name="ther.b"),
    lambda s, a: accounts.set_role(s, actor=a, name="ther.empty", role="admin"),
    lambda s, a: accounts.set_team(s, actor=a, name="ther.a", team="South"),
    lambda s, a: accounts.set_email(s, actor=a, name="ther.a", email="a@clinic.org"),
    lambda s, a: accounts.reset_password(s, actor=a, name="ther.b", password=NEW_PASSWORD),
    lambda s, a: accounts.move_patients(s, actor=a, codes=["PB1"], therapist="ther.a"),
    lambda s, a: accounts.account_table(s, actor=a),
    lambda s, a: accounts.audit_trail(s, actor=a),
]


def test_everything_is_admin_only(engine: Engine) -> None:
    actors = build_clinic(engine)
    inactive_admin = Actor(id=actors["admin"].id, name="admin", role="admin", active=False)
    for call in ADMIN_ONLY:
        for who in (actors["ther.a"], actors["sup.north"], inactive_admin):
            with pytest.raises(PermissionDenied, match="Only an admin"), transaction(engine) as session:
                call(session, who)
    with session_factory(engine)() as session:  # nothing changed
        assert session.scalar(select(Account.active).where(Account.name == "ther.b"))
        assert session.scalar(select(Account.team).where(Account.name == "ther.a")) == "North"


def test_password_reset_logs_out_everywhere_and_is_audited_without_the_password(engine: Engine) -> None:
    actors = build_clinic(engine)
    with transaction(engine) as session:
        logged_in = authenticate(session, name="ther.b", password=PASSWORD)
    assert logged_in is not None and _refresh(engine, logged_in) is not None
    with transaction(engine) as session:
        accounts.reset_password(session, actor=actors["admin"], name="ther.b", password=NEW_PASSWORD)
    assert _refresh(engine, logged_in) is None  # the old session is gone
    with transaction(engine) as session:
        assert authenticate(session, name="ther.b", password=PASSWORD) is None
        assert authenticate(session, name="ther.b", password=NEW_PASSWORD) is not None
    [event] = _events(engine, "reset_password")
    assert event == {"actor": "admin", "patient_code": None, "account": "ther.b"}
    with pytest.raises(ValueError, match="at least 12"), transaction(engine) as session:
        accounts.reset_password(session, actor=actors["admin"], name="ther.b", password="short")


def test_deactivation_logs_out_and_refuses_login_until_reactivated(engine: Engine) -> None:
    actors = build_clinic(engine)
    with transaction(engine) as session:
        logged_in = authenticate(session, name="sup.south", password=PASSWORD)
    assert logged_in is not None
    with transaction(engine) as session:
        accounts.deactivate_account(session, actor=actors["admin"], name="sup.south", reason="left the clinic")
    assert _refresh(engine, logged_in) is None
    with transaction(engine) as session:
        assert authenticate(session, name="sup.south", password=PASSWORD) is None
    with transaction(engine) as session:
        accounts.reactivate_account(session, actor=actors["admin"], name="sup.south")
    with transaction(engine) as session:
        again = authenticate(session, name="sup.south", password=PASSWORD)
    assert again is not None and _refresh(engine, again) is not None
    assert _refresh(engine, logged_in) is None  # the session from before stays logged out
    assert _events(engine, "deactivate_account") == [
        {"actor": "admin", "patient_code": None, "account": "sup.south", "reason": "left the clinic"}]


REFUSALS = [
    (lambda s, a: accounts.deactivate_account(s, actor=a, name="ther.a"), "2 patients on their caseload"),
    (lambda s, a: accounts.set_role(s, actor=a, name="ther.a", role="supervisor"), "move them"),
    (lambda s, a: accounts.deactivate_account(s, actor=a, name="admin"), "your own account"),
    (lambda s, a: accounts.set_role(s, actor=a, name="admin", role="therapist"), "your own account"),
    (lambda s, a: accounts.deactivate_account(s, actor=a, name="nobody"), "no account 'nobody'"),
    (lambda s, a: accounts.set_role(s, actor=a, name="ther.empty", role="boss"), "does not exist"),
    (lambda s, a: accounts.set_email(s, actor=a, name="ther.a", email="not an address"), "not an e-mail"),
    (lambda s, a: accounts.move_patients(s, actor=a, codes=["PA1", "PX9"], therapist="ther.b"), "no patient PX9"),
    (lambda s, a: accounts.move_patients(s, actor=a, codes=["PA1"], therapist="sup.north"), "not an active therapist"),
    (lambda s, a: accounts.move_patients(s, actor=a, codes=[], therapist="ther.b"), "at least one"),
]


def test_refusals_say_why_and_change_nothing(engine: Engine) -> None:
    actors = build_clinic(engine)
    for call, message in REFUSALS:
        with pytest.raises(ValueError, match=message), transaction(engine) as session:
            call(session, actors["admin"])
    assert _codes(engine, actors["ther.a"]) == {"PA1", "PA2"}
    with session_factory(engine)() as session:
        assert session.scalar(select(Account.role).where(Account.name == "ther.a")) == "therapist"
        assert session.scalar(select(Account.active).where(Account.name == "admin"))


def test_the_last_admin_cannot_be_removed_by_another_admin_either(engine: Engine) -> None:
    actors = build_clinic(engine)
    with transaction(engine) as session:
        accounts.set_role(session, actor=actors["admin"], name="sup.noteam", role="admin")
    second = _refresh(engine, actors["sup.noteam"])
    assert second is not None and second.role == "admin"
    with transaction(engine) as session:  # two admins: the second may demote the first
        accounts.set_role(session, actor=second, name="admin", role="supervisor")
    with pytest.raises(ValueError, match="your own account"), transaction(engine) as session:
        accounts.deactivate_account(session, actor=second, name="sup.noteam")


def test_moving_patients_moves_access_and_the_fingerprint(engine: Engine) -> None:
    actors = build_clinic(engine)
    before = {n: _refresh(engine, actors[n]) for n in ("ther.a", "ther.c", "sup.north", "sup.south", "admin")}
    with transaction(engine) as session:
        moved = accounts.move_patients(session, actor=actors["admin"], codes=["PA1", "PA1", "PC1"],
                                       therapist="ther.c", reason="a holds fewer hours")
    assert moved == 1  # PC1 is already ther.c's
    assert _codes(engine, actors["ther.a"]) == {"PA2"}
    assert _codes(engine, actors["ther.c"]) == {"PA1", "PC1"}
    assert _codes(engine, actors["sup.north"]) == {"PA2", "PB1"}
    assert _codes(engine, actors["sup.south"]) == {"PA1", "PC1"}
    after = {n: _refresh(engine, actors[n]) for n in before}
    for name in ("ther.a", "ther.c", "sup.north", "sup.south"):
        assert after[name].scope != before[name].scope, name  # type: ignore[union-attr]
    assert after["admin"].scope == before["admin"].scope  # type: ignore[union-attr]
    assert _events(engine, "assign")[-1] == {"actor": "admin", "patient_code": "PA1", "old": "ther.a",
                                             "new": "ther.c", "reason": "a holds fewer hours"}


def test_team_changes_move_what_supervisors_see(engine: Engine) -> None:
    actors = build_clinic(engine)
    with transaction(engine) as session:
        accounts.set_team(session, actor=actors["admin"], name="ther.b", team="South", reason="moved office")
        accounts.set_team(session, actor=actors["admin"], name="sup.north", team="  ")
    assert _codes(engine, actors["sup.south"]) == {"PB1", "PC1"}
    north = _refresh(engine, actors["sup.north"])
    assert north is not None and north.team is None and _codes(engine, north) == set()
    assert [(e["old"], e["new"]) for e in _events(engine, "set_team")] == [("North", "South"), ("North", None)]


def test_email_is_unique_and_lower_case(engine: Engine) -> None:
    actors = build_clinic(engine)
    with transaction(engine) as session:
        accounts.set_email(session, actor=actors["admin"], name="ther.a", email=" Anna@Clinic.org ")
    with pytest.raises(ValueError, match="already belongs to the account ther.a"), transaction(engine) as session:
        accounts.set_email(session, actor=actors["admin"], name="ther.b", email="anna@clinic.org")
    with session_factory(engine)() as session:
        assert session.scalar(select(Account.email).where(Account.name == "ther.a")) == "anna@clinic.org"


def test_account_table_and_filtered_audit_trail(engine: Engine) -> None:
    actors = build_clinic(engine)
    with transaction(engine) as session:
        authenticate(session, name="ther.a", password=PASSWORD)
        audit.record(session, actor=actors["ther.a"], action="view_patient", patient_code="PA1")
        audit.record(session, actor=actors["ther.a"], action="view_patient", patient_code="PA2")
    with session_factory(engine)() as session:
        table = accounts.account_table(session, actor=actors["admin"]).set_index("name")
        trail = accounts.audit_trail(session, actor=actors["admin"], who="ther.a", action="view_patient")
        by_code = accounts.audit_trail(session, actor=actors["admin"], patient_code="PA1")
        today = dt.datetime.now(dt.UTC).date()
        none_yet = accounts.audit_trail(session, actor=actors["admin"], since=today + dt.timedelta(days=1))
        all_today = accounts.audit_trail(session, actor=actors["admin"], since=today, until=today, limit=3)
        actions = accounts.audit_actions(session, actor=actors["admin"])
    assert table.loc["ther.a", "patients"] == 2 and table.loc["ther.empty", "patients"] == 0
    assert table.loc["ther.a", "last_login"] is not None and bool(table.loc["ther.a", "has_password"])
    assert table["last_login"].notna().sum() == 1
    assert trail["patient_code"].tolist() == ["PA2", "PA1"]  # newest first
    assert by_code["action"].tolist() == ["view_patient"]
    assert none_yet.empty and len(all_today) == 3
    assert {"create_account", "import", "login", "view_patient"} <= set(actions)
