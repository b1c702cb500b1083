"""The admin page (/admin) in AppTest: accounts, roles, teams, password resets, caseloads, the
audit-trail viewer and its "Verify chain" button, over a private copy of the demo clinic."""

from __future__ import annotations

import json

from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from db import audit
from db.engine import make_engine, session_factory
from db.models import Account, Patient
from tests.app import test_security
from tests.app.conftest import main_text, shown
from tests.app.test_security import is_login_form

# The private writable clinic and the AppTest factory of the security tests.
clinic = test_security.clinic
app_for = test_security.app_for

PAGE = "pages/admin.py"


def _widget(seq, label: str):  # type: ignore[no-untyped-def]
    matches = [w for w in seq if shown(w.label) == label]
    assert matches, f"no widget labelled {label!r}: {[w.label for w in seq]}"
    return matches[0]


def _db(clinic_url: str):  # type: ignore[no-untyped-def]
    engine = make_engine(clinic_url)
    return engine, session_factory(engine)()


def _one(clinic_url: str, model, where):  # type: ignore[no-untyped-def]
    """The row of ``model`` matching ``where`` (detached), or None."""
    engine, session = _db(clinic_url)
    with session:
        row = session.scalar(select(model).where(where))
        if row is not None:
            session.expunge(row)
    engine.dispose()
    return row


def _account(clinic_url: str, name: str) -> Account | None:
    return _one(clinic_url, Account, Account.name == name)


def _last_event(clinic_url: str, action: str) -> dict:
    engine, session = _db(clinic_url)
    with session:
        frame = audit.read_events(session)
    engine.dispose()
    row = frame[frame["action"] == action].iloc[-1]
    code = row["patient_code"]
    return {"actor": row["actor"], "patient_code": code if isinstance(code, str) else None,
            **json.loads(row["detail"])}


def _choose(at: AppTest, name: str) -> AppTest:
    _widget(at.selectbox, "Account").set_value(name)
    at.run()
    assert not at.exception, at.exception
    return at


def test_admin_page_lists_accounts_and_the_audit_trail(app_for) -> None:  # type: ignore[no-untyped-def]
    at = app_for("admin", script=PAGE).run()
    assert not at.exception, at.exception
    assert [t.label for t in at.tabs] == ["Accounts", "Patients", "Move patients", "Rule parameters", "API clients",
                                          "Notifications", "Backups", "Audit trail"]
    names = at.dataframe[0].value["name"].tolist()
    assert {"admin", "therapist.anna", "supervisor.sara"} <= set(names)
    assert "password_hash" not in at.dataframe[0].value.columns
    accounts = at.dataframe[0].value  # blanks and "never", not "None", for what an account lacks
    for column in ("email", "team", "last_login"):
        assert accounts[column].map(lambda v: isinstance(v, str)).all(), accounts[column].tolist()
    assert accounts.loc[accounts["name"] == "admin", "team"].tolist() == [""]
    assert accounts["last_login"].str.fullmatch(r"never|\d{4}-\d\d-\d\d \d\d:\d\d").all()
    trail = at.dataframe[-1].value
    assert {"id", "at", "actor", "action", "patient_code", "detail"} <= set(trail.columns)
    assert "seed-demo" in main_text(at) or len(trail) > 0


def test_verify_chain_button_reports_an_intact_trail(app_for) -> None:  # type: ignore[no-untyped-def]
    at = app_for("admin", script=PAGE).run()
    _widget(at.button, "Verify chain").click().run()
    assert [s.value for s in at.success][-1].startswith("The audit trail is intact:")


def test_audit_filters(app_for, clinic: str) -> None:  # type: ignore[no-untyped-def]
    anna = app_for("therapist.anna", script="pages/patient.py", patient="P00001").run()
    assert "Patient P00001" in main_text(anna)
    at = app_for("admin", script=PAGE).run()
    _widget(at.selectbox, "Action").set_value("view_patient")
    _widget(at.text_input, "Who (username)").input("therapist.anna")
    at.run()
    trail = at.dataframe[-1].value
    assert len(trail) >= 1
    assert set(trail["action"]) == {"view_patient"} and set(trail["actor"]) == {"therapist.anna"}
    assert _last_event(clinic, "view_audit")["filter_action"] == "view_patient"


