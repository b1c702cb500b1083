"""Reads for the supervisor's caseload scan and the clinic meeting, access-checked.

Every function takes a ``Session`` and the acting user keyword-only and reads only through
``db.queries``/``db.flags``, which filter with ``db.access.visible_patients`` (default-deny):
a supervisor gets their team's patients, an admin everyone's, a therapist their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd
from sqlalchemy.orm import Session

from core import clock
from db.access import Actor
from db.flags import read_flags
from db.queries import list_patients, read_scores


def flag_dates(flags: pd.DataFrame, *, patients: pd.DataFrame, today: dt.date) -> pd.DataFrame:
    """``flags`` with ``flag_date`` and ``age_days`` added (a copy).

    ``flag_date`` is the date the flag's week was administered: the stored flag's
    ``administered_on`` (the score of that patient, instrument and week) when known, else the
    patient's ``start_date + 7·(week − 1)`` days (e.g. a missed week has no score); ``<NA>`` when
    neither is known. ``age_days`` = ``today − flag_date`` in days (Int64).
    """
    out = flags.copy()
    starts = patients.set_index("patient_id")["start_date"]
    start = pd.to_datetime(out["patient_id"].map(starts), errors="coerce")
    planned = start + pd.to_timedelta(7 * (out["week"].astype("int64") - 1), unit="D")
    given = out["administered_on"] if "administered_on" in out.columns else pd.Series(None, index=out.index)
    stamp = pd.to_datetime(given, errors="coerce").fillna(planned)
    out["flag_date"] = stamp.dt.date.where(stamp.notna(), None)
    out["age_days"] = pd.array((pd.Timestamp(today) - stamp).dt.days, dtype="Int64")
    return out


def read_alerts(session: Session, *, actor: Actor | None, today: dt.date | None = None,
                without_kinds: Sequence[str] = ()) -> pd.DataFrame:
    """Every flag of the patients the actor may see, with its age and the therapist's team.

    The stored flags as :func:`db.flags.read_flags` gives them (``status`` "addressed",
    ``note``, ``note_by``, ``note_at`` from the therapists' actions; ``raised_at``), plus
    ``therapist_name`` (display name), ``team``, ``start_date``, ``last_week`` (the patient's latest
    stored week), ``flag_date`` and ``age_days``
    (see :func:`flag_dates`). No scores are read. Filtering to open alerts is
    :func:`core.meeting.caseload_table`'s job; ``without_kinds`` (e.g.
    ``core.meeting.NOT_ALERTS``) leaves kinds it would drop unread.
    """
    today = today or clock.today()
    patients = list_patients(session, actor=actor)
    flags = read_flags(session, actor=actor, today=today, without_kinds=without_kinds)
    out = flag_dates(flags, patients=patients, today=today)
    info = patients[["patient_id", "therapist_name", "team", "start_date", "last_week"]]
    return out.merge(info, on="patient_id", how="left")


def read_scope(session: Session, *, actor: Actor | None, team: str | None = None,
               started_from: dt.date | None = None, started_to: dt.date | None = None,
               instruments: list[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The patients and scores of a clinic-meeting scope, within what the actor may see.

    Parameters
    ----------
    team : str, optional
        Only patients of therapists in this team (``None``: every visible patient).
    started_from, started_to : date, optional
        Only patients who started treatment in this period (inclusive); a patient without a
        start date is left out when a period is given.
    instruments : list of str, optional
        Only these instruments' scores.

    Returns
    -------
    (patients, scores)
        ``db.queries.list_patients`` rows and ``db.queries.read_scores`` rows of the scope.
    """
    patients = list_patients(session, actor=actor)
    keep = pd.Series(True, index=patients.index)
    if team is not None:
        keep &= patients["team"].eq(team).fillna(False).astype(bool)
    start = pd.to_datetime(patients["start_date"], errors="coerce")
    if started_from is not None:
        keep &= start.ge(pd.Timestamp(started_from)).fillna(False).astype(bool)
    if started_to is not None:
        keep &= start.le(pd.Timestamp(started_to)).fillna(False).astype(bool)
    patients = patients.loc[keep].reset_index(drop=True)
    scores = read_scores(session, actor=actor, instruments=instruments)
    scores = scores[scores["patient_id"].isin(patients["patient_id"])].reset_index(drop=True)
    return patients, scores


def list_teams(session: Session, *, actor: Actor | None) -> list[str]:
    """The teams of the therapists whose patients the actor may see, sorted."""
    teams = list_patients(session, actor=actor)["team"].dropna().astype(str)
    return sorted(teams.unique().tolist())
