"""Therapists' actions on flags: "addressed in feedback" (with a note) and "reopened".

Each action is a new row in ``flag_notes`` (nothing is overwritten, so the history stays);
:func:`db.flags.read_flags` lays the latest action over the computed status. Every action is
checked against what the actor may see (``db.access``, default-deny) and written to the audit
trail with the flag's old and new status and the note.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from db import audit
from db.access import Actor, may_see_patient
from db.models import FlagNote

ACTIONS = ("addressed", "reopened")
#: Longest note kept; a feedback note is a sentence or two, not the feedback itself.
MAX_NOTE = 1000


#: The ``flag_notes.instrument`` of a patient-level flag (missed questionnaires have no instrument).
PATIENT_LEVEL = ""


def latest_action(session: Session, *, patient_id: int, instrument: str, week: int, kind: str) -> str | None:
    """The latest action on one flag (``None`` when there is none). Internal: no access check."""
    stmt = (select(FlagNote.action)
            .where(FlagNote.patient_id == patient_id, FlagNote.instrument == instrument,
                   FlagNote.week == week, FlagNote.kind == kind)
            .order_by(FlagNote.id.desc()).limit(1))
    return session.scalar(stmt)


def mark_flag(session: Session, *, actor: Actor, patient_code: str, instrument: str, week: int,
              kind: str, action: str, note: str = "") -> FlagNote:
    """Mark a flag "addressed" in feedback (with a note) or "reopen" it; audited.

    Parameters
    ----------
    session
        The caller owns the transaction.
    actor
        Who acts; must be allowed to see the patient (``db.access.may_see_patient``).
    patient_code, instrument, week, kind
        The flag's key (one row of ``read_flags``).
    action
        ``"addressed"`` or ``"reopened"``.
    note
        What was done, e.g. "Asked in this week's feedback how the work together feels".
        Required for "addressed"; at most :data:`MAX_NOTE` characters.

    Raises
    ------
    LookupError
        "No such patient" alike for a patient that does not exist and one the actor may not see.
    ValueError
        An unknown action, a missing or too long note, or reopening a flag that is not addressed.
    """
    if action not in ACTIONS:
        raise ValueError(f"The action {action!r} does not exist; use 'addressed' or 'reopened'.")
    instrument = instrument if isinstance(instrument, str) and instrument else PATIENT_LEVEL
    note = (note or "").strip()
    if action == "addressed" and not note:
        raise ValueError("Write a short note on what you did in your feedback (e.g. 'Asked how the "
                         "work together feels'), then mark the flag addressed.")
    if len(note) > MAX_NOTE:
        raise ValueError(f"The note is {len(note)} characters long; shorten it to at most {MAX_NOTE}.")
    patient_id = may_see_patient(session, actor=actor, code=patient_code)
    if patient_id is None:
        raise LookupError("No such patient")
    before = latest_action(session, patient_id=patient_id, instrument=instrument, week=int(week), kind=kind)
    if action == "reopened" and before != "addressed":
        raise ValueError("This flag is not marked addressed, so there is nothing to reopen.")
    old_status = "addressed" if before == "addressed" else "not addressed"
    new_status = "addressed" if action == "addressed" else "not addressed"
    row = FlagNote(patient_id=patient_id, instrument=instrument, week=int(week), kind=kind,
                   action=action, note=note, by_account=actor.id or None)
    session.add(row)
    session.flush()
    audit.record(session, actor=actor, action=f"flag_{action}", patient_code=patient_code,
                 instrument=instrument, week=int(week), kind=kind, old_status=old_status,
                 new_status=new_status, note=note)
    return row
