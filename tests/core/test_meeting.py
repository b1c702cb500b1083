"""Caseload and clinic-meeting aggregates: ordering, filters, rates, suppression, pseudonyms."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from core.meeting import (
    SUPPRESSED,
    TOO_FEW,
    alerts_per_week,
    average_courses,
    caseload_table,
    filter_alerts,
    first_in_words,
    meeting_alerts,
    meeting_therapist_table,
    pseudonymise,
    rate_display,
    rupture_summary,
    summary_display,
    suppress_count,
    suppress_counts,
    therapist_counts,
)


def alerts(rows: list[tuple]) -> pd.DataFrame:
    cols = ["patient_id", "therapist_id", "kind", "severity", "status", "week", "age_days", "repaired_week",
            "flag_date"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["therapist_name"] = frame["therapist_id"].str.title()
    return frame


SAMPLE = alerts([
    ("P1", "ann", "caseness", "medium", "open", 3, 2, pd.NA, dt.date(2026, 11, 18)),
    ("P2", "ann", "rupture", "high", "unrepaired", 5, 3, pd.NA, dt.date(2026, 11, 17)),
    ("P3", "bob", "missed", "low", "open", 4, 20, pd.NA, dt.date(2026, 11, 1)),
    ("P3", "bob", "risk_item", "urgent", "addressed", 4, 20, pd.NA, dt.date(2026, 11, 1)),
    ("P4", "bob", "rupture", "high", "repaired", 2, 30, 3, dt.date(2026, 10, 20)),
    ("P4", "bob", "improvement", "low", "open", 6, 1, pd.NA, dt.date(2026, 11, 19)),
    ("P5", "cy", "rupture", "medium", "open", 7, 0, pd.NA, dt.date(2026, 11, 20)),
])


def test_caseload_keeps_open_alerts_and_puts_the_urgent_ones_first() -> None:
    table = caseload_table(SAMPLE)
    assert "improvement" not in set(table["kind"]) and "repaired" not in set(table["status"])
    assert table["patient_id"].tolist()[:2] == ["P2", "P3"]  # unrepaired rupture; overdue missed week
    assert table.loc[table["status"].eq("addressed"), "overdue"].tolist() == [False]  # addressed is never overdue
    # only the unrepaired rupture stands first: an old low-severity alert is ordered next, not marked
    assert table["urgent_first"].tolist() == [True, False, False, False, False]
    assert table["triage"].tolist() == [2, 4, 5, 5, 6]
    assert table["act_on"].tolist() == ["First · unrepaired rupture", "20 days unaddressed", "Recent (2 days)",
                                        "Recent (0 days)", "Addressed in feedback"]
    assert table["link"].iloc[0] == "/patient?patient=P2"


def test_an_unaddressed_risk_item_stands_first_even_without_a_date() -> None:
    table = caseload_table(alerts([("P1", "ann", "missed", "low", "open", 3, 30, pd.NA, None),
                                   ("P2", "ann", "risk_item", "urgent", "open", 2, pd.NA, pd.NA, None),
                                   ("P3", "ann", "risk_item", "urgent", "addressed", 2, 30, pd.NA, None)]))
    assert table["patient_id"].tolist()[:2] == ["P2", "P1"]
    assert dict(zip(table["patient_id"], table["urgent_first"], strict=True)) == {"P1": False, "P2": True,
                                                                                  "P3": False}


def test_triage_tiers_and_their_reasons() -> None:
    table = caseload_table(alerts([
        ("P1", "ann", "caseness", "medium", "open", 3, 30, pd.NA, None),        # overdue, medium: tier 4
        ("P2", "ann", "deterioration", "high", "open", 3, 8, pd.NA, None),      # overdue, high: tier 3
        ("P3", "ann", "deterioration", "high", "open", 3, 7, pd.NA, None),      # not yet overdue: tier 5
        ("P4", "ann", "rupture", "high", "unrepaired", 3, 1, pd.NA, None),      # tier 2
        ("P5", "ann", "risk_item", "urgent", "open", 3, pd.NA, pd.NA, None),    # tier 1, undated
        ("P6", "ann", "missed", "low", "addressed", 3, 40, pd.NA, None)]))      # tier 6
    assert table["patient_id"].tolist() == ["P5", "P4", "P2", "P1", "P3", "P6"]
    assert table["triage"].tolist() == [1, 2, 3, 4, 5, 6]
    assert table["urgent_first"].tolist() == [True, True, True, False, False, False]
    assert table["act_on"].tolist() == ["First · urgent risk", "First · unrepaired rupture",
                                        "First · high, 8 days unaddressed", "30 days unaddressed", "Recent (7 days)",
                                        "Addressed in feedback"]
    assert table["alert"].tolist()[:2] == ["Risk item", "Rupture"]  # no instrument in this sample
    assert first_in_words(table) == ("1 urgent risk item not yet addressed, 1 unrepaired rupture and 1 "
                                     "high-severity alert not addressed within a week")
    assert first_in_words(table.iloc[3:]) == "no alert"


def test_an_alert_exactly_seven_days_old_is_not_yet_overdue() -> None:
    table = caseload_table(alerts([("P1", "ann", "missed", "low", "open", 1, 7, pd.NA, None),
                                   ("P2", "ann", "missed", "low", "open", 1, 8, pd.NA, None)]))
    assert dict(zip(table["patient_id"], table["overdue"], strict=True)) == {"P1": False, "P2": True}


def test_filters_combine_and_an_empty_choice_means_all() -> None:
    table = caseload_table(SAMPLE)
    assert len(filter_alerts(table, therapists=[])) == len(table)
    assert set(filter_alerts(table, therapists=["bob"])["patient_id"]) == {"P3"}
    assert filter_alerts(table, kinds=["rupture"], statuses=["open"])["patient_id"].tolist() == ["P5"]
    assert set(filter_alerts(table, min_age=3, max_age=20)["age_days"]) == {3, 20}
    assert filter_alerts(table, severities=["urgent"])["kind"].tolist() == ["risk_item"]


def test_therapist_counts() -> None:
    counts = therapist_counts(caseload_table(SAMPLE)).set_index("therapist_id")
    assert counts.loc["bob", ["alerts", "patients", "overdue", "addressed"]].tolist() == [2, 1, 1, 1]
    assert counts.loc["ann", "unrepaired_ruptures"] == 1


def test_rupture_rates_and_median_weeks_to_repair() -> None:
    s = rupture_summary(SAMPLE, patients=10)
    assert (s.ruptures, s.repaired, s.unrepaired, s.pending, s.patients_with_rupture) == (3, 1, 1, 1, 3)
    assert s.rupture_rate == pytest.approx(0.3) and s.repair_rate == pytest.approx(0.5)
    assert s.median_weeks_to_repair == 1.0
    assert rupture_summary(SAMPLE.iloc[0:0], patients=0).rupture_rate is None


def test_alerts_per_week_counts_by_monday_with_empty_weeks() -> None:
    table = alerts_per_week(SAMPLE)
    assert list(table.index) == [dt.date(2026, 10, 19) + dt.timedelta(days=7 * i) for i in range(5)]
    assert table.loc[dt.date(2026, 10, 26)].sum() == 2  # Sunday 1 November belongs to the week of 26 October
    assert table.loc[dt.date(2026, 11, 2)].sum() == 0 == table.loc[dt.date(2026, 11, 9)].sum()
    assert table.loc[dt.date(2026, 11, 16), "rupture"] == 2
    assert "improvement" not in table.columns


def test_primary_and_complementary_suppression() -> None:
    t = pd.DataFrame({"a": [12, 3], "b": [20, 30]}, index=["w1", "w2"])
    out = suppress_counts(t)
    assert out.isna().to_numpy().tolist() == [[True, True, False], [True, True, False], [False, False, False]]
    assert out.loc["total", "total"] == 65


@pytest.mark.parametrize("seed", range(30))
def test_no_suppressed_count_can_be_worked_out_by_subtraction(seed: int) -> None:
    rng = np.random.default_rng(seed)
    t = pd.DataFrame(rng.integers(0, 25, size=(rng.integers(1, 6), rng.integers(1, 5))))
    out = suppress_counts(t)
    hidden = out.isna().to_numpy()
    values = out.to_numpy(dtype="float64", na_value=np.nan)
    assert not ((values >= 1) & (values <= 10)).any()  # no count from 1 to 10 is shown
    assert (hidden.sum(axis=1) != 1).all() and (hidden.sum(axis=0) != 1).all()  # none alone in a line


def test_suppress_count_and_meeting_summary() -> None:
    assert [suppress_count(n) for n in (0, 1, 10, 11)] == [0, None, None, 11]
    s = rupture_summary(SAMPLE, patients=40)
    shown = summary_display(s, meeting=True)
    # the count is suppressed; the rate (denominator 40 > 10) is the bound a hidden count allows
    assert shown["patients_with_rupture"] == SUPPRESSED and shown["rupture_rate"] == "≤25%"
    # two decided ruptures, one repaired: too few for a rate or a median
    assert shown["repair_rate"] == TOO_FEW and shown["median_weeks_to_repair"] == TOO_FEW
    plain = summary_display(s, meeting=False)
    assert plain["rupture_rate"] == "8%" and plain["repair_rate"] == "50%"


def test_pseudonymise_hides_codes_and_names_consistently() -> None:
    table = caseload_table(SAMPLE)
    out = pseudonymise(table, salt="x")
    assert not out["patient_id"].str.fullmatch(r"P\d").any()
    assert (out["therapist_id"] == out["therapist_name"]).all()
    assert out.groupby("therapist_id")["patient_id"].nunique().sum() == table["patient_id"].nunique()
    assert set(out["therapist_id"]) == {"Therapist A", "Therapist B", "Therapist C"}
    assert table["patient_id"].tolist() == caseload_table(SAMPLE)["patient_id"].tolist()  # input untouched


def test_average_courses_beside_the_published_means() -> None:
    scores = pd.DataFrame({"patient_id": ["a", "b", "a", "b"], "instrument": "SPIN", "week": [1, 1, 2, 2],
                           "score": [40.0, 50.0, 30.0, 30.0]})
    out = average_courses(scores, instruments=["SPIN"])
    assert out["mean"].tolist() == [45.0, 30.0] and out["n"].tolist() == [2, 2]
    assert out["published_mean"].tolist() == [44.79, 43.55]
    assert average_courses(scores, instruments=["SPIN"], min_n=3).empty


def test_labels_in_words() -> None:
    from core.caseload import flag_status_words, kind_words, rule_words

    assert kind_words(pd.Series(["risk_item", None, "new_kind"])).tolist() == ["Risk item", "", "new kind"]
    assert rule_words(pd.Series(["reliable_drop+below_own_level", "risk_item", None])).tolist() == [
        "reliable drop and below own level", "risk item", ""]
    assert flag_status_words(pd.Series(["unrepaired", "addressed"])).tolist() == ["not repaired",
                                                                                  "addressed in feedback"]


@pytest.mark.parametrize("num,den,hidden,meeting,expected", [
    (18, 36, False, True, "50%"),      # denominator above 10: the rate
    (3, 36, True, True, "≤28%"),       # its count hidden: the bound 10/36, never "≤10"
    (3, 10, True, True, TOO_FEW),      # denominator of 10: no rate
    (3, 10, True, False, "30%"),       # outside meeting mode: everything
    (0, 0, False, True, "–"),
])
def test_a_rate_is_shown_only_over_a_large_enough_denominator(num, den, hidden, meeting, expected) -> None:  # type: ignore[no-untyped-def]
    assert rate_display(num, den, num_hidden=hidden, meeting=meeting) == expected


def test_meeting_therapist_rows_are_ordered_by_pseudonym_with_zeros_and_revealing_cells_hidden() -> None:
    counts = pd.DataFrame({"therapist_id": ["zed", "amy", "bob"], "therapist_name": ["Zed", "Amy", "Bob"],
                           "alerts": [40, 12, 30], "patients": [20, 5, 15], "addressed": [0, 15, 14]})
    out = meeting_therapist_table(counts, salt="s")
    assert out["therapist_id"].tolist() == ["Therapist A", "Therapist B", "Therapist C", "total"]
    body = out.iloc[:3]
    assert not body.isin(["0"]).any().any()                 # a zero is hidden like a small count
    assert (body["patients"] == SUPPRESSED).sum() >= 2      # 5 hidden, and one more so the total cannot give it
    assert (body["addressed"] == SUPPRESSED).sum() >= 2
    assert "Zed" not in out.to_string() and "amy" not in out.to_string()


def test_meeting_alerts_pool_weeks_then_kinds_until_the_chart_shows_something() -> None:
    weeks = pd.Index([dt.date(2026, 6, 1) + dt.timedelta(days=7 * i) for i in range(26)], name="week_start")
    per_week = pd.DataFrame({"rupture": [1, 0] * 13, "missed": [1] * 26, "caseness": [0, 1] * 13}, index=weeks)
    shown, period = meeting_alerts(per_week, meeting=True)
    body = shown.drop(index="total", columns="total")
    visible = body.fillna(0).to_numpy().sum()
    assert visible >= per_week.to_numpy().sum() / 2 and period > 1
    assert not ((body >= 1) & (body <= 10)).any().any()
    plain, one = meeting_alerts(per_week, meeting=False)
    assert one == 1 and plain.drop(index="total", columns="total").equals(per_week.astype("Int64"))
    with pytest.raises(ValueError, match="at least one period"):
        meeting_alerts(per_week, meeting=True, periods=())
