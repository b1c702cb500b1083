"""Which flags owe an alert e-mail, and to whom (core.notifications; issue 17): hand-written cases."""

from __future__ import annotations

import pandas as pd

from core.notifications import RECENT_WEEKS, alert_events, event_label, new_events, recent_events


def _flags(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["patient_id", "instrument", "week", "kind", "severity", "status"])


def test_urgent_and_high_flags_are_told_medium_and_low_and_repaired_are_not() -> None:
    flags = _flags([
        (1, "PHQ-9", 2, "risk_item", "urgent", "open"),
        (1, "SPIN", 3, "deterioration", "high", "open"),
        (1, "WAI-SR", 4, "rupture", "medium", "unrepaired"),  # medium: nobody
        (1, "WAI-SR", 5, "rupture", "high", "unrepaired"),
        (2, "WAI-SR", 2, "rupture", "high", "repaired"),  # nothing left to do
        (2, "WAI-SR", 6, "rupture", "high", "open"),
        (2, "", 7, "missed", "low", "open"),
    ])
    events = alert_events(flags)
    assert events[["patient_id", "week", "event"]].values.tolist() == [
        [1, 2, "risk_item"], [1, 3, "deterioration"], [1, 5, "unrepaired_rupture"], [2, 6, "rupture"]]
    # the supervisor hears of risk items and unrepaired ruptures only
    assert events["supervisor"].tolist() == [True, False, True, False]


def test_only_events_that_were_not_there_before_are_owed() -> None:
    before = alert_events(_flags([(1, "WAI-SR", 5, "rupture", "high", "open")]))
    after = alert_events(_flags([(1, "WAI-SR", 5, "rupture", "high", "open"),
                                 (1, "PHQ-9", 6, "risk_item", "urgent", "open")]))
    assert new_events(before, after)["event"].tolist() == ["risk_item"]
    assert new_events(after, after).empty  # a recompute that finds the same flags owes nothing
    # the rupture found unrepaired later is a new event (now the supervisor's too)
    later = alert_events(_flags([(1, "WAI-SR", 5, "rupture", "high", "unrepaired")]))
    assert new_events(before, later)[["event", "supervisor"]].values.tolist() == [["unrepaired_rupture", True]]
    assert new_events(before.iloc[0:0], after).shape[0] == 2
    assert alert_events(_flags([])).empty


def test_event_labels_are_words() -> None:
    assert event_label("risk_item") == "Risk item"
    assert event_label("unrepaired_rupture") == "Unrepaired rupture"
    assert event_label("something_new") == "Something new"


def test_only_events_of_the_patients_last_weeks_are_news() -> None:
    events = alert_events(_flags([(1, "PHQ-9", 2, "risk_item", "urgent", "open"),
                                  (1, "WAI-SR", 10, "rupture", "high", "unrepaired"),
                                  (1, "PHQ-9", 12, "risk_item", "urgent", "open"),
                                  (2, "PHQ-9", 3, "risk_item", "urgent", "open")]))
    latest = pd.Series({1: 12})  # patient 2 unknown: keeps its events
    kept = recent_events(events, latest)
    assert kept[["patient_id", "week"]].values.tolist() == [[1, 10], [1, 12], [2, 3]]
    assert RECENT_WEEKS == 2  # the rupture's repair window: week 10's rupture is found unrepaired in week 12
    assert recent_events(events, latest, window=0)["week"].tolist() == [12, 3]
    assert recent_events(events.iloc[0:0], latest).empty
