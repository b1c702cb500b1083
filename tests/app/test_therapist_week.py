"""The therapist's week (issue 4): My patients, the patient page, rupture cards, risk banner,
"Addressed in feedback", the week-by-week table and the downloads. AppTest over the demo clinic.
"""

from __future__ import annotations

import json
import re
import shutil

import pandas as pd
from sqlalchemy import select

from core.caseload import attention_table, course_summary, filter_attention, open_counts, open_reasons
from db.engine import make_engine, session_factory
from db.models import AuditEvent
from tests.app.conftest import main_text


def patient_page(app_as, who: str, code: str):  # type: ignore[no-untyped-def]
    at = app_as(who)
    at.switch_page("pages/patient.py")
    at.query_params["patient"] = code
    return at.run()


# --- core.caseload: the table behind My patients -------------------------------------------------

def _patients() -> pd.DataFrame:
    return pd.DataFrame({"patient_id": ["A", "B", "C"], "therapist_id": "t", "status": "active",
                         "last_week": [5, 5, 5], "weeks_stored": [5, 5, 4]})


def _flags() -> pd.DataFrame:
    return pd.DataFrame({"patient_id": ["B", "C", "C", "A"], "week": [5, 3, 4, 2],
                         "instrument": ["WAI-SR", "PHQ-9", "WAI-SR", "SPIN"],
                         "kind": ["rupture", "risk_item", "rupture", "improvement"],
                         "status": ["open", "open", "repaired", "open"]})


def test_attention_table_sorts_filters_and_counts() -> None:
    table = attention_table(_patients(), _flags())
    assert table["patient_id"].tolist() == ["C", "B", "A"]  # risk item, new rupture, then the rest
    assert table["attention"].tolist() == ["risk item", "new rupture", ""]
    assert table["open_in_words"].tolist() == ["risk item (week 3)", "new rupture (week 5)", ""]
    assert open_reasons(table) == ["risk_item", "new_rupture"]
    assert filter_attention(table, ["new_rupture"])["patient_id"].tolist() == ["B"]
    assert filter_attention(table, [])["patient_id"].tolist() == ["C", "B", "A"]
    assert attention_table(_patients(), _flags(), reasons=["risk_item"])["patient_id"].tolist() == ["C"]
    assert open_counts(_patients(), _flags()).to_dict() == {"risk item": 1, "new rupture": 1}


def test_course_summary_latest_scores_and_sparklines() -> None:
    scores = pd.DataFrame({"patient_id": ["A"] * 5 + ["B"] * 2, "instrument": ["WAI-SR", "WAI-SR", "SPIN", "SPIN",
                                                                               "WAI-P", "WAI-SR", "PHQ-9"],
                           "week": [1, 3, 1, 3, 3, 1, 1], "score": [40.0, 44, 30, 28, 41, 50, 7]})
    summary = course_summary(scores)
    a, b = summary.loc["A"], summary.loc["B"]
    assert (a["latest_alliance"], a["latest_program"], a["main_symptom"], a["latest_symptom"]) == (44, 41, "SPIN", 28)
    assert list(a["alliance_trend"]) == [40, 44] and list(a["symptom_trend"]) == [30, 28]
    assert a["last_questionnaire"] == 3
    assert (b["main_symptom"], b["latest_symptom"], list(b["symptom_trend"])) == ("PHQ-9", 7, [7])
    assert pd.isna(b["latest_program"])


# --- My patients -----------------------------------------------------------------------------------

