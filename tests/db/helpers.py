"""Small builders for database tests (synthetic data only)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import Engine

from core.validation import validate_scores
from db.access import SYSTEM, Actor
from db.engine import transaction
from db.writes import apply_import, create_account, plan_import

PASSWORD = "correct horse battery"


def scores_frame(rows: list[tuple]) -> pd.DataFrame:
    """Validated scores from (patient, therapist, week, instrument, score) tuples."""
    raw = pd.DataFrame([[str(v) for v in r] for r in rows],
                       columns=["patient_id", "therapist_id", "week", "instrument", "score"], dtype="string")
    result = validate_scores(raw)
    assert result.ok, result.errors
    return result.scores


def build_clinic(engine: Engine) -> dict[str, Actor]:
    """Two teams: North (ther.a, ther.b, sup.north) and South (ther.c, sup.south); an admin;
    a therapist with no caseload and a supervisor with no team. Patients: PA1, PA2 (ther.a),
    PB1 (ther.b), PC1 (ther.c)."""
    people = [("ther.a", "therapist", "North"), ("ther.b", "therapist", "North"),
              ("ther.c", "therapist", "South"), ("ther.empty", "therapist", "North"),
              ("sup.north", "supervisor", "North"), ("sup.south", "supervisor", "South"),
              ("sup.noteam", "supervisor", None), ("admin", "admin", None)]
    actors = {}
    with transaction(engine) as session:
        for name, role, team in people:
            account = create_account(session, actor=SYSTEM, name=name, role=role, password=PASSWORD, team=team)
            actors[name] = Actor.from_account(account)
        rows = [(p, t, w, "WAI-SR", 40 + w) for p, t in
                [("PA1", "ther.a"), ("PA2", "ther.a"), ("PB1", "ther.b"), ("PC1", "ther.c")] for w in (1, 2, 3)]
        apply_import(session, actor=SYSTEM, plan=plan_import(session, actor=SYSTEM, scores=scores_frame(rows)))
    return actors


def enrol_mfa(engine: Engine, actor: Actor, *, when: dt.datetime | None = None) -> str:
    """Enrol ``actor`` in two-step login at ``when`` (default: ten minutes ago, so a code of now
    is a later time step and not refused as a replay); the TOTP secret."""
    import pyotp

    from db import mfa

    at = when or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    with transaction(engine) as session:
        secret = mfa.begin_enrolment(session, actor=actor, clock=lambda: at)
    with transaction(engine) as session:
        mfa.confirm_enrolment(session, actor=actor, code=pyotp.TOTP(secret).at(at), clock=lambda: at)
    return secret
