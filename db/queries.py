"""Read functions: every read of patient data goes through ``db.access.visible_patients``.

They take a ``Session`` and the acting user (keyword-only) and return DataFrames in the
``core`` column contract (see ``core/__init__.py``), so ``core`` never sees ORM objects.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from db.access import Actor, may_see_patient, visible_patients
from db.models import Account, DataRevision, FlagNote, Patient, Score, Setting

SCORE_COLUMNS = ["patient_id", "therapist_id", "instrument", "week", "score", "administered_on"]


def frame_of(rows: Sequence[Sequence[object]], columns: list[str]) -> pd.DataFrame:
    """A DataFrame from result rows, built column by column (pandas is slow on Row objects)."""
    data = list(zip(*rows, strict=True)) if rows else [[] for _ in columns]
    return pd.DataFrame(dict(zip(columns, data, strict=True)), columns=columns)


@dataclass(frozen=True)
class PatientInfo:
    """What a page needs to know about one patient."""

    code: str
    therapist: str | None
    therapist_display: str | None
    start_date: dt.date | None
    status: str
    planned_weeks: int | None


def read_scores(session: Session, *, actor: Actor | None, patient_code: str | None = None,
                instruments: list[str] | None = None, with_items: bool = False,
                as_of_week: int | None = None) -> pd.DataFrame:
    """Scores the actor may see, in the core column contract, sorted by patient, instrument, week.

    ``with_items`` adds ``item_1 … item_K`` (float, NaN where absent); ``as_of_week`` keeps
    weeks <= N only, as if later weeks were not stored yet.
    """
    therapist = aliased(Account)
    cols = [Patient.code, therapist.name, Score.instrument, Score.week, Score.total, Score.administered_on]
    if with_items:
        cols.append(Score.items)
    stmt = (select(*cols).join(Patient, Score.patient_id == Patient.id)
            .outerjoin(therapist, Patient.therapist_id == therapist.id)
            .where(Score.patient_id.in_(visible_patients(actor))))
    if patient_code is not None:
        stmt = stmt.where(Patient.code == patient_code)
    if instruments:
        stmt = stmt.where(Score.instrument.in_(instruments))
    if as_of_week is not None:
        stmt = stmt.where(Score.week <= as_of_week)
    # Core execution on the session's connection (same transaction): no ORM row loading.
    rows = session.connection().execute(stmt).all()
    frame = frame_of(rows, SCORE_COLUMNS + (["items"] if with_items else []))
    frame["week"] = frame["week"].astype("int64")
    frame["score"] = frame["score"].astype("float64")
    if with_items:
        lists = frame.pop("items")
        width = int(lists.map(lambda v: len(v) if v else 0).max()) if len(lists) else 0
        matrix = np.full((len(frame), width), np.nan)
        for i, values in enumerate(lists):
            if values:
                matrix[i, : len(values)] = values
        for n in range(width):
            frame[f"item_{n + 1}"] = matrix[:, n]
    return frame.sort_values(["patient_id", "instrument", "week"], ignore_index=True)


def list_patients(session: Session, *, actor: Actor | None, patient_code: str | None = None) -> pd.DataFrame:
    """The patients the actor may see (only ``patient_code`` when given): code, therapist, status,
    start, weeks stored, last week."""
    therapist = aliased(Account)
    # One grouped join from the visible patients: the scores join uses the
    # (patient_id, instrument, week) index instead of aggregating the whole table.
    stmt = (select(Patient.code, therapist.name, therapist.display_name, therapist.team, Patient.status,
                   Patient.start_date, Patient.planned_weeks, func.max(Score.week),
                   func.count(func.distinct(Score.week)))
            .outerjoin(therapist, Patient.therapist_id == therapist.id)
            .outerjoin(Score, Score.patient_id == Patient.id)
            .where(Patient.id.in_(visible_patients(actor)))
            .group_by(Patient.id, Patient.code, therapist.name, therapist.display_name, therapist.team,
                      Patient.status, Patient.start_date, Patient.planned_weeks)
            .order_by(Patient.code))
    if patient_code is not None:
        stmt = stmt.where(Patient.code == patient_code)
    cols = ["patient_id", "therapist_id", "therapist_name", "team", "status", "start_date",
            "planned_weeks", "last_week", "weeks_stored"]
    return frame_of(session.execute(stmt).all(), cols)


def patient_info(session: Session, *, actor: Actor | None, code: str) -> PatientInfo | None:
    """The patient when the actor may see it; ``None`` alike for unknown and forbidden codes."""
    pid = may_see_patient(session, actor=actor, code=code)
    if pid is None:
        return None
    patient = session.get(Patient, pid)
    if patient is None:
        return None
    therapist = patient.therapist
    return PatientInfo(code=patient.code, therapist=therapist.name if therapist else None,
                       therapist_display=therapist.display_name if therapist else None,
                       start_date=patient.start_date, status=patient.status,
                       planned_weeks=patient.planned_weeks)


def read_flag_notes(session: Session, *, actor: Actor | None,
                    patient_code: str | None = None) -> pd.DataFrame:
    """The latest "addressed"/"reopened" action per flag the actor may see."""
    author = aliased(Account)
    stmt = (select(Patient.code, FlagNote.instrument, FlagNote.week, FlagNote.kind, FlagNote.action,
                   FlagNote.note, author.name, FlagNote.at, FlagNote.id)
            .join(Patient, FlagNote.patient_id == Patient.id)
            .outerjoin(author, FlagNote.by_account == author.id)
            .where(FlagNote.patient_id.in_(visible_patients(actor))))
    if patient_code is not None:
        stmt = stmt.where(Patient.code == patient_code)
    cols = ["patient_id", "instrument", "week", "kind", "action", "note", "by", "at", "id"]
    frame = frame_of(session.execute(stmt).all(), cols)
    frame = frame.sort_values("id").drop_duplicates(["patient_id", "instrument", "week", "kind"], keep="last")
    return frame.drop(columns="id").reset_index(drop=True)


def list_accounts(session: Session, *, actor: Actor | None) -> pd.DataFrame:
    """Accounts (admins: all; others: none — account management is an admin's task)."""
    cols = ["name", "display_name", "role", "team", "active", "email"]
    if actor is None or actor.role != "admin" or not actor.active:
        return pd.DataFrame(columns=cols)
    stmt = select(Account.name, Account.display_name, Account.role, Account.team, Account.active,
                  Account.email).order_by(Account.name)
    return frame_of(session.execute(stmt).all(), cols)


def get_setting(session: Session, key: str, default: str | None = None) -> str | None:
    """A clinic-wide setting (no patient data)."""
    value = session.scalar(select(Setting.value).where(Setting.key == key))
    return default if value is None else value


def is_demo(session: Session) -> bool:
    """True on a database seeded with the synthetic demo clinic."""
    return get_setting(session, "demo") == "1"


def demo_accounts(session: Session) -> pd.DataFrame | None:
    """The accounts to show on the login page of the demo clinic; ``None`` on any other database."""
    if not is_demo(session):
        return None
    stmt = (select(Account.name, Account.role, Account.team, Account.display_name)
            .where(Account.active.is_(True), Account.password_hash.is_not(None)).order_by(Account.role, Account.name))
    return frame_of(session.execute(stmt).all(), ["name", "role", "team", "display_name"])


def data_version(session: Session) -> tuple[int, ...]:
    """A cheap fingerprint that changes whenever scores, patients, flag notes or accounts change.

    The one-row ``data_revision`` counter, bumped by every write (see
    ``db.engine.session_factory``): one primary-key read, however large the clinic. Cached
    loaders take it among their arguments, so flags are computed once per data change, not on
    every rerun.
    """
    return (int(session.scalar(select(DataRevision.n).where(DataRevision.id == 1)) or 0),)