def test_add_account_refuses_a_short_password_then_adds(app_for, clinic: str) -> None:  # type: ignore[no-untyped-def]
    at = app_for("admin", script=PAGE).run()
    form = {"Username (login)": "therapist.fred", "Full name": "Fred Example", "Team": "South",
            "E-mail for single sign-on (optional)": "Fred@Example.org", "Initial password": "short"}
    for label, value in form.items():
        _widget(at.text_input, label).input(value)
    _widget(at.selectbox, "Role").set_value("therapist")
    _widget(at.button, "Add account").click().run()
    assert any("at least 12" in e.value for e in at.error)
    assert _account(clinic, "therapist.fred") is None
    # issue 15: the refusal cleared every field; now what was typed stays, to be corrected
    for label, value in form.items():
        assert _widget(at.text_input, label).value == value, label
    assert _widget(at.selectbox, "Role").value == "therapist"
    _widget(at.text_input, "Initial password").input("a long enough passphrase")
    _widget(at.button, "Add account").click().run()
    assert not at.error, [e.value for e in at.error]
    assert any("Added the account therapist.fred" in s.value for s in at.success)
    fred = _account(clinic, "therapist.fred")
    assert fred is not None and fred.team == "South" and fred.email == "fred@example.org"
    assert _widget(at.text_input, "Username (login)").value == ""  # an added account gives an empty form


def test_the_audit_viewer_reads_in_fields_and_downloads_csv(app_for) -> None:  # type: ignore[no-untyped-def]
    # issue 15: the viewer showed raw JSON, cut "Who", and offered no download
    at = app_for("admin", script=PAGE).run()
    trail = at.dataframe[-1]
    order = list(trail.proto.column_order)
    assert "details" in order and "detail" not in order
    shown_rows = trail.value
    assert not shown_rows["details"].str.contains(r'[{}"]', regex=True).any()
    assert shown_rows["details"].str.contains(": ").any()
    config = json.loads(trail.proto.columns)
    assert config["actor"]["label"] == "Who" and int(config["actor"]["width"]) >= 150
    assert "Download these rows (CSV)" in [b.proto.label for b in at.get("download_button")]


def test_change_role_team_and_email_are_audited(app_for, clinic: str) -> None:  # type: ignore[no-untyped-def]
    at = _choose(app_for("admin", script=PAGE).run(), "supervisor.sara")
    _widget(at.text_input, "Team").input("South")
    _widget(at.text_input, "E-mail for single sign-on").input("sara@clinic.example")
    _widget(at.text_input, "Reason (kept in the audit trail)").input("covers South this month")
    _widget(at.button, "Save role, team and e-mail").click().run()
    assert not at.error, [e.value for e in at.error]
    sara = _account(clinic, "supervisor.sara")
    assert sara is not None and sara.team == "South" and sara.email == "sara@clinic.example"
    assert _last_event(clinic, "set_team") == {"actor": "admin", "patient_code": None, "account": "supervisor.sara",
                                               "old": "North", "new": "South", "reason": "covers South this month"}
    at = _choose(app_for("admin", script=PAGE).run(), "supervisor.sara")  # back to North for other tests
    _widget(at.text_input, "Team").input("North")
    _widget(at.button, "Save role, team and e-mail").click().run()
    assert _account(clinic, "supervisor.sara").team == "North"  # type: ignore[union-attr]


def test_deactivating_a_therapist_with_patients_is_refused_with_the_fix(app_for, clinic: str) -> None:  # type: ignore[no-untyped-def]
    at = _choose(app_for("admin", script=PAGE).run(), "therapist.ben")
    _widget(at.button, "Deactivate therapist.ben").click().run()
    assert any("patients on their caseload; move them" in shown(e.value) for e in at.error)
    assert _account(clinic, "therapist.ben").active  # type: ignore[union-attr]


def test_reset_password_logs_the_account_out_everywhere(app_for, clinic: str) -> None:  # type: ignore[no-untyped-def]
    david = app_for("therapist.david").run()
    assert not is_login_form(david)
    at = _choose(app_for("admin", script=PAGE).run(), "therapist.david")
    _widget(at.text_input, "New password").input("a fresh passphrase for david")
    _widget(at.text_input, "New password again").input("a different one entirely")
    _widget(at.button, "Reset password").click().run()
    assert any("differ" in shown(e.value) for e in at.error)
    _widget(at.text_input, "New password").input("a fresh passphrase for david")
    _widget(at.text_input, "New password again").input("a fresh passphrase for david")
    _widget(at.button, "Reset password").click().run()
    assert any("logged out" in shown(s.value) for s in at.success)
    david.run()
    assert is_login_form(david)
    assert _last_event(clinic, "reset_password") == {"actor": "admin", "patient_code": None,
                                                     "account": "therapist.david"}


