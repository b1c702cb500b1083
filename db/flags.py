"""Flags as a user sees them: the clinic's stored flags (``db.flagstore``) of the patients the
actor may see, with the calendar's part derived for today (``core.flag_time``) and the
therapists' "addressed in feedback" actions laid over their status.

No page recomputes flags from scores. Only ``as_of_week`` (the monitor as it stood in week N,
for the command line) computes from the stored scores, under the same frozen rule set.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd
from sqlalchemy.orm import Session

from core import clock
from core.caseload import current_weeks
from core.flags import FlagConfig, compute_flags
from db.access import Actor
from db.flagstore import read_flags_stored
from db.notes import PATIENT_LEVEL
from db.parameters import ensure_rule_set, flag_config
from db.queries import list_patients, read_flag_notes, read_scores

FLAG_KEY = ["patient_id", "instrument", "week", "kind"]


def read_flags(session: Session, *, actor: Actor | None, patient_code: str | None = None,
               as_of_week: int | None = None, today: dt.date | None = None,
               config: FlagConfig | None = None, without_kinds: Sequence[str] = ()) -> pd.DataFrame:
    """Every flag for the patients the actor may see (one patient with ``patient_code``).

    The ``core.flags.FLAG_COLUMNS`` plus ``administered_on``, ``rules_version`` and
    ``raised_at``. A flag whose latest action is "addressed" has status ``addressed`` and
    carries the note (``note``, ``note_by``, ``note_at``); "reopened" gives it back its status.
    ``computed_status`` keeps the status the monitor computed (``open``, ``repaired``,
    ``unrepaired``) under an "addressed", so that a page can say both what the therapist did and
    what the alliance did. ``without_kinds`` leaves those kinds out (read so in SQL).
    """
    if as_of_week is None:
        flags = read_flags_stored(session, actor=actor, patient_code=patient_code, today=today, config=config,
                                  without_kinds=without_kinds)
    else:
        flags = _as_of(session, actor=actor, patient_code=patient_code, as_of_week=as_of_week, today=today,
                       config=config)
        flags = flags[~flags["kind"].isin(list(without_kinds))].reset_index(drop=True)
    return with_notes(session, flags, actor=actor, patient_code=patient_code, keep=as_of_week is None)


def _as_of(session: Session, *, actor: Actor | None, patient_code: str | None, as_of_week: int,
           today: dt.date | None, config: FlagConfig | None) -> pd.DataFrame:
    """The monitor as it stood in week ``as_of_week``: computed from weeks <= N of the stored scores."""
    rule_set = ensure_rule_set(session)
    cfg = config or flag_config(rule_set)
    scores = read_scores(session, actor=actor, patient_code=patient_code, with_items=True, as_of_week=as_of_week)
    patients = list_patients(session, actor=actor, patient_code=patient_code)
    weeks = current_weeks(patients, today=today or clock.today(), as_of_week=as_of_week)
    flags = compute_flags(scores, config=cfg, as_of_week=as_of_week, current_week=weeks)
    return flags.assign(rules_version=rule_set.version)


def with_notes(session: Session, flags: pd.DataFrame, *, actor: Actor | None, patient_code: str | None = None,
               keep: bool = True) -> pd.DataFrame:
    """``flags`` with the latest "addressed"/"reopened" action of each laid over its status.

    ``keep=False`` (the ``as_of_week`` view) shows no actions: they were taken later.
    """
    notes = read_flag_notes(session, actor=actor, patient_code=patient_code)
    if not keep:
        notes = notes.iloc[0:0]
    notes = notes.astype({"patient_id": "string", "instrument": "string", "week": "int64", "kind": "string"})
    # Patient-level flags (missed questionnaires) have no instrument; their notes are stored
    # under db.notes.PATIENT_LEVEL ("").
    keyed = flags.assign(instrument=flags["instrument"].fillna(PATIENT_LEVEL))
    merged = keyed.merge(notes.rename(columns={"by": "note_by", "at": "note_at"}), on=FLAG_KEY, how="left")
    out = merged.assign(instrument=flags["instrument"].to_numpy())
    addressed = out["action"].eq("addressed").fillna(False)
    # what the alliance did (open, repaired, unrepaired) stays readable beside what the therapist did
    out["computed_status"] = out["status"]
    out["status"] = out["status"].where(~addressed, "addressed")
    return out.drop(columns="action")
