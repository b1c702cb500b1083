"""The time-dependent part of the flags, derived at read time from stored per-patient facts.

Stored flags (``db.flagstore``) hold what the data decide: ``core.flags.compute_flags`` with
each patient's "now" at their last stored week. Two things also depend on the calendar, and are
laid over the stored flags when they are read, from the patient's stored facts (last stored
week, start date, status, planned weeks; ``core.caseload.current_weeks``), never from scores:

* **repair windows**: a rupture whose stored status is ``open`` reads ``unrepaired`` once the
  current treatment week has reached ``week + repair.weeks`` (what ``compute_flags`` gives
  with the current week as "now": no stored week can repair it any more);
* **the trailing run of missed questionnaires**: when the current week is at least
  ``missed.weeks`` past the last stored week, one ``missed`` flag for week
  ``last_week + missed.weeks``, worded as ``compute_flags`` words it. Runs inside the course
  are stored flags (they follow from the stored weeks alone).

``derive(stored, facts, current_week=...)`` equals ``compute_flags(scores,
current_week=...)`` row for row (``tests/db/test_flagstore.py`` checks it on the demo clinic).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from core.flags import (
    FLAG_COLUMNS,
    FlagConfig,
    _fmt,  # the one number format of flag sentences
)

#: Row order of every flags frame.
SORT = ["patient_id", "week", "instrument", "kind"]


def _now(facts: pd.DataFrame, current_week: pd.Series) -> pd.Series:
    """The current week per patient (indexed by code); the last stored week where unknown."""
    last = pd.to_numeric(facts.set_index("patient_id")["last_week"], errors="coerce").astype("float64")
    cw = pd.to_numeric(current_week, errors="coerce").astype("float64")
    cw.index = cw.index.astype(str)
    last.index = last.index.astype(str)
    return cw.reindex(last.index).fillna(last)


def close_repair_windows(flags: pd.DataFrame, now: pd.Series, *, weeks: int) -> pd.DataFrame:
    """Open ruptures whose repair window has passed by the calendar read ``unrepaired`` (a copy)."""
    out = flags.copy()
    n = out["patient_id"].astype(str).map(now).to_numpy(dtype="float64", na_value=np.nan)
    passed = (out["kind"].eq("rupture") & out["status"].eq("open")).to_numpy(dtype=bool) & \
        (n >= out["week"].to_numpy(dtype="float64") + weeks)
    out.loc[passed, "status"] = "unrepaired"
    return out


def trailing_missed(facts: pd.DataFrame, now: pd.Series, *, weeks: int) -> pd.DataFrame:
    """One ``missed`` flag per patient whose current week is ``weeks`` or more past their last stored week."""
    f = facts.assign(patient_id=facts["patient_id"].astype(str))
    last = pd.to_numeric(f["last_week"], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    n = f["patient_id"].map(now).to_numpy(dtype="float64", na_value=np.nan)
    hit = ~np.isnan(last) & ~np.isnan(n) & (n - last >= weeks)
    rows = f[hit].reset_index(drop=True)
    last_seen = last[hit].astype("int64")
    week = last_seen + weeks
    if weeks == 1:
        expl = "No questionnaire in week " + _fmt(week) + "; the last one was in week " + _fmt(last_seen) + "."
    else:
        expl = ("No questionnaire for " + str(weeks) + " weeks in a row (weeks " + _fmt(last_seen + 1) + " to "
                + _fmt(week) + "); the last one was in week " + _fmt(last_seen) + ".")
    m = len(rows)
    due = due_dates(pd.DataFrame({"patient_id": rows["patient_id"], "week": week}), facts) if m else \
        pd.Series(pd.DatetimeIndex([], tz="UTC"))
    return pd.DataFrame({
        "patient_id": rows["patient_id"].astype("string"), "therapist_id": rows["therapist_id"].astype("string"),
        "week": week, "instrument": pd.Series([pd.NA] * m, dtype="string"), "kind": "missed", "rule": "missed",
        "severity": "low", "score": np.nan, "baseline": np.nan, "drop": np.nan, "status": "open",
        "explanation": expl.astype("string"), "administered_on": pd.Series([None] * m, dtype=object),
        "raised_at": due.to_numpy() if m else due,
    })


def due_dates(flags: pd.DataFrame, facts: pd.DataFrame) -> pd.Series:
    """The day each flag's week became due by the patient's calendar (``start_date + 7·(week − 1)``,
    UTC midnight); NaT without a start date."""
    if "start_date" not in facts.columns or flags.empty:
        return pd.Series(pd.NaT, index=flags.index, dtype="datetime64[ns, UTC]")
    start = pd.to_datetime(flags["patient_id"].astype(str).map(
        facts.assign(patient_id=facts["patient_id"].astype(str)).set_index("patient_id")["start_date"]),
        errors="coerce")
    due = start + pd.to_timedelta(7 * (flags["week"].astype("int64") - 1), unit="D")
    return due.dt.tz_localize("UTC")


def missed_known_since(flags: pd.DataFrame, facts: pd.DataFrame) -> pd.DataFrame:
    """A run of missed weeks inside the course was known by the calendar from its due day on, before the
    questionnaire that closed it arrived: its ``raised_at`` is the earlier of the two (a copy)."""
    out = flags.copy()
    missed = out["kind"].eq("missed").to_numpy(dtype=bool)
    if missed.any() and "raised_at" in out.columns:
        due = due_dates(out[missed], facts)
        stamps = pd.to_datetime(out.loc[missed, "raised_at"], utc=True)
        out.loc[missed, "raised_at"] = stamps.where(due.isna() | (stamps <= due), due)
    return out


def derive(stored: pd.DataFrame, facts: pd.DataFrame, *, current_week: pd.Series,
           config: FlagConfig) -> pd.DataFrame:
    """Stored flags with the calendar's part laid over them (see the module docstring).

    Parameters
    ----------
    stored : DataFrame
        Stored flags (``core.flags.FLAG_COLUMNS`` plus ``administered_on``, ``rules_version``,
        ``raised_at``), computed with "now" at each patient's last stored week.
    facts : DataFrame
        One row per patient: ``patient_id, therapist_id, last_week`` (and whatever
        ``current_week`` was computed from).
    current_week : Series
        The current treatment week per patient code (``core.caseload.current_weeks``).
    config : FlagConfig
        The rule set the flags were stored under (repair window, missed run length).
    """
    now = _now(facts, current_week)
    out = missed_known_since(close_repair_windows(stored, now, weeks=config.repair.weeks), facts)
    if config.missed is not None and len(facts):
        tail = trailing_missed(facts, now, weeks=config.missed.weeks)
        if len(tail):
            version = int(stored["rules_version"].max()) if len(stored) else pd.NA
            tail["rules_version"] = version
            out = pd.concat([out, tail], ignore_index=True) if len(out) else tail.reindex(columns=out.columns.union(
                tail.columns, sort=False))
    for c, d in FLAG_COLUMNS.items():
        if c not in out.columns:
            out[c] = pd.Series(pd.NA, index=out.index, dtype=d) if d != "float64" else np.nan
        out[c] = out[c].astype(d)
    extra = [c for c in out.columns if c not in FLAG_COLUMNS]
    out = out[list(FLAG_COLUMNS) + extra]
    return out.sort_values(SORT, kind="stable", na_position="last", ignore_index=True)
