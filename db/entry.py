"""Weekly entry of one questionnaire, with an optimistic version check.

A new score is written with version 1. Editing a stored score needs the version that was
read when editing began and a reason; the update only happens while that version is still
stored (``UPDATE … WHERE version = :read``), so of two people editing the same week one
wins and the other gets :class:`StaleEntry` with a clear message instead of silently
overwriting. The old value goes to the audit trail with the reason. Every value passes the
one validator (:func:`core.validation.validate_scores`). Callers own the transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import cast

import pandas as pd
from sqlalchemy import CursorResult, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import instruments
from core.validation import validate_scores
from db import audit, flagstore
from db.access import Actor, may_see_patient
from db.models import Account, Patient, Score, utcnow

NO_SUCH_PATIENT = ("No such patient. Check the code, or choose a patient from the list; you can only "
                   "enter scores for patients on your own caseload (supervisors: your team's).")
ENTRY_ROLES = ("therapist", "supervisor", "admin")


class NoSuchPatient(LookupError):
    """The patient does not exist or the actor may not see it (answered alike)."""


class StaleEntry(Exception):
    """Someone else saved this questionnaire after it was read; reload and enter again."""


@dataclass(frozen=True)
class StoredEntry:
    """The stored questionnaire of one patient, instrument and week."""

    total: float
    items: list[int] | None
    version: int
    source: str
    entered_by: str | None
    entered_at: dt.datetime
    administered_on: dt.date | None


def _patient_id(session: Session, actor: Actor, code: str) -> int:
    if actor.role not in ENTRY_ROLES:
        raise NoSuchPatient(NO_SUCH_PATIENT)
    pid = may_see_patient(session, actor=actor, code=code)
    if pid is None:
        raise NoSuchPatient(NO_SUCH_PATIENT)
    return pid


def read_entry(session: Session, *, actor: Actor, code: str, instrument: str, week: int) -> StoredEntry | None:
    """The stored questionnaire, or ``None`` when that week has none yet.

    Raises :class:`NoSuchPatient` alike for unknown and forbidden patients.
    """
    pid = _patient_id(session, actor, code)
    row = session.execute(
        select(Score.total, Score.items, Score.version, Score.source, Account.name, Score.entered_at,
               Score.administered_on)
        .outerjoin(Account, Score.entered_by == Account.id)
        .where(Score.patient_id == pid, Score.instrument == instrument, Score.week == week)).one_or_none()
    if row is None:
        return None
    return StoredEntry(total=float(row[0]), items=list(row[1]) if row[1] else None, version=int(row[2]),
                       source=row[3], entered_by=row[4], entered_at=row[5], administered_on=row[6])


def save_entry(session: Session, *, actor: Actor, code: str, instrument: str, week: int,
               items: list[int | None] | None = None, total: float | None = None,
               administered_on: dt.date | None = None, read_version: int | None = None,
               reason: str | None = None) -> tuple[str, int]:
    """Save one questionnaire; returns ``(what, version)`` with what in new/changed/unchanged.

    Parameters
    ----------
    items
        Item responses, item 1 first (all of the instrument's items), or ``None`` to give
        only ``total``.
    total
        The total; computed from ``items`` when those are given (a given total must agree).
    read_version
        For an edit: the version read when editing began (``None`` for a new entry).
    reason
        For an edit: why the stored value changes (kept in the audit trail with the old value).

    Raises
    ------
    NoSuchPatient
        Unknown patient, or one the actor may not see.
    ValueError
        A value the validator refuses, or an edit without version or reason.
    StaleEntry
        Someone else saved this questionnaire after ``read_version`` was read (or saved a
        first entry while this one was being typed).
    """
    pid = _patient_id(session, actor, code)
    inst = instruments.get(instrument)
    therapist = session.scalar(select(Account.name).join(Patient, Patient.therapist_id == Account.id)
                               .where(Patient.id == pid)) or actor.name
    cells = {"patient_id": code, "therapist_id": therapist, "week": str(week), "instrument": instrument,
             "score": "" if total is None else repr(float(total)),
             "administered_on": administered_on.isoformat() if administered_on else ""}
    if items is not None:
        if len(items) != inst.n_items:
            raise ValueError(f"{inst.code} has {inst.n_items} items; give a response to each of them, or only "
                             f"the total.")
        cells |= {f"item_{n}": "" if v is None else str(v) for n, v in enumerate(items, start=1)}
    result = validate_scores(pd.DataFrame([cells], dtype="string"), first_row=1, unit="entry")
    if not result.ok:
        raise ValueError(" ".join(f"{e.column.replace('_', ' ').capitalize()} {e.reason}" for e in result.errors))
    row = result.scores.iloc[0]
    new_total = float(row["score"])
    new_items = [int(row[f"item_{n}"]) for n in range(1, inst.n_items + 1)] if items is not None else None
    stored = read_entry(session, actor=actor, code=code, instrument=instrument, week=week)
    now = utcnow()
    entered_by = actor.id or None
    if stored is None:
        if read_version is not None:
            raise StaleEntry(f"The {instrument} of week {week} for patient {code} was removed while you were "
                             f"editing it; reload the page and enter it again.")
        try:
            with session.begin_nested():
                session.add(Score(patient_id=pid, instrument=instrument, week=week, total=new_total, items=new_items,
                                  administered_on=administered_on, source="entry", entered_by=entered_by,
                                  entered_at=now, version=1))
        except IntegrityError as exc:
            raise StaleEntry(f"Someone else saved the {instrument} of week {week} for patient {code} while you "
                             f"were entering it; reload the page to see their values, then edit them if "
                             f"needed.") from exc
        if administered_on is not None:  # the first dated entry starts an undated patient's calendar
            session.execute(update(Patient).where(Patient.id == pid, Patient.start_date.is_(None))
                            .values(start_date=administered_on - dt.timedelta(days=7 * (week - 1))))
        flagstore.refresh_patients(session, [pid])  # the patient's flags, in the same transaction
        audit.record(session, actor=actor, action="enter_score", patient_code=code, instrument=instrument,
                     week=week, source="entry")
        return "new", 1
    if read_version is None:
        raise StaleEntry(f"Week {week} already has a {instrument} for patient {code} (saved by "
                         f"{stored.entered_by or 'an import'}); reload the page to edit it.")
    if stored.version != read_version:
        raise StaleEntry(_stale(code, instrument, week, stored))
    if new_total == stored.total and (new_items is None or new_items == stored.items):
        return "unchanged", stored.version
    if not reason or not reason.strip():
        raise ValueError("Changing a stored score needs a reason (for example \"typing error on paper form\"); "
                         "write one and save again.")
    done = session.execute(
        update(Score).where(Score.patient_id == pid, Score.instrument == instrument, Score.week == week,
                            Score.version == read_version)
        .values(total=new_total, items=new_items if new_items is not None else stored.items,
                administered_on=administered_on or stored.administered_on, source="entry",
                entered_by=entered_by, entered_at=now, version=read_version + 1)
        .execution_options(synchronize_session=False))
    if cast(CursorResult, done).rowcount != 1:  # an UPDATE's result is a CursorResult
        fresh = read_entry(session, actor=actor, code=code, instrument=instrument, week=week)
        raise StaleEntry(_stale(code, instrument, week, fresh))
    flagstore.refresh_patients(session, [pid])  # the patient's flags, in the same transaction
    audit.record(session, actor=actor, action="change_score", patient_code=code, instrument=instrument, week=week,
                 old=stored.total, new=new_total, old_items=stored.items, new_items=new_items,
                 old_version=stored.version, reason=reason.strip())
    return "changed", read_version + 1


def _stale(code: str, instrument: str, week: int, stored: StoredEntry | None) -> str:
    who = f" by {stored.entered_by}" if stored is not None and stored.entered_by else ""
    return (f"Someone else changed the {instrument} of week {week} for patient {code}{who} after you opened it; "
            f"your change was not saved. Reload the page to see the current values, then edit again.")
