"""Flags as a user sees them: computed by ``core.flags`` from the scores the actor may see,
with the therapists' "addressed in feedback" actions laid over their status."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy.orm import Session

from core.caseload import current_weeks
from core.flags import DEFAULT_CONFIG, FlagConfig, compute_flags
from db.access import Actor
from db.notes import PATIENT_LEVEL
from db.queries import list_patients, read_flag_notes, read_scores

FLAG_KEY = ["patient_id", "instrument", "week", "kind"]


def read_flags(session: Session, *, actor: Actor | None, patient_code: str | None = None,
               as_of_week: int | None = None, today: dt.date | None = None,
               config: FlagConfig = DEFAULT_CONFIG, with_items: bool = True) -> pd.DataFrame:
    """Every flag for the patients the actor may see (one patient with ``patient_code``).

    A flag whose latest action is "addressed" has status ``addressed`` and carries the note
    (``note``, ``note_by``, ``note_at``); "reopened" gives it back its computed status.
    """
    scores = read_scores(session, actor=actor, patient_code=patient_code, with_items=with_items,
                         as_of_week=as_of_week)
    patients = list_patients(session, actor=actor, patient_code=patient_code)
    return flags_of(session, actor=actor, scores=scores, patients=patients, patient_code=patient_code,
                    as_of_week=as_of_week, today=today, config=config)


def flags_of(session: Session, *, actor: Actor | None, scores: pd.DataFrame, patients: pd.DataFrame,
             patient_code: str | None = None, as_of_week: int | None = None, today: dt.date | None = None,
             config: FlagConfig = DEFAULT_CONFIG) -> pd.DataFrame:
    """:func:`read_flags` over scores and patients the caller has already read with ``actor``'s
    rights (``db.queries.read_scores``, with items for the subscale rules, and
    ``db.queries.list_patients``), so a page that needs them too reads them once."""
    if patient_code is not None:
        patients = patients[patients["patient_id"] == patient_code]
    weeks = current_weeks(patients, today=today or dt.date.today(), as_of_week=as_of_week)
    flags = compute_flags(scores, config=config, as_of_week=as_of_week, current_week=weeks)
    notes = read_flag_notes(session, actor=actor, patient_code=patient_code)
    if as_of_week is not None:
        notes = notes.iloc[0:0]
    notes = notes.astype({"patient_id": "string", "instrument": "string", "week": "int64", "kind": "string"})
    # Patient-level flags (missed questionnaires) have no instrument; their notes are stored
    # under db.notes.PATIENT_LEVEL ("").
    keyed = flags.assign(instrument=flags["instrument"].fillna(PATIENT_LEVEL))
    merged = keyed.merge(notes.rename(columns={"by": "note_by", "at": "note_at"}), on=FLAG_KEY, how="left")
    flags = merged.assign(instrument=flags["instrument"].to_numpy())
    addressed = flags["action"].eq("addressed").fillna(False)
    flags["status"] = flags["status"].where(~addressed, "addressed")
    return flags.drop(columns="action")
