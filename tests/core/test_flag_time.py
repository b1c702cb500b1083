"""core.flag_time: the calendar's part of the flags, derived at read time; core.caseload.new_since."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from core.caseload import attention_table, mark_new, new_since
from core.flag_time import close_repair_windows, derive, trailing_missed
from core.flags import DEFAULT_CONFIG, compute_flags
from tests.core.test_flags import scores


def _facts(**kw) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    base = {"patient_id": ["A"], "therapist_id": ["T1"], "status": ["active"], "start_date": [dt.date(2026, 1, 5)],
            "planned_weeks": [12], "last_week": [4]}
    base.update(kw)
    return pd.DataFrame(base)


def _stored(frame: pd.DataFrame) -> pd.DataFrame:
    flags = compute_flags(frame)  # "now" = each patient's last stored week, as stored
    return flags.assign(administered_on=None, rules_version=1,
                        raised_at=pd.Timestamp("2026-02-01", tz="UTC"))


def test_an_open_rupture_reads_unrepaired_once_its_window_has_passed_by_the_calendar() -> None:
    stored = _stored(scores(("A", "WAI-SR", [50, 51, 50, 35])))
    assert stored.loc[stored["kind"] == "rupture", "status"].tolist() == ["open"]
    still = close_repair_windows(stored, pd.Series({"A": 5.0}), weeks=2)
    passed = close_repair_windows(stored, pd.Series({"A": 6.0}), weeks=2)
    assert still.loc[still["kind"] == "rupture", "status"].tolist() == ["open"]
    assert passed.loc[passed["kind"] == "rupture", "status"].tolist() == ["unrepaired"]
    assert stored.loc[stored["kind"] == "rupture", "status"].tolist() == ["open"]  # input not mutated


def test_the_trailing_missed_run_is_one_flag_worded_as_compute_flags_words_it() -> None:
    tail = trailing_missed(_facts(), pd.Series({"A": 7.0}), weeks=2)
    assert tail[["patient_id", "week", "kind", "severity", "status"]].values.tolist() == \
        [["A", 6, "missed", "low", "open"]]
    assert tail["explanation"].iloc[0] == ("No questionnaire for 2 weeks in a row (weeks 5 to 6); the last one "
                                           "was in week 4.")
    assert tail["raised_at"].iloc[0] == pd.Timestamp("2026-02-09", tz="UTC")  # week 6 became due
    assert trailing_missed(_facts(), pd.Series({"A": 5.0}), weeks=2).empty
    assert trailing_missed(_facts(last_week=[None]), pd.Series({"A": 9.0}), weeks=2).empty  # no scores


def test_derive_equals_compute_flags_with_the_current_week() -> None:
    frame = scores(("A", "WAI-SR", [50, 51, 50, 35, None, 49]), ("B", "WAI-SR", [40, 41, 42]),
                   ("B", "PHQ-9", [10, 12, 18]))
    facts = pd.DataFrame({"patient_id": ["A", "B"], "therapist_id": ["T1", "T1"], "last_week": [6, 3]})
    now = pd.Series({"A": 6, "B": 9})
    got = derive(_stored(frame), facts, current_week=now, config=DEFAULT_CONFIG)
    want = compute_flags(frame, current_week=now)
    pd.testing.assert_frame_equal(got[list(want.columns)], want)
    assert {"missed", "rupture"} <= set(got["kind"])


def test_new_since_marks_only_flags_raised_after_the_previous_visit() -> None:
    raised = pd.Series(pd.to_datetime(["2026-03-01 10:00", "2026-03-02 09:00", None], utc=True))
    assert new_since(raised, None).tolist() == [False, False, False]  # a first visit marks nothing
    assert new_since(raised, dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)).tolist() == [False, True, False]
    patients = pd.DataFrame({"patient_id": ["A", "B"], "therapist_id": "t", "status": "active",
                             "last_week": [5, 5], "weeks_stored": [5, 5]})
    flags = pd.DataFrame({"patient_id": ["A", "B"], "week": [5, 3], "instrument": ["WAI-SR", "PHQ-9"],
                          "kind": ["rupture", "deterioration"], "status": ["open", "open"],
                          "raised_at": pd.to_datetime(["2026-03-02", "2026-02-01"], utc=True)})
    table = mark_new(attention_table(patients, flags), dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    assert dict(zip(table["patient_id"], table["new_mark"], strict=True)) == {"A": "New", "B": ""}
    assert not np.any(mark_new(attention_table(patients, flags), None)["new"])


def test_a_closed_missed_run_reads_as_raised_on_its_due_day() -> None:
    from core.flag_time import missed_known_since

    flags = pd.DataFrame({"patient_id": ["A", "A"], "week": [6, 9], "kind": ["missed", "rupture"],
                          "raised_at": pd.to_datetime(["2026-03-01", "2026-03-01"], utc=True)})
    out = missed_known_since(flags, _facts())  # start 2026-01-05: week 6 was due on 2026-02-09
    assert out["raised_at"].tolist() == [pd.Timestamp("2026-02-09", tz="UTC"), pd.Timestamp("2026-03-01", tz="UTC")]
    no_calendar = missed_known_since(flags, _facts(start_date=[None]))
    assert no_calendar["raised_at"].tolist() == flags["raised_at"].tolist()
