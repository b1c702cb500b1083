"""Which flags an alert e-mail is owed for, and to whom (issue 17). Pure pandas.

A write that raises an **urgent** or **high** flag tells the patient's therapist; a risk item
and an unrepaired rupture tell their supervisor too. What is told is an *alert event*: the
flag's kind, or ``unrepaired_rupture`` for a rupture whose status is ``unrepaired`` (so a
rupture that was told as new and is later found unrepaired is told again, this time to the
supervisor as well). A repaired rupture is not told: there is nothing left to do.

Only events that were not there before the write are owed (:func:`new_events`): a recompute
that finds the same flags owes nothing, so a re-imported file sends nothing. And only events
about the patient's last weeks are news (:func:`recent_events`): a file of a year of history,
imported once, tells of that year's last weeks, not of every rupture since week 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Severities that send an e-mail.
NOTIFY_SEVERITIES = ("urgent", "high")
#: Events that go to the supervisor as well as the therapist.
SUPERVISOR_EVENTS = ("risk_item", "unrepaired_rupture")
#: An event is news while its week is at most this many weeks before the patient's latest stored
#: week: 2 covers the rupture's repair window (a week-t rupture is found unrepaired at t + 2).
RECENT_WEEKS = 2
#: The columns of an event frame.
EVENT_COLUMNS = ["patient_id", "instrument", "week", "event"]
#: Each event in the words of a message ("Risk item").
EVENT_LABELS = {"risk_item": "Risk item", "unrepaired_rupture": "Unrepaired rupture", "rupture": "Rupture",
                "deterioration": "Reliable deterioration", "not_on_track": "Not on track",
                "low_alliance": "Low alliance", "caseness": "Above caseness cut-off",
                "missed": "Missed questionnaires", "improvement": "Reliable improvement"}


def alert_events(flags: pd.DataFrame) -> pd.DataFrame:
    """The alert events of ``flags`` (columns ``patient_id, instrument, week, kind, severity,
    status``): :data:`EVENT_COLUMNS`, one row per notifiable flag, plus ``supervisor`` (bool).

    ``patient_id`` is passed through as it comes (a code or an internal id).
    """
    if flags.empty:
        return pd.DataFrame({"patient_id": pd.Series(dtype=object), "instrument": pd.Series(dtype="string"),
                             "week": pd.Series(dtype="int64"), "event": pd.Series(dtype="string"),
                             "supervisor": pd.Series(dtype=bool)})
    severe = flags["severity"].isin(NOTIFY_SEVERITIES).to_numpy()
    status = flags["status"].astype("string").fillna("")
    kind = flags["kind"].astype("string")
    keep = severe & (status != "repaired").to_numpy()
    unrepaired = ((kind == "rupture") & (status == "unrepaired")).to_numpy()
    event = pd.Series(np.where(unrepaired, "unrepaired_rupture", kind.to_numpy(dtype=object)), index=flags.index)
    out = pd.DataFrame({"patient_id": flags["patient_id"].to_numpy(dtype=object),
                        "instrument": flags["instrument"].astype("string").fillna("").to_numpy(dtype=object),
                        "week": flags["week"].astype("int64").to_numpy(),
                        "event": event.to_numpy(dtype=object)})[keep]
    out = out.astype({"instrument": "string", "event": "string"}).reset_index(drop=True)
    out["supervisor"] = out["event"].isin(SUPERVISOR_EVENTS).to_numpy()
    return out


def new_events(before: pd.DataFrame, after: pd.DataFrame) -> pd.DataFrame:
    """The events of ``after`` that ``before`` did not have (both :func:`alert_events` frames)."""
    if after.empty or before.empty:
        return after.reset_index(drop=True)
    keys = before[EVENT_COLUMNS].astype({"instrument": "string", "event": "string"})
    merged = after.merge(keys.drop_duplicates(), on=EVENT_COLUMNS, how="left", indicator=True)
    return merged.loc[merged["_merge"] == "left_only", after.columns].reset_index(drop=True)


def recent_events(events: pd.DataFrame, latest_week: pd.Series, *, window: int = RECENT_WEEKS) -> pd.DataFrame:
    """The events of ``events`` whose week is within ``window`` weeks of their patient's latest
    stored week (``latest_week``: indexed by the same ``patient_id`` as ``events``); a patient
    missing from ``latest_week`` keeps every event."""
    if events.empty:
        return events
    latest = events["patient_id"].map(latest_week)
    keep = latest.isna().to_numpy() | (events["week"].to_numpy() >= latest.fillna(0).to_numpy() - window)
    return events[keep].reset_index(drop=True)


def event_label(event: str) -> str:
    """An event in the words of a message: ``risk_item`` -> "Risk item"."""
    return EVENT_LABELS.get(event, event.replace("_", " ").capitalize())
