"""Read functions: every read of patient data goes through ``db.access.visible_patients``.

They take a ``Session`` and the acting user (keyword-only) and return DataFrames in the
``core`` column contract (see ``core/__init__.py``), so ``core`` never sees ORM objects.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Executable, Text, and_, case, cast, func, or_, select
from sqlalchemy.orm import Session, aliased

from core.item_text import decode_items
from db.access import Actor, may_see_patient, visible_patients
from db.models import Account, DataRevision, FlagNote, Patient, Score, Setting

SCORE_COLUMNS = ["patient_id", "therapist_id", "instrument", "week", "score", "administered_on"]


def frame_of(rows: Sequence[Sequence[object]], columns: list[str]) -> pd.DataFrame:
    """A DataFrame from result rows, built column by column (pandas is slow on Row objects).

    No rows give empty ``object`` columns (pandas would make them float64, which then cannot be
    merged with a text column of another frame: a supervisor without a team)."""
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns}, columns=columns)
    return pd.DataFrame(dict(zip(columns, zip(*rows, strict=True), strict=True)), columns=columns)


def fetch_rows(session: Session, stmt: Executable) -> Sequence[Sequence[Any]]:
    """All rows of ``stmt`` as plain driver tuples (no per-row ``Row`` objects; values as the
    driver gives them: on SQLite, dates and timestamps are ISO text)."""
    result = session.connection().execute(stmt)
    cursor = getattr(result, "cursor", None)
    rows = cursor.fetchall() if cursor is not None else result.all()
    result.close()
    return rows


def utc_times(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True, format="ISO8601") if len(values) else \
        pd.Series(pd.DatetimeIndex([], tz="UTC"))


def date_objects(values: pd.Series) -> pd.Series:
    """Dates (ISO text on SQLite, ``date`` on PostgreSQL) as ``datetime.date`` objects or None."""
    stamp = pd.to_datetime(values, errors="coerce", format="ISO8601")
    return pd.Series(np.where(stamp.notna(), stamp.dt.date, None), index=values.index, dtype=object)


@dataclass(frozen=True)
class PatientInfo:
    """What a page needs to know about one patient."""

    code: str
    therapist: str | None
    therapist_display: str | None
    start_date: dt.date | None
    status: str
    planned_weeks: int | None
    status_since: dt.date | None = None


def read_scores(session: Session, *, actor: Actor | None, patient_code: str | None = None,
                patient_codes: Sequence[str] | None = None, instruments: list[str] | None = None,
                with_items: bool = False, as_of_week: int | None = None, items_as_text: bool = False) -> pd.DataFrame:
    """Scores the actor may see, in the core column contract, sorted by patient, instrument, week.

    ``patient_code`` / ``patient_codes`` keep one patient / these patients (in one query).
    ``with_items`` adds ``item_1 … item_K`` (float, NaN where absent); ``as_of_week`` keeps
    weeks <= N only, as if later weeks were not stored yet. ``items_as_text`` gives the item
    answers as stored instead, one column ``items`` of JSON text (``None`` where absent), for
    ``core.exporting.weekly_scores_csv``.

    Two reads: the patients the actor may see (``visible_patients``, with their codes and
    therapists) and their scores column by column (:func:`db.columnar.score_columns`: the
    ``scores`` table alone, no join repeating a code and a name on every row). When the actor
    sees every patient the scores are read without an id list; rows of a patient outside the
    visible set (one added meanwhile) are dropped, so the answer never exceeds the access rule.
    """
    from db import columnar

    therapist = aliased(Account)
    stmt = (select(Patient.id, Patient.code, therapist.name)
            .outerjoin(therapist, Patient.therapist_id == therapist.id)
            .where(Patient.id.in_(visible_patients(actor))))
    if patient_code is not None:
        stmt = stmt.where(Patient.code == patient_code)
    if patient_codes is not None:
        stmt = stmt.where(Patient.code.in_(list(patient_codes)))
    patients = fetch_rows(session, stmt)
    ids = np.array([p[0] for p in patients], dtype=np.int64)
    everyone = (patient_code is None and patient_codes is None and len(ids) > columnar.CHUNK
                and len(ids) == session.scalar(select(func.count()).select_from(Patient)))
    cols = columnar.score_columns(session, None if everyone else ids.tolist(), instruments=instruments or None,
                                  max_week=as_of_week, items=with_items or items_as_text, entered=False)
    at = pd.Index(ids).get_indexer(cols["_pid"])
    keep = at >= 0
    at = at[keep]
    codes = np.array([p[1] for p in patients], dtype=object)
    names = np.array([p[2] for p in patients], dtype=object)
    frame = pd.DataFrame({
        "patient_id": pd.Series(codes[at], dtype="str"),
        "therapist_id": pd.Series(names[at], dtype="str"),
        "instrument": columnar.strings(cols["instrument"])[keep].reset_index(drop=True),
        "week": cols["week"][keep],
        "score": cols["score"][keep],
        "administered_on": columnar.per_distinct(cols["administered_on"], date_objects).to_numpy(dtype=object)[keep],
    })
    if frame.empty:  # as pandas builds an empty frame from no rows: text columns of objects
        frame = frame.astype({"patient_id": object, "therapist_id": object, "instrument": object})
    if items_as_text:
        frame["items"] = np.asarray(cols["items"], dtype=object)[keep]
    elif with_items:
        matrix = decode_items(pd.Series(np.asarray(cols["items"], dtype=object)[keep], dtype=object))
        items = pd.DataFrame(matrix, columns=[f"item_{n + 1}" for n in range(matrix.shape[1])], index=frame.index)
        frame = pd.concat([frame, items], axis=1)
    # sorted by patient, instrument, week on integer keys (the codes ranked once, not compared per row)
    rank = np.empty(len(codes), dtype=np.int64)
    rank[np.argsort(codes.astype(str), kind="stable")] = np.arange(len(codes))
    instrument, _ = pd.factorize(frame["instrument"], sort=True)
    order = np.lexsort((frame["week"].to_numpy(), instrument, rank[at]))
    return frame.take(order).reset_index(drop=True)


def risk_item_coverage(session: Session, *, actor: Actor | None, patient_code: str | None = None) -> pd.DataFrame:
    """Per patient and instrument with a risk item (PHQ-9): how many of its questionnaires came
    without item answers and do not imply the risk item by their total, so the risk question
    could not be checked (``core.notices``). One grouped query, no scores fetched.

    Columns ``patient_id, instrument, unchecked, stored, last_unchecked_week, last_week``; only
    (patient, instrument) pairs with at least one unchecked questionnaire.
    """
    from core import instruments

    risky = {c: i for c, i in instruments.registry().items() if i.risk_items}
    cols = ["patient_id", "instrument", "unchecked", "stored", "last_unchecked_week", "last_week"]
    if not risky:
        return pd.DataFrame(columns=cols)
    no_items = or_(Score.items.is_(None), cast(Score.items, Text) == "null")
    # a total above this implies the risk item was answered above 0 (core.flags._risk_parts)
    implied_at = case(*[(Score.instrument == c, i.others_max) for c, i in risky.items()])
    unchecked = and_(no_items, Score.total <= implied_at)
    stmt = (select(Patient.code, Score.instrument, func.sum(case((unchecked, 1), else_=0)), func.count(),
                   func.max(case((unchecked, Score.week))), func.max(Score.week))
            .join(Patient, Score.patient_id == Patient.id)
            .where(Score.instrument.in_(list(risky)), Score.patient_id.in_(visible_patients(actor)))
            .group_by(Patient.code, Score.instrument))
    if patient_code is not None:
        stmt = stmt.where(Patient.code == patient_code)
    frame = pd.DataFrame.from_records(fetch_rows(session, stmt), columns=cols)
    frame = frame[pd.to_numeric(frame["unchecked"]).gt(0)].reset_index(drop=True)
    for c in ("unchecked", "stored", "last_unchecked_week", "last_week"):
        frame[c] = frame[c].astype("int64")
    return frame


def list_patients(session: Session, *, actor: Actor | None, patient_code: str | None = None) -> pd.DataFrame:
    """The patients the actor may see (only ``patient_code`` when given): code, therapist, status,
    start, weeks stored, last week."""
    therapist = aliased(Account)
    # last_week and weeks_stored are stored facts, kept by db.flagstore with every write.
    stmt = (select(Patient.code, therapist.name, therapist.display_name, therapist.team, Patient.status,
                   Patient.start_date, Patient.planned_weeks, Patient.last_week, Patient.weeks_stored,
                   Patient.status_since)
            .outerjoin(therapist, Patient.therapist_id == therapist.id)
            .where(Patient.id.in_(visible_patients(actor)))
            .order_by(Patient.code))
    if patient_code is not None:
        stmt = stmt.where(Patient.code == patient_code)
    cols = ["patient_id", "therapist_id", "therapist_name", "team", "status", "start_date",
            "planned_weeks", "last_week", "weeks_stored", "status_since"]
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
                       planned_weeks=patient.planned_weeks, status_since=patient.status_since)


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


#: The seeded demo accounts (``manage.py seed-demo``): the only ones the demo login page lists.
DEMO_ACCOUNTS_FILE = Path(__file__).resolve().parent.parent / "sample_data" / "demo_accounts.csv"


def demo_accounts(session: Session) -> pd.DataFrame | None:
    """The seeded demo accounts to show on the login page of the demo clinic (active, with a
    password); ``None`` on any other database. An account an admin added to the demo clinic is
    never listed: its name is not the public demo password's to advertise."""
    if not is_demo(session):
        return None
    seeded = pd.read_csv(DEMO_ACCOUNTS_FILE, dtype=str, keep_default_na=False)["name"].tolist()
    stmt = (select(Account.name, Account.role, Account.team, Account.display_name)
            .where(Account.active.is_(True), Account.password_hash.is_not(None), Account.name.in_(seeded))
            .order_by(Account.role, Account.name))
    return frame_of(session.execute(stmt).all(), ["name", "role", "team", "display_name"])


def data_version(session: Session) -> tuple[int, ...]:
    """A cheap fingerprint that changes whenever scores, patients, flag notes or accounts change.

    The one-row ``data_revision`` counter, bumped by every write (see
    ``db.engine.session_factory``): one primary-key read, however large the clinic. Cached
    loaders take it among their arguments, so flags are computed once per data change, not on
    every rerun.
    """
    return (int(session.scalar(select(DataRevision.n).where(DataRevision.id == 1)) or 0),)
