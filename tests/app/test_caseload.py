"""AppTest of the caseload scan (/caseload) per role."""

from __future__ import annotations

import re

import pytest

from tests.app import test_security
from tests.app.conftest import is_login_form, main_text

NORTH = {"therapist.anna", "therapist.ben", "therapist.carla"}
# The private writable clinic and the AppTest factory of the security tests.
clinic = test_security.clinic
app_for = test_security.app_for


def _table(at):  # type: ignore[no-untyped-def]
    return at.dataframe[0].value


def test_a_therapist_cannot_reach_the_caseload(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as("therapist.anna")
    at.switch_page("pages/caseload.py")
    at.run()
    assert not at.exception
    assert "This page is not part of your role" in main_text(at)
    assert not at.dataframe
    assert not re.search(r"P\d{5}", main_text(at))


def test_the_page_refuses_a_therapist_when_run_directly(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as("therapist.anna", script="pages/caseload.py").run()
    assert not at.exception
    assert [e.value for e in at.error][0].startswith("This page is not part of your role")
    assert not at.dataframe


def test_logged_out_gets_the_login_form(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as(None, script="pages/caseload.py").run()
    assert is_login_form(at)


def test_the_supervisor_sees_only_team_north(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as("supervisor.sara")
    at.switch_page("pages/caseload.py")
    at.run()
    assert not at.exception, at.exception
    table = _table(at)
    assert set(table["therapist_id"]) == NORTH
    # the planted unrepaired ruptures of team North (CATALOG.md), none of team South's (P00014)
    ruptures = set(table.loc[table["status"].eq("unrepaired"), "patient_id"])
    assert ruptures == {"P00001", "P00027", "P00043"}
    assert "P00014" not in set(table["patient_id"]) and "P00004" not in set(table["patient_id"])
    # the rows that stand first come first, then the tiers in order
    first = table["urgent_first"].tolist()
    assert first == sorted(first, reverse=True)
    assert table["triage"].is_monotonic_increasing
    assert table["link"].str.fullmatch(r"/patient\?patient=P\d{5}").all()


def test_rows_name_their_instrument_and_show_blanks_not_none(app_as) -> None:  # type: ignore[no-untyped-def]
    # two low-alliance rows of one patient and week (WAI-SR and WAI-P) must not look like duplicates,
    # and a flag without a note or instrument shows an empty cell, not the word "None"
    at = app_as("supervisor.sara")
    at.switch_page("pages/caseload.py")
    at.run()
    table = _table(at)
    assert "instrument" in table.columns
    assert not table.duplicated(["patient_id", "kind", "instrument", "week"]).any()
    assert {"WAI-SR", "SPIN"} <= set(table["instrument"])
    for column in ("note", "instrument"):
        assert table[column].map(lambda v: isinstance(v, str)).all(), table[column].unique()[:5]
    assert (table["note"] == "").any()


def test_an_admin_sees_every_team(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as("admin")
    at.switch_page("pages/caseload.py")
    at.run()
    assert not at.exception
    assert {"therapist.david", "therapist.eva"} <= set(_table(at)["therapist_id"])


def test_filters_narrow_the_table(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as("supervisor.sara")
    at.switch_page("pages/caseload.py")
    at.run()
    therapist = next(m for m in at.multiselect if m.label == "Therapist")
    therapist.set_value(["therapist.ben"]).run()
    assert set(_table(at)["therapist_id"]) == {"therapist.ben"}
    kind = next(m for m in at.multiselect if m.label == "Kind")
    kind.set_value(["rupture"]).run()
    table = _table(at)
    assert set(table["kind"]) == {"rupture"} and set(table["patient_id"]) >= {"P00027"}
    assert "of" in main_text(at)


@pytest.mark.parametrize("role", ["supervisor.sara", "admin"])
def test_the_view_is_audited(app_as, demo_db: str, role: str) -> None:  # type: ignore[no-untyped-def]
    from db import audit
    from db.engine import make_engine, session_factory

    at = app_as(role)
    at.switch_page("pages/caseload.py")
    at.run()
    engine = make_engine(demo_db)
    with session_factory(engine)() as session:
        events = audit.read_events(session)
    engine.dispose()
    assert ((events["action"] == "view_caseload") & (events["actor"] == role)).any()


def test_open_patient_opens_the_patient_page_in_the_same_session(app_as) -> None:  # type: ignore[no-untyped-def]
    at = app_as("supervisor.sara")
    at.switch_page("pages/caseload.py")
    at.run()
    at.selectbox(key="caseload_open_patient").select("P00027").run()
    at.button(key="caseload_open_button").click().run()
    assert not at.exception
    assert "Patient P00027" in main_text(at)


def test_the_alliance_courses_are_drawn_on_request(app_as) -> None:  # type: ignore[no-untyped-def]
    import json

    at = app_as("supervisor.sara")
    at.switch_page("pages/caseload.py")
    at.run()
    assert not at.get("plotly_chart")  # the table comes first; the twelve panels only when asked for
    at.toggle(key="caseload_courses").set_value(True).run()
    assert not at.exception, at.exception
    [chart] = at.get("plotly_chart")
    spec = json.loads(chart.proto.spec)
    panels = {a["text"] for a in spec["layout"]["annotations"]}
    assert panels and panels <= set(_table(at)["patient_id"]) and len(panels) <= 12
    assert {t["name"] for t in spec["data"]} >= {"WAI-SR"}


def test_triage_marks_a_small_explained_set_first(app_as) -> None:  # type: ignore[no-untyped-def]
    # issue 15: 23 of 24 alerts stood first (every old low-severity alert was "overdue"); now only
    # urgent risk items, unrepaired ruptures and high-severity alerts not addressed within a week do,
    # and the page says how many of each
    at = app_as("supervisor.sara")
    at.switch_page("pages/caseload.py")
    at.run()
    table = _table(at)
    first = table[table["urgent_first"]]
    assert 0 < len(first) < len(table)
    assert set(first["triage"]) <= {1, 2, 3}
    assert (first["severity"].eq("urgent") | first["status"].eq("unrepaired") | first["severity"].eq("high")).all()
    old_low = table[table["severity"].isin(["low", "medium"]) & table["status"].eq("open") & table["age_days"].gt(7)
                    & table["kind"].ne("rupture")]
    assert len(old_low) and not old_low["urgent_first"].any()  # ordered after, but not marked first
    text = main_text(at)
    n_risk = int(first["triage"].eq(1).sum())
    n_rupture = int(first["triage"].eq(2).sum())
    assert re.search(rf"{len(first)} stands? first:", text), text
    assert f"{n_risk} urgent risk item" in text and f"{n_rupture} unrepaired rupture" in text
    assert first["act_on"].str.startswith("First · ").all()
    assert not table.loc[~table["urgent_first"], "act_on"].str.startswith("First").any()


def test_the_table_reads_in_words_and_shows_why_on_screen(app_as) -> None:  # type: ignore[no-untyped-def]
    # labels instead of codes (risk_item, reliable_drop+below_own_level), the questionnaire named,
    # and the reason ("Why") among the columns that fit on a 1440 px screen
    import json

    at = app_as("supervisor.sara")
    at.switch_page("pages/caseload.py")
    at.run()
    frame = at.dataframe[0]
    order = list(frame.proto.column_order)
    config = json.loads(frame.proto.columns)
    shown = frame.value[order]
    for column in ("act_on", "alert", "rule_words", "status_words"):
        assert not shown[column].str.contains(r"_|\+").any(), shown[column].unique()
    assert (shown["alert"] == "Risk item · PHQ-9").any()
    assert shown["rule_words"].ne("").all() and shown["rule_words"].str.contains("risk item").any()
    assert "Rule" in {c.get("label") for c in config.values()}
    # the reason starts within the first 700 px of the table (1440 px less the sidebar and margins)
    before = order[:order.index("explanation")]
    widths = [config[c].get("width") for c in before]
    assert all(isinstance(w, int) for w in widths), widths
    assert sum(widths) + 35 <= 700, widths
    assert config["explanation"]["label"] == "Why"
    # two alerts of one patient differ on screen: the week is beside the alert (P00017's two risk items)
    assert "week" in before
    assert not shown.duplicated(subset=before).any()
    kinds = next(m for m in at.multiselect if m.label == "Kind")
    assert "Risk item" in kinds.options and "risk_item" not in kinds.options


def test_a_supervisor_without_a_team_sees_an_empty_caseload_not_an_error(app_for, clinic: str) -> None:  # type: ignore[no-untyped-def]
    from db.access import SYSTEM
    from db.engine import make_engine, transaction
    from db.writes import create_account

    engine = make_engine(clinic)
    with transaction(engine) as session:
        create_account(session, actor=SYSTEM, name="supervisor.noteam", role="supervisor",
                       password="a long enough password 2026", team=None)
    engine.dispose()
    for page in ("pages/caseload.py", "pages/clinic.py"):
        at = app_for("supervisor.noteam", script=page).run()
        assert not at.exception, (page, at.exception)
        assert not re.search(r"P\d{5}", main_text(at)), page
