"""Caseload-level helpers: which treatment week each patient is at now.

The week a patient's treatment is "at" decides which questionnaires are *expected* (and so
which missing ones are flagged). Project rules, documented in docs/flags.md:

* active patient with a start date: ``floor((today - start) / 7) + 1``, at most the planned
  number of weeks;
* completed patient: the planned weeks (or the last stored week when none is planned);
* dropped-out patient: the last stored week plus ``grace`` weeks, so the run of missing
  questionnaires that announced the dropout stays visible, and no more;
* no start date: the last stored week (only gaps inside the course count);
* ``as_of_week`` caps every patient at that week.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd


def current_weeks(patients: pd.DataFrame, *, today: dt.date, as_of_week: int | None = None,
                  grace: int = 2) -> pd.Series:
    """The current treatment week per patient (Series indexed by ``patient_id``, Int64).

    ``patients`` has ``patient_id, status, start_date, planned_weeks, last_week`` (as
    ``db.queries.list_patients`` returns them). ``<NA>`` where nothing is known.
    """
    frame = patients.set_index("patient_id")
    last = pd.to_numeric(frame["last_week"], errors="coerce").astype("float64")
    planned = pd.to_numeric(frame["planned_weeks"], errors="coerce").astype("float64")
    start = pd.to_datetime(frame["start_date"], errors="coerce")
    elapsed = ((pd.Timestamp(today) - start).dt.days // 7 + 1).astype("float64")
    active_week = np.fmin(elapsed, planned)  # fmin ignores a missing plan
    week = np.where(frame["status"].eq("completed"), np.where(planned.notna(), planned, last),
                    np.where(frame["status"].eq("dropped_out"), last + grace, active_week))
    week = pd.Series(week, index=frame.index, dtype="float64")
    week = week.where(week.notna(), last)
    week = week.clip(lower=last.where(last.notna(), 0))  # never before a stored week
    if as_of_week is not None:
        week = week.clip(upper=as_of_week)
    return week.round().astype("Int64")


#: What needs attention first (lower = first). PRODUCT.md: risk item, new rupture,
#: unrepaired rupture, reliable deterioration, missed questionnaires, then the rest.
ATTENTION_ORDER = {"risk_item": 0, "new_rupture": 1, "unrepaired_rupture": 2, "deterioration": 3,
                   "missed": 4, "rupture": 5, "low_alliance": 6, "caseness": 7}
ATTENTION_LABELS = {"risk_item": "risk item", "new_rupture": "new rupture",
                    "unrepaired_rupture": "unrepaired rupture", "deterioration": "reliable deterioration",
                    "missed": "missed questionnaires", "rupture": "rupture", "low_alliance": "low alliance",
                    "caseness": "above caseness cut-off"}
OPEN_STATUSES = ("open", "unrepaired")
#: Signals that are good news: shown on the patient page, never counted as needing attention.
NOT_ALERTS = ("improvement",)


def attention_table(patients: pd.DataFrame, flags: pd.DataFrame) -> pd.DataFrame:
    """One row per patient, sorted by what needs attention first.

    A rupture is *new* when it was raised for the patient's latest stored week and is still
    open. Only flags whose status is open or unrepaired count (addressed and repaired ones
    do not). Columns: ``patient_id, therapist_id, status, last_week, weeks_stored,
    attention`` (the most urgent reason), ``priority`` (its rank), ``open_flags`` (count),
    ``open_in_words`` and ``link`` (the patient page's URL).
    """
    base = patients[["patient_id", "therapist_id", "status", "last_week", "weeks_stored"]].copy()
    if flags.empty:
        base["attention"], base["priority"], base["open_flags"], base["open_in_words"] = "", 99, 0, ""
        base["link"] = "/patient?patient=" + base["patient_id"]
        return base.sort_values("patient_id", ignore_index=True)
    live = flags[flags["status"].isin(OPEN_STATUSES) & ~flags["kind"].isin(NOT_ALERTS)].merge(
        base[["patient_id", "last_week"]], on="patient_id", how="left")
    reason = live["kind"].astype(str)
    is_rupture = reason.eq("rupture")
    reason = reason.mask(is_rupture & live["status"].eq("unrepaired"), "unrepaired_rupture")
    reason = reason.mask(is_rupture & live["status"].eq("open") & live["week"].eq(live["last_week"]),
                         "new_rupture")
    live = live.assign(reason=reason, priority=reason.map(ATTENTION_ORDER).fillna(50).astype(int))
    words = (live.sort_values(["priority", "week"]).drop_duplicates(["patient_id", "reason"])
             .assign(label=lambda f: f["reason"].map(ATTENTION_LABELS).fillna(f["reason"].str.replace("_", " "))
                     + " (week " + f["week"].astype(str) + ")")
             .groupby("patient_id")["label"].agg("; ".join))
    top = live.sort_values(["priority", "week"], ascending=[True, False]).drop_duplicates("patient_id")
    out = base.merge(top[["patient_id", "reason", "priority"]], on="patient_id", how="left")
    out["attention"] = out["reason"].map(ATTENTION_LABELS).fillna("")
    out["priority"] = out["priority"].fillna(99).astype(int)
    out["open_flags"] = out["patient_id"].map(live.groupby("patient_id").size()).fillna(0).astype(int)
    out["open_in_words"] = out["patient_id"].map(words).fillna("")
    out["link"] = "/patient?patient=" + out["patient_id"]
    return (out.drop(columns="reason")
            .sort_values(["priority", "open_flags", "patient_id"], ascending=[True, False, True],
                         ignore_index=True))