def test_move_patients_between_caseloads(app_for, clinic: str) -> None:  # type: ignore[no-untyped-def]
    at = app_for("admin", script=PAGE).run()
    _widget(at.multiselect, "Patients").set_value(["P00005", "P00010"])
    _widget(at.text_input, "Reason (kept in the audit trail)").input("eva on leave")
    _widget(at.selectbox, "Move to therapist").set_value("therapist.david")
    _widget(at.button, "Move patients").click().run()
    assert not at.error, [e.value for e in at.error]
    engine, session = _db(clinic)
    with session:
        owners = dict(session.execute(select(Patient.code, Account.name).join(Patient.therapist)
                                      .where(Patient.code.in_(["P00005", "P00010"]))).all())
    engine.dispose()
    assert owners == {"P00005": "therapist.david", "P00010": "therapist.david"}
    event = _last_event(clinic, "assign")
    assert (event["actor"], event["old"], event["new"]) == ("admin", "therapist.eva", "therapist.david")


def test_rule_parameters_tab_shows_each_numbers_source_and_freezes_a_new_rule_set(app_for, clinic: str) -> None:  # type: ignore[no-untyped-def]
    at = app_for("admin", script=PAGE).run()
    params = at.dataframe[3].value
    assert set(params["instrument"]) >= {"WAI-SR", "SPIN", "PHQ-9"}
    source = params.set_index("instrument")["source"]
    assert source["WAI-SR"].startswith("literature: SD 10") and "Hatcher & Gillaspy (2006)" in source["WAI-SR"]
    assert source["SPIN"].startswith("this clinic's week-1 SD, 60 patients")
    before = next(m.value for m in at.markdown if "is in force" in m.value)
    _widget(at.button, "Freeze and recompute").click().run()
    assert not at.exception, at.exception
    assert any("flags recomputed and stored" in s.value for s in at.success), [s.value for s in at.success]
    after = next(m.value for m in at.markdown if "is in force" in m.value)
    assert after != before
    assert _last_event(clinic, "setting")["key"] == "rule_set"


def test_rule_parameters_tab_changes_a_rule_setting_and_freezes_the_course(app_for, clinic: str) -> None:  # type: ignore[no-untyped-def]
    at = app_for("admin", script=PAGE).run()
    frames = {tuple(d.value.columns): d.value for d in at.dataframe}
    rules = next(v for cols, v in frames.items() if "param" in cols and "default" in cols)
    row = rules[(rules["rule"] == "below_expected") & (rules["param"] == "k_sd")].iloc[0]
    assert (row["value"], row["default"], row["changed"]) == ("3.2", "3.2", "")
    course = next(v for cols, v in frames.items() if "course" in cols)
    assert {"WAI-SR", "WAI-SR:bond", "WAI-P"} <= set(course["instrument"])
    assert course.set_index("instrument").loc["WAI-SR", "source"].startswith("literature: week means of Shalom")
    # a value the rule cannot work with: a sentence, and nothing changes
    _widget(at.selectbox, "Rule to change").set_value("below_expected").run()
    _widget(at.selectbox, "Parameter").set_value("k_sd").run()
    _widget(at.text_input, "New value").input("-1")
    _widget(at.text_input, "Reason (kept with the rule set)").input("too many alerts")
    _widget(at.button, "Change and recompute").click().run()
    assert any("must be a positive number" in e.value for e in at.error), [e.value for e in at.error]
    _widget(at.text_input, "New value").input("3.6")
    _widget(at.button, "Change and recompute").click().run()
    assert not at.exception, at.exception
    assert any("below_expected.k_sd = 3.6" in s.value for s in at.success), [s.value for s in at.success]
    event = _last_event(clinic, "setting")
    assert event["key"] == "rule_set" and event["reason"] == "too many alerts"
    _widget(at.button, "Estimate, freeze and recompute").click().run()
    assert any("froze the clinic's own expected alliance course" in s.value for s in at.success)
    frames = {tuple(d.value.columns): d.value for d in at.dataframe}
    course = next(v for cols, v in frames.items() if "course" in cols)
    assert course.set_index("instrument").loc["WAI-SR", "source"].startswith("this clinic's course, 60 patients")


def _patient(clinic_url: str, code: str) -> Patient | None:
    return _one(clinic_url, Patient, Patient.code == code)


