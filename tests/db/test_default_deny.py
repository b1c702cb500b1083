"""Access control lives in db/ and is default-deny (issue 14): every public db/ function that reads
or writes clinic data through a session takes the acting user, and one with no actor, or an actor
of the wrong role, gets nothing.

The few functions that take a session and no actor are listed below with why: the login itself
(there is no actor yet), the write path's internals (called by a write that has checked its actor),
the schema and the audit chain's own machinery. A new public function must take the actor or be
added here with its reason, which a reviewer then reads."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pandas as pd
import pytest
from sqlalchemy import select

import db
from db.access import Actor
from db.engine import make_engine, session_factory
from db.models import Account

NO_ACTOR = {
    "api_clients.authenticate": "an integration client logging in with its token: there is no actor yet",
    "audit.signing_key": "the audit chain's key", "audit.key_problem": "start-up check of the audit key",
    "audit.read_events": "the chain's own reader, for verify and backup", "audit.verify_chain": "chain check",
    "audit.verify_and_checkpoint": "chain check (the admin page checks the role first, ui.admin.verify)",
    "auth.login_wait": "the login throttle: before anyone is logged in", "auth.authenticate": "the password login",
    "auth.authenticate_sso": "the single sign-on login",
    "columnar.score_columns": "bulk reader behind read_scores (which passes the actor's ids) and the flag store",
    "columnar.insert_columns": "the flag store's bulk insert of flags and summaries, inside a write",
    "engine.alembic_config": "schema", "engine.migration_lock_path": "schema", "engine.migration_lock": "schema",
    "engine.upgrade": "schema", "engine.downgrade": "schema", "engine.is_current": "schema",
    "engine.bump_revision": "the write lock of every write", "engine.session_factory": "sessions",
    "engine.transaction": "sessions",
    "flagstore.scores_for_flags": "the write path's read of the patients it is writing",
    "flagstore.refresh_patients": "called by a write, in its transaction, for the patients it wrote",
    "flagstore.refresh_all": "a change of rule set or a restore (admin commands), recomputing everybody",
    "flagstore.is_current": "start-up check", "flagstore.ensure_current": "start-up recompute",
    "flagstore.check": "refresh-flags --check (command line)", "flagstore.stored_count": "a count, no patient data",
    "mfa.required_roles": "the clinic's rule, read at login", "mfa.secret_box": "the key of the stored secrets",
    "mfa.login_step": "the login's second step: no actor yet", "mfa.start_challenge": "login, no actor yet",
    "mfa.read_challenge": "login, no actor yet", "mfa.consume_challenge": "login, no actor yet",
    "notes.latest_action": "the flag store's read of a flag's note, inside a write",
    "notifications.stored_events": "the write path's outbox", "notifications.enqueue_new": "the write path's outbox",
    "notifications.last_id": "the worker's position in the outbox",
    "parameters.week1_sds": "freeze-parameters (admin command) and its admin page form, which check the role",
    "parameters.current_rule_set": "the rule set in force (no patient data)",
    "parameters.rule_sets": "the versions of the rule set (no patient data)",
    "parameters.ensure_rule_set": "start-up: the literature defaults for a new clinic",
    "queries.fetch_rows": "a driver helper", "queries.get_setting": "a clinic setting (no patient data)",
    "queries.is_demo": "whether this is the demo clinic", "queries.demo_accounts": "the demo login page's list",
    "queries.data_version": "a counter (no patient data)",
    "summaries.write": "called by the flag store inside a write, for the patients it wrote",
    "sessions.resume_session": "who is this cookie: before there is an actor",
    "sessions.resume_by_id": "who is this session: before there is an actor",
    "sessions.audit_refusal": "audits a refused cookie",
    "sessions.revoke_session": "logout of the cookie's own session",
    "sessions.revoke_account_sessions": "called by account changes that checked the admin",
}


def _public_db_functions() -> dict[str, inspect.Signature]:
    found = {}
    for info in pkgutil.iter_modules(db.__path__):
        if info.name.startswith("_") or info.name == "migrations":
            continue
        module = importlib.import_module(f"db.{info.name}")
        for name, func in vars(module).items():
            if not name.startswith("_") and inspect.isfunction(func) and func.__module__ == module.__name__:
                found[f"{info.name}.{name}"] = inspect.signature(func)
    return found


def test_every_function_with_a_session_takes_the_actor_or_says_why_not() -> None:
    functions = _public_db_functions()
    without = sorted(n for n, sig in functions.items()
                     if ({"session", "engine"} & set(sig.parameters)) and "actor" not in sig.parameters)
    unexplained = [n for n in without if n not in NO_ACTOR]
    assert not unexplained, f"db/ functions reading or writing without an actor, and no reason given: {unexplained}"
    stale = sorted(set(NO_ACTOR) - set(without))
    assert not stale, f"listed as taking no actor but they do now (or are gone): {stale}"
    assert sum("actor" in sig.parameters for sig in functions.values()) >= 60


@pytest.fixture(scope="module")
def people(demo_db: str):  # type: ignore[no-untyped-def]
    engine = make_engine(demo_db)
    with session_factory(engine)() as session:
        accounts = {a.name: Actor(id=a.id, name=a.name, role=a.role, team=a.team)
                    for a in session.scalars(select(Account))}
    yield engine, accounts
    engine.dispose()


def test_the_readers_give_no_actor_nothing_and_a_therapist_only_their_own(people) -> None:  # type: ignore[no-untyped-def]
    from db import caseload, flags, queries, summaries

    engine, accounts = people
    anna = accounts["therapist.anna"]
    nobody = Actor(id=anna.id, name=anna.name, role="receptionist", team=anna.team)  # a role with no rule
    with session_factory(engine)() as session:
        own = set(queries.list_patients(session, actor=anna)["patient_id"])
        assert own
        readers = {
            "queries.read_scores": lambda a: queries.read_scores(session, actor=a, with_items=True),
            "queries.list_patients": lambda a: queries.list_patients(session, actor=a),
            "queries.risk_item_coverage": lambda a: queries.risk_item_coverage(session, actor=a),
            "flags.read_flags": lambda a: flags.read_flags(session, actor=a),
            "caseload.read_alerts": lambda a: caseload.read_alerts(session, actor=a),
            "summaries.read_stored": lambda a: summaries.read_stored(session, actor=a),
            "summaries.read": lambda a: summaries.read(session, actor=a)[0].reset_index(),
            "summaries.read (clinical range)": lambda a: summaries.read(session, actor=a)[1],
        }
        for name, read in readers.items():
            for stranger in (None, nobody):
                assert len(read(stranger)) == 0, (name, stranger)
            frame: pd.DataFrame = read(anna)
            assert set(frame["patient_id"]) <= own, name
        for code in ("P00002", "P00003", "P00004"):  # other therapists' patients
            if code in own:
                continue
            assert queries.patient_info(session, actor=anna, code=code) is None
            assert queries.read_scores(session, actor=anna, patient_code=code).empty
