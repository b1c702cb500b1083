"""core.notices: the states and blind spots that are not alerts; current_weeks for paused and
discharged patients; the card and caseload wording of a rupture followed by silence."""

from __future__ import annotations

import datetime as dt

import pandas as pd

from core.caseload import attention_table, current_weeks
from core.flags import compute_flags
from core.meeting import caseload_table
from core.notices import calendar_notices, clinical_range, notice_labels, patient_notices, risk_notices
from core.repair import rupture_cards


def _scores(rows: list[tuple[str, str, int, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["patient_id", "instrument", "week", "score"]).assign(therapist_id="anna")


def test_clinical_range_names_the_first_week_of_the_run_that_reaches_the_latest_score() -> None:
    scores = _scores([
        ("A", "PHQ-9", 1, 18), ("A", "PHQ-9", 2, 16), ("A", "PHQ-9", 3, 12),        # above since week 1
        ("B", "PHQ-9", 1, 14), ("B", "PHQ-9", 2, 8), ("B", "PHQ-9", 3, 11), ("B", "PHQ-9", 4, 10),  # back in week 3
        ("C", "PHQ-9", 1, 15), ("C", "PHQ-9", 2, 9),                                # left the range
        ("D", "GAD-7", 1, 7), ("D", "GAD-7", 2, 8),                                 # GAD-7 cut-off 8: reached
        ("E", "WAI-SR", 1, 20),                                                     # no caseness for alliance
    ])
    got = clinical_range(scores).set_index("patient_id")
    assert sorted(got.index) == ["A", "B", "D"]
    assert got.loc["A", "since_week"] == 1 and got.loc["A", "latest"] == 12 and got.loc["A", "cutoff"] == 10
    assert got.loc["B", "since_week"] == 3
    assert got.loc["D", "since_week"] == 2 and got.loc["D", "instrument"] == "GAD-7"
    text = patient_notices(pd.DataFrame(columns=["patient_id", "status", "start_date"]), scores=scores)
    assert "In the clinical range on PHQ-9 since week 1 (latest 12; cut-off 10)." in text["text"].tolist()


def test_clinical_range_is_the_same_whatever_the_row_order() -> None:
    scores = _scores([("A", "PHQ-9", w, s) for w, s in [(1, 20), (2, 5), (3, 11), (4, 12)]])
    shuffled = scores.sample(frac=1, random_state=3)
    pd.testing.assert_frame_equal(clinical_range(scores), clinical_range(shuffled))
    assert clinical_range(scores)["since_week"].tolist() == [3]


def test_risk_and_calendar_notices_say_what_cannot_be_checked() -> None:
    coverage = pd.DataFrame({"patient_id": ["A", "B"], "instrument": ["PHQ-9", "PHQ-9"], "unchecked": [2, 1],
                             "stored": [2, 5], "last_unchecked_week": [4, 2], "last_week": [4, 6]})
    risk = risk_notices(coverage).set_index("patient_id")
    assert "item 9 was not answered or not imported in any of the 2 PHQ-9 questionnaires (latest week 4)" \
        in risk.loc["A", "text"]
    assert "in 1 of 5 PHQ-9 questionnaires (latest week 2)" in risk.loc["B", "text"]
    assert "notice, not an alert" in risk.loc["A", "text"]
    patients = pd.DataFrame({"patient_id": ["A", "B", "C", "D"], "status": ["active", "paused", "discharged", "active"],
                             "start_date": [None, None, None, dt.date(2026, 1, 5)]})
    cal = calendar_notices(patients)
    assert cal["patient_id"].tolist() == ["A", "B"]  # a discharged patient expects no more weeks
    labels = notice_labels(pd.concat([risk.reset_index(), cal], ignore_index=True))
    assert labels["A"] == "self-harm item not checked (PHQ-9, latest week 4); no start date: missed weeks not detected"


def test_attention_table_carries_the_notices_without_changing_the_order() -> None:
    patients = pd.DataFrame({"patient_id": ["A", "B"], "therapist_id": "anna", "status": "active",
                             "last_week": [3, 3], "weeks_stored": [3, 3], "start_date": [None, dt.date(2026, 1, 5)]})
    scores = _scores([("A", "PHQ-9", w, 20.0) for w in (1, 2, 3)] + [("B", "PHQ-9", w, 5.0) for w in (1, 2, 3)])
    flags = compute_flags(scores)
    plain = attention_table(patients, flags, scores=scores)
    noted = attention_table(patients, flags, scores=scores, notices=patient_notices(patients, scores=scores))
    assert noted["patient_id"].tolist() == plain["patient_id"].tolist()
    by = noted.set_index("patient_id")["notices"]
    assert by["A"] == "no start date: missed weeks not detected"
    assert noted.set_index("patient_id").loc["A", "clinical_range"] == "PHQ-9 since week 1"
    assert by["B"] == "" and noted.set_index("patient_id").loc["B", "clinical_range"] == ""


def test_current_week_stops_for_paused_and_discharged_patients() -> None:
    start = dt.date(2026, 1, 5)
    patients = pd.DataFrame({
        "patient_id": ["act", "pau", "pau_nodate", "dis", "done", "drop"],
        "status": ["active", "paused", "paused", "discharged", "completed", "dropped_out"],
        "start_date": [start] * 6, "planned_weeks": [None, None, None, None, 12, None], "last_week": [3] * 6,
        "status_since": [None, dt.date(2026, 2, 2), None, dt.date(2026, 2, 2), None, None]})
    weeks = current_weeks(patients, today=dt.date(2026, 3, 2))
    assert weeks.to_dict() == {"act": 9, "pau": 5, "pau_nodate": 3, "dis": 3, "done": 12, "drop": 5}
    # a pause dated in the future stops the calendar today, not later
    future = patients.assign(status_since=dt.date(2027, 1, 1))
    assert current_weeks(future, today=dt.date(2026, 3, 2))["pau"] == 9


def test_a_rupture_followed_by_silence_reads_no_questionnaire_since() -> None:
    scores = _scores([("S", "WAI-SR", w, s) for w, s in enumerate([50, 51, 52, 51, 38], start=1)])
    flags = compute_flags(scores, current_week=pd.Series({"S": 7}))
    rupture = flags[flags["kind"].eq("rupture")]
    assert rupture["status"].tolist() == ["unrepaired"]
    card = rupture_cards(flags, last_week=5).iloc[0]
    assert card["status_words"] == "not repaired: no questionnaire since week 5, and the repair window has passed"
    # an unrepaired rupture with later questionnaires is plainly "not repaired"
    later = _scores([("S", "WAI-SR", w, s) for w, s in enumerate([50, 51, 52, 51, 38, 39, 40], start=1)])
    assert rupture_cards(compute_flags(later), last_week=7).iloc[0]["status_words"] == "not repaired"
    patients = pd.DataFrame({"patient_id": ["S"], "therapist_id": "anna", "status": "active", "last_week": [5],
                             "weeks_stored": [5]})
    table = attention_table(patients, flags)
    assert table["open_in_words"].iloc[0] == ("unrepaired rupture (week 5, no questionnaire since); "
                                              "missed questionnaires (week 7)")
    alerts = flags.assign(last_week=5, age_days=14)
    scan = caseload_table(alerts)
    assert scan["explanation"].iloc[0].endswith("Unrepaired: no questionnaire since week 5, and the repair window "
                                                "has passed.")