def test_patients_tab_sets_the_calendar_and_adds_a_patient(app_for, clinic: str) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    at = app_for("admin", script=PAGE).run()
    _widget(at.selectbox, "Patient").set_value("P00002")
    at.run()
    assert not at.exception, at.exception
    _widget(at.selectbox, "Status").set_value("paused")
    _widget(at.date_input, "Status since").set_value(dt.date(2026, 11, 2))
    _widget(at.text_input, "Reason (kept in the audit trail)").input("patient on holiday")
    _widget(at.button, "Save calendar").click().run()
    assert not at.error, [e.value for e in at.error]
    assert any("Saved the calendar of P00002" in s.value for s in at.success)
    stored = _patient(clinic, "P00002")
    assert stored is not None and stored.status == "paused" and stored.status_since == dt.date(2026, 11, 2)
    event = _last_event(clinic, "patient_details")
    assert event["actor"] == "admin" and event["patient_code"] == "P00002"
    assert event["status"] == {"old": "active", "new": "paused"} and event["reason"] == "patient on holiday"
    # a pause before the start of treatment is refused with a sentence, and nothing changes
    before_start = stored.start_date - dt.timedelta(days=7)  # type: ignore[operator]
    _widget(at.date_input, "Status since").set_value(before_start)
    _widget(at.button, "Save calendar").click().run()
    assert any("cannot begin" in e.value for e in at.error)
    assert _patient(clinic, "P00002").status_since == dt.date(2026, 11, 2)  # type: ignore[union-attr]
    # add a patient before their first questionnaire
    _widget(at.text_input, "Patient code").input("P09999")
    _widget(at.selectbox, "Therapist").set_value("therapist.anna")
    _widget(at.button, "Add patient").click().run()
    assert not at.error, [e.value for e in at.error]
    added = _patient(clinic, "P09999")
    assert added is not None and added.status == "active"
    assert _last_event(clinic, "create_patient")["patient_code"] == "P09999"


def test_the_backups_tab_says_when_the_last_backup_ran(app_for, clinic: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from db.backup import backup_database

    engine = make_engine(clinic)
    at = app_for("admin", script=PAGE).run()
    assert not at.exception, at.exception
    if engine.dialect.name != "sqlite":  # pg_dump runs outside the app: the tab says where to look
        assert any("pg_dump" in i.value for i in at.info), [i.value for i in at.info]
        engine.dispose()
        return
    assert any("No backup of this database is recorded" in w.value for w in at.warning), [w.value for w in at.warning]
    target = tmp_path / "clinic-backup.db"
    backup_database(engine, target)
    engine.dispose()
    at.run()
    assert not at.exception, at.exception
    assert any(s.value.startswith("Last backup: ") and "from the command line" in s.value
               for s in at.success), [s.value for s in at.success]
    history = [d.value for d in at.dataframe if "file" in d.value.columns][0]
    assert history["action"].tolist()[0] == "backup" and history["file"].tolist()[0] == str(target)
    assert int(history["rows"].iloc[0]) > 0


def test_a_stale_backup_warns_and_postgresql_points_to_pg_dump() -> None:
    import datetime as dt

    import pandas as pd

    from ui.admin import backup_state

    now = dt.datetime(2026, 12, 4, 12, tzinfo=dt.UTC)
    history = pd.DataFrame({"at": [pd.Timestamp("2026-11-30 02:00", tz="UTC")], "actor": ["admin"],
                            "action": ["backup"], "file": ["/backups/a.db"], "rows": pd.array([10], dtype="Int64")})
    level, sentence = backup_state(history, dialect="sqlite", now=now)
    assert level == "warning" and "4 days ago" in sentence and "manage.py backup" in sentence
    level, sentence = backup_state(history, dialect="sqlite", now=now - dt.timedelta(days=3))
    assert level == "ok" and sentence.startswith("Last backup: 2026-11-30 02:00 UTC by admin")
    restored_only = history.assign(action=["restore"])
    assert backup_state(restored_only, dialect="sqlite", now=now)[0] == "warning"
    assert backup_state(history, dialect="postgresql", now=now)[0] == "info"


def test_reset_two_step_login_logs_the_account_out_and_the_rule_is_saved(app_for, clinic: str) -> None:  # type: ignore[no-untyped-def]
    from tests.app.conftest import actor_for
    from tests.db.helpers import enrol_mfa

    engine = make_engine(clinic)
    enrol_mfa(engine, actor_for(clinic, "therapist.david"))
    engine.dispose()
    david_app = app_for("therapist.david").run()
    assert not is_login_form(david_app)
    at = _choose(app_for("admin", script=PAGE).run(), "therapist.david")
    _widget(at.button, "Reset two-step login of therapist.david").click().run()
    assert any("logged out" in shown(s.value) for s in at.success), [e.value for e in at.error]
    david_app.run()
    assert is_login_form(david_app)
    assert _last_event(clinic, "mfa_reset")["account"] == "therapist.david"
    at = _choose(app_for("admin", script=PAGE).run(), "therapist.david")
    _widget(at.button, "Reset two-step login of therapist.david").click().run()  # nothing left to reset
    assert any("has no two-step login to reset" in shown(e.value) for e in at.error)
    _widget(at.multiselect, "Required for these roles").set_value(["supervisor", "admin"])
    _widget(at.button, "Save two-step login rule").click().run()
    assert _last_event(clinic, "setting") == {"actor": "admin", "patient_code": None, "key": "mfa_required_roles",
                                              "value": "supervisor,admin"}