def test_my_patients_puts_the_flagged_patient_first_with_scores_sparklines_and_last_week(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as("therapist.anna").run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table["patient_id"].iloc[0] == "P00001"  # the demo's unrepaired rupture (CATALOG.md)
    assert table["attention"].iloc[0] == "unrepaired rupture"
    assert "unrepaired rupture (week 9)" in table["open_in_words"].iloc[0]
    assert len(table) == 12 and set(table["therapist_id"]) == {"therapist.anna"}
    first = table.iloc[0]
    assert first["latest_alliance"] == 36 and first["main_symptom"] == "SPIN" and first["last_questionnaire"] == 12
    assert list(first["alliance_trend"])[8] == 34  # the week-9 fall is in the sparkline
    assert len(first["symptom_trend"]) == 12
    assert table["priority"].is_monotonic_increasing
    text = main_text(at)
    assert "of 12 patients have open flags" in text and "unrepaired rupture" in text


def test_my_patients_filters_by_flag_kind(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as("therapist.anna").run()
    assert "low alliance" in at.multiselect[0].options
    at.multiselect[0].select("low_alliance").run()
    assert at.dataframe[0].value["patient_id"].tolist() == ["P00031"]
    assert "1 of 12 patients shown." in main_text(at)


def test_a_supervisor_sees_the_team_with_a_therapist_column(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as("supervisor.sara").run()
    assert not at.exception
    assert at.title[0].value == "Patients"
    table = at.dataframe[0].value
    assert table["patient_id"].iloc[0] in {"P00017", "P00038"}  # risk items come first (team North)
    assert set(table["therapist_id"]) == {"therapist.anna", "therapist.ben", "therapist.carla"}
    assert at.selectbox(key="open_patient").value == table["patient_id"].iloc[0]


# --- The patient page --------------------------------------------------------------------------------

def test_the_rupture_card_says_what_fell_and_offers_bond_prompts(app_as) -> None:  # type: ignore[no-untyped-def]
    at = patient_page(app_as, "therapist.anna", "P00001")
    assert not at.exception
    text = main_text(at)
    assert "Rupture in week 9: Alliance with the therapist (WAI-SR) — not repaired" in text
    assert re.search(r"to 34 from a baseline of \d+\.\d \(\d+\.\d points, \d+\.\d of the patient's own SDs\)", text)
    assert "Subscale that fell most: bond" in text and "Symptoms the week after: SPIN" in text
    assert "Repair: not repaired." in text
    assert "Invite: in this week's feedback" in text and "Muran & Barber (2011)" in text
    assert any(b.label == "Mark addressed in feedback" for b in at.button)


def test_the_course_chart_the_subscales_and_the_full_course_switch(app_as) -> None:  # type: ignore[no-untyped-def]
    at = patient_page(app_as, "therapist.anna", "P00001")
    charts = at.get("plotly_chart")
    assert len(charts) == 2
    course = json.loads(charts[0].proto.spec)
    names = {t.get("name") for t in course["data"]}
    assert {"WAI-SR", "WAI-P", "SPIN", "PHQ-9", "GAD-7", "flag: rupture"} <= names
    # by default each panel shows what the rules expected: the alliance's own level plus the clinic's
    # course, SPIN's course for its starting score (PHQ-9 and GAD-7 have none: the running average)
    text = json.dumps(course)
    assert "expected for this patient" in text and "the usual range" in text
    assert "average of the weeks before" in text
    subscales = json.loads(charts[1].proto.spec)
    assert {t["name"] for t in subscales["data"]} == {"Bond", "Goal", "Task"}
    at.segmented_control(key="compare_with").set_value("Whole course").run()
    assert "average of the whole course" in json.dumps(json.loads(at.get("plotly_chart")[0].proto.spec))
    at.segmented_control(key="compare_with").set_value("Average so far").run()
    text = json.dumps(json.loads(at.get("plotly_chart")[0].proto.spec))
    assert "average of the weeks before" in text and "expected for this patient, ±1 own SD" not in text


def test_week_by_week_table_with_items_on_demand(app_as) -> None:  # type: ignore[no-untyped-def]
    at = patient_page(app_as, "therapist.anna", "P00001")
    week_table = next(d for d in at.dataframe if "WAI-SR" in d.value.columns and "week" in d.value.columns)
    assert week_table.value["week"].tolist() == list(range(12, 0, -1))  # the latest week on top
    assert "WAI-SR 1" not in week_table.value.columns
    at.toggle(key="show_items").set_value(True).run()
    week_table = next(d for d in at.dataframe if "WAI-SR" in d.value.columns and "week" in d.value.columns)
    assert {"WAI-SR 1", "PHQ-9 9", "SPIN 17"} <= set(week_table.value.columns)


def test_flags_table_shows_status_and_note_columns(app_as) -> None:  # type: ignore[no-untyped-def]
    at = patient_page(app_as, "therapist.anna", "P00001")
    flags = next(d for d in at.dataframe if "explanation" in d.value.columns).value
    assert {"status", "note", "note_by", "note_at"} <= set(flags.columns)
    assert flags.loc[flags["week"].eq(9) & flags["kind"].eq("rupture"), "status"].tolist() == ["unrepaired"]


def test_the_risk_banner_cannot_be_missed(app_as) -> None:  # type: ignore[no-untyped-def]
    at = patient_page(app_as, "admin", "P00017")
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 2  # item 9 positive in weeks 7 and 8 (CATALOG.md), latest first
    assert errors[0].startswith("**Risk item — act today.** Week 8, PHQ-9: PHQ-9 item 9")
    assert "Week 7" in errors[1]
    quiet = patient_page(app_as, "therapist.anna", "P00006")
    assert not quiet.error


def test_downloads_are_offered(app_as) -> None:  # type: ignore[no-untyped-def]
    at = patient_page(app_as, "therapist.anna", "P00001")
    labels = [b.proto.label for b in at.get("download_button")]
    if shutil.which("chromium"):
        assert "Download the one-page report (PDF)" in labels
    assert "Download the report as HTML" in labels and "Download the scores (CSV)" in labels


def test_addressed_in_feedback_then_reopened_audited(app_as, writable_demo: str) -> None:  # type: ignore[no-untyped-def]
    at = patient_page(app_as, "therapist.anna", "P00001")
    at.button(key="FormSubmitter:address_WAI-SR-9-Mark addressed in feedback").click().run()
    assert "Write a short note" in main_text(at)  # an empty note is refused with a sentence
    at.text_area(key="note_WAI-SR-9").input("Asked how our contact has felt; acknowledged my short reply.")
    at.button(key="FormSubmitter:address_WAI-SR-9-Mark addressed in feedback").click().run()
    assert not at.exception
    text = main_text(at)
    assert "Rupture in week 9 marked addressed in feedback." in text
    # the repair state (what the alliance did) stays, and apart from it what the therapist did
    assert re.search(r"Rupture in week 9: Alliance with the therapist \(WAI-SR\) — not repaired[^\n]* · addressed in "
                     r"feedback", text), text
    assert "Repair: not repaired" in text and "Repair: addressed" not in text
    assert "Addressed in feedback by therapist.anna" in text
    flags = next(d for d in at.dataframe if "explanation" in d.value.columns).value
    rupture = flags[flags["kind"].eq("rupture")]
    assert set(rupture["status"]) == {"addressed"}
    assert set(rupture["note"]) == {"Asked how our contact has felt; acknowledged my short reply."}
    # the caseload no longer lists the rupture as open
    home = app_as("therapist.anna").run()
    assert "unrepaired rupture" not in home.dataframe[0].value["open_in_words"].iloc[:12].str.cat()
    at.button(key="reopen_WAI-SR-9").click().run()
    assert "Rupture in week 9 reopened." in main_text(at)
    assert "— not repaired" in main_text(at)
    engine = make_engine(writable_demo)
    with session_factory(engine)() as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action.like("flag_%"))).all()
    engine.dispose()
    actions = [e.action for e in events]
    n = len(rupture)  # every week of the episode is addressed and reopened together
    assert actions == ["flag_addressed"] * n + ["flag_reopened"] * n
    assert 9 in {json.loads(e.detail)["week"] for e in events}
    assert {e.patient_code for e in events} == {"P00001"} and {e.actor for e in events} == {"therapist.anna"}


def test_the_patient_view_is_audited(app_as, writable_demo: str) -> None:  # type: ignore[no-untyped-def]
    patient_page(app_as, "therapist.anna", "P00001")
    engine = make_engine(writable_demo)
    with session_factory(engine)() as session:
        actions = session.scalars(select(AuditEvent.action).where(AuditEvent.patient_code == "P00001")).all()
    engine.dispose()
    assert "view_patient" in actions


def test_a_patient_without_any_flag_renders_without_cards_or_banner(app_as) -> None:  # type: ignore[no-untyped-def]
    at = patient_page(app_as, "therapist.anna", "P00006")  # quiet: no flag of any kind (CATALOG.md)
    assert not at.exception, at.exception
    assert not at.error
    assert "Patient P00006" in main_text(at) and "Rupture in week" not in main_text(at)
    assert len(at.get("plotly_chart")) == 2


def _patient_with(db_url: str, therapist: str, status: str) -> tuple[str, int, str]:
    """A patient of ``therapist`` with a rupture of ``status`` (code, week, instrument), from the stored flags."""
    from db.access import SYSTEM
    from db.flags import read_flags

    engine = make_engine(db_url)
    with session_factory(engine)() as session:
        flags = read_flags(session, actor=SYSTEM)
    engine.dispose()
    hit = flags[flags["kind"].eq("rupture") & flags["status"].eq(status) & flags["therapist_id"].eq(therapist)]
    row = hit.sort_values(["patient_id", "week"]).iloc[0]
    return str(row["patient_id"]), int(row["week"]), str(row["instrument"])


def test_a_repaired_rupture_gets_a_collapsed_card(app_as, demo_db: str) -> None:  # type: ignore[no-untyped-def]
    # issue 15: a repaired rupture got no card at all
    code, week, instrument = _patient_with(demo_db, "therapist.anna", "repaired")
    at = patient_page(app_as, "therapist.anna", code)
    assert not at.exception
    cards = [e for e in at.expander if e.label.startswith(f"Rupture in week {week}:")]
    assert cards, [e.label for e in at.expander]
    assert "— repaired in week" in cards[0].label
    assert not cards[0].proto.expanded
    headings = [str(m.value) for m in at.markdown if str(m.value).startswith("####")]
    assert not any(f"Rupture in week {week}:" in h for h in headings)  # not an open card


def test_no_table_on_the_therapists_pages_shows_none(app_as) -> None:  # type: ignore[no-untyped-def]
    # issue 15: missing values read "None" (NumberColumns of My patients above all): every table
    # shows a dash instead, and the week table has no inner scroll
    home = app_as("therapist.anna").run()
    at = patient_page(app_as, "therapist.anna", "P00001")
    tables = [*home.dataframe, *at.dataframe]
    assert tables
    for table in tables:
        assert table.proto.placeholder == "—", table.proto.columns[:80]
    week_table = next(d for d in at.dataframe if "WAI-SR" in d.value.columns and "week" in d.value.columns)
    assert week_table.proto.row_height == 35  # the page sizes the table to all its rows (tests/e2e checks it)
    flags = next(d for d in at.dataframe if "explanation" in d.value.columns)
    shown = flags.value[list(flags.proto.column_order)]
    assert not shown.astype(str).isin(["None", "nan", "<NA>"]).any().any()
    assert "kind_words" in flags.proto.column_order and (shown["kind_words"] == "Rupture").any()


def test_the_chart_offers_the_last_12_weeks_or_the_whole_course(app_as) -> None:  # type: ignore[no-untyped-def]
    at = patient_page(app_as, "therapist.anna", "P00001")
    control = at.get("button_group")[0]
    assert [o for o in control.proto.options] or True
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert "range" not in spec["layout"].get("xaxis", {}) or spec["layout"]["xaxis"]["range"] is None
    assert at.session_state["week_range"] == "Whole course"
