"""Issue 13's safety signals through the command line, on both databases.

PHQ-9 item 9 implied by totals of 25-27; a dated patient who stops is flagged ``missed`` weeks
later (``flags --today``), a discharged or paused one is not; a rupture followed by silence is
``unrepaired``; imports say which patients have no calendar and how many PHQ-9 rows lack items.
"""

from __future__ import annotations

import datetime as dt
import io
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from core import clock
from db.access import SYSTEM
from db.engine import make_engine, session_factory
from db.queries import list_patients, risk_item_coverage
from manage import app

runner = CliRunner()
START = dt.date(2026, 1, 5)  # a Monday: week w is administered on START + 7 (w - 1)


def _dated(code: str, instrument: str, scores: list[float], *, start: dt.date = START) -> list[str]:
    return [f"{code},anna,{w},{instrument},{s:g},{start + dt.timedelta(days=7 * (w - 1))}"
            for w, s in enumerate(scores, start=1)]


def _import(tmp_path: Path, db_url: str, lines: list[str]) -> str:
    path = tmp_path / "scores.csv"
    path.write_text("patient_id,therapist_id,week,instrument,score,administered_on\n" + "\n".join(lines) + "\n",
                    encoding="utf-8")
    result = runner.invoke(app, ["import-scores", str(path), "--db", db_url])
    assert result.exit_code == 0, result.output + result.stderr
    return result.output


def _import_text(tmp_path: Path, db_url: str, body: str):  # type: ignore[no-untyped-def]
    """Import a whole file (header and rows) given as text; the CLI result."""
    path = tmp_path / "file.csv"
    path.write_text(body, encoding="utf-8")
    return runner.invoke(app, ["import-scores", str(path), "--db", db_url])


def _flags(db_url: str, *extra: str) -> pd.DataFrame:
    result = runner.invoke(app, ["flags", "--db", db_url, *extra])
    assert result.exit_code == 0, result.output + result.stderr
    return pd.read_csv(io.StringIO(result.stdout), dtype={"patient_id": str})


def test_phq9_totals_of_25_to_27_raise_the_risk_alert_without_items(db_url: str, tmp_path: Path) -> None:
    lines = [f"T{total},anna,1,PHQ-9,{total}," for total in (23, 24, 25, 26, 27)]
    out = _import(tmp_path, db_url, lines)
    # the import says how many PHQ-9 rows come without items, and how many of them imply the item
    assert "5 PHQ-9 rows come without item answers" in out and "3 of them have a total that implies it" in out
    risk = _flags(db_url).query("kind == 'risk_item'")
    assert sorted(risk["patient_id"]) == ["T25", "T26", "T27"]
    assert set(risk["severity"]) == {"urgent"}
    by_code = risk.set_index("patient_id")["explanation"]
    assert "implied by the total" in by_code["T25"] and "at least 1" in by_code["T25"]
    assert "at least 3" in by_code["T27"]
    # the totals below 25 are a notice: their self-harm item cannot be checked
    engine = make_engine(db_url)
    with session_factory(engine)() as session:
        coverage = risk_item_coverage(session, actor=SYSTEM)
    engine.dispose()
    assert sorted(coverage["patient_id"]) == ["T23", "T24"]
    assert coverage["unchecked"].tolist() == [1, 1]


def test_items_answered_zero_do_not_raise_and_items_answered_above_do(db_url: str, tmp_path: Path) -> None:
    header = "patient_id,therapist_id,week,instrument,score," + ",".join(f"item_{i}" for i in range(1, 10))
    path = tmp_path / "items.csv"
    path.write_text(header + "\nI0,anna,1,PHQ-9,24," + ",".join(["3"] * 8 + ["0"])
                    + "\nI2,anna,1,PHQ-9,10," + ",".join(["1"] * 8 + ["2"]) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["import-scores", str(path), "--db", db_url])
    assert result.exit_code == 0, result.output
    assert "without item answers" not in result.output
    risk = _flags(db_url).query("kind == 'risk_item'")
    assert risk["patient_id"].tolist() == ["I2"]
    assert "was answered 2" in risk["explanation"].iloc[0]


def test_a_dated_patient_who_stops_is_missed_weeks_later_unless_discharged_or_paused(db_url: str,
                                                                                   tmp_path: Path) -> None:
    lines = (_dated("STOP", "WAI-SR", [50, 51, 52]) + _dated("DONE", "WAI-SR", [50, 51, 52])
             + _dated("REST", "WAI-SR", [50, 51, 52]))
    out = _import(tmp_path, db_url, lines)
    assert "no treatment calendar" not in out  # every patient is dated
    # the import gave each patient a start date from their dated rows
    engine = make_engine(db_url)
    with session_factory(engine)() as session:
        starts = list_patients(session, actor=SYSTEM).set_index("patient_id")["start_date"]
    engine.dispose()
    assert {pd.Timestamp(v).date() for v in starts} == {START}
    # before the next week is due nothing is missed; two weeks overdue it is
    assert _flags(db_url, "--today", "2026-01-25").query("kind == 'missed'").empty
    weeks_later = _flags(db_url, "--today", "2026-03-02").query("kind == 'missed'")
    assert sorted(weeks_later["patient_id"]) == ["DONE", "REST", "STOP"]
    assert weeks_later.set_index("patient_id").loc["STOP", "week"] == 5  # last week 3 + 2 missed weeks
    # discharge one, pause another on 2026-01-25 (the calendar stops on the pause day: week 3)
    for code, status in (("DONE", "discharged"), ("REST", "paused")):
        result = runner.invoke(app, ["set-patient", code, "--status", status, "--since", "2026-01-25",
                                     "--reason", "test", "--db", db_url])
        assert result.exit_code == 0, result.output + result.stderr
        assert f"status active -> {status}" in result.output
    later = _flags(db_url, "--today", "2026-03-02").query("kind == 'missed'")
    assert later["patient_id"].tolist() == ["STOP"]
    # the audit trail keeps the change
    audit = runner.invoke(app, ["audit", "--format", "csv", "--db", db_url])
    assert "patient_details" in audit.output and "discharged" in audit.output


def test_a_rupture_followed_by_silence_is_unrepaired_once_its_window_has_passed(db_url: str,
                                                                                 tmp_path: Path) -> None:
    _import(tmp_path, db_url, _dated("SIL", "WAI-SR", [50, 51, 52, 51, 38]))  # a 13-point fall in week 5
    within = _flags(db_url, "--today", "2026-02-09").query("kind == 'rupture'")  # week 6: window still open
    assert within["status"].tolist() == ["open"]
    passed = _flags(db_url, "--today", "2026-02-16").query("kind == 'rupture'")  # week 7 = 5 + 2
    assert passed["week"].tolist() == [5] and passed["status"].tolist() == ["unrepaired"]
    # discharged patients raise no new repair alerts: the rupture stays as the data left it
    runner.invoke(app, ["set-patient", "SIL", "--status", "discharged", "--since", "2026-02-03", "--db", db_url])
    assert _flags(db_url, "--today", "2026-03-02").query("kind == 'rupture'")["status"].tolist() == ["open"]


def test_an_undated_import_says_which_patients_have_no_calendar(db_url: str, tmp_path: Path) -> None:
    out = _import(tmp_path, db_url, ["U1,anna,1,WAI-SR,50,", "U1,anna,2,WAI-SR,51,", "U2,anna,1,WAI-SR,40,",
                                     *_dated("D1", "WAI-SR", [45])])
    assert "2 patients have no treatment calendar (U1, U2)" in out
    assert "missed questionnaires cannot be detected" in out
    # setting a start date gives them one; the next import says nothing more
    result = runner.invoke(app, ["set-patient", "U1", "--start-date", "2026-01-05", "--db", db_url])
    assert result.exit_code == 0 and "start date none -> 2026-01-05" in result.output
    assert len(_flags(db_url, "--today", "2026-03-02").query("kind == 'missed' and patient_id == 'U1'")) == 1


def test_set_patient_refuses_what_is_wrong_and_writes_nothing(db_url: str, tmp_path: Path) -> None:
    _import(tmp_path, db_url, _dated("R1", "WAI-SR", [50]))
    cases = [(["NOPE", "--status", "paused"], "There is no patient NOPE"),
             (["R1", "--status", "asleep"], "is not a patient status"),
             (["R1", "--since", "2025-12-01", "--status", "paused"], "cannot begin"),
             (["R1", "--start-date", "05/01/2026"], "is not a date"),
             (["R1", "--therapist", "nobody"], "is not an active therapist account")]
    for args, message in cases:
        result = runner.invoke(app, ["set-patient", *args, "--db", db_url])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)
    engine = make_engine(db_url)
    with session_factory(engine)() as session:
        row = list_patients(session, actor=SYSTEM).set_index("patient_id").loc["R1"]
    engine.dispose()
    assert row["status"] == "active" and pd.isna(row["status_since"])
    created = runner.invoke(app, ["set-patient", "NEW1", "--create", "--therapist", "anna", "--db", db_url])
    assert created.exit_code == 0, created.output + created.stderr


def test_an_import_sets_each_patients_calendar_from_its_columns(db_url: str, tmp_path: Path) -> None:
    body = ("patient_id,therapist_id,week,instrument,score,administered_on,start_date,patient_status,status_since\n"
            "C1,anna,1,WAI-SR,50,2026-01-05,,,\nC1,anna,2,WAI-SR,51,2026-01-12,,discharged,2026-01-20\n"
            "C2,anna,1,WAI-SR,50,,2026-01-05,,\nC2,anna,2,WAI-SR,51,,,,\nC3,anna,1,WAI-SR,50,,,Paused,\n")
    result = _import_text(tmp_path, db_url, body)
    assert result.exit_code == 0, result.output + result.stderr
    assert "1 patient has no treatment calendar (C3)" in result.output  # C2's start date is in the file
    engine = make_engine(db_url)
    with session_factory(engine)() as session:
        rows = list_patients(session, actor=SYSTEM).set_index("patient_id")
    engine.dispose()
    assert rows.loc["C1", "status"] == "discharged" and rows.loc["C1", "status_since"] == dt.date(2026, 1, 20)
    assert rows.loc["C1", "start_date"] == START  # from its dated rows
    assert rows.loc["C2", "start_date"] == START and rows.loc["C2", "status"] == "active"
    assert rows.loc["C3", "status"] == "paused" and rows.loc["C3", "status_since"] == clock.today()
    # the discharged patient raises no missed flag; C2 (active, dated by its start_date) does
    missed = _flags(db_url, "--today", "2026-03-02").query("kind == 'missed'")
    assert missed["patient_id"].tolist() == ["C2"]
    # re-importing the same file changes nothing: no new audit rows
    before = runner.invoke(app, ["audit", "--format", "csv", "--db", db_url]).output.count("patient_details")
    assert before == 3
    assert _import_text(tmp_path, db_url, body).exit_code == 0
    after = runner.invoke(app, ["audit", "--format", "csv", "--db", db_url]).output.count("patient_details")
    assert after == before


def test_an_import_refuses_calendar_values_that_disagree_or_are_wrong(db_url: str, tmp_path: Path) -> None:
    result = _import_text(tmp_path, db_url, "patient_id,therapist_id,week,instrument,score,patient_status,start_date,"
                          "status_since\nC1,anna,3,WAI-SR,50,asleep,,\nC1,anna,4,WAI-SR,50,active,,\n"
                          "C1,anna,5,WAI-SR,50,paused,,\nC4,anna,1,WAI-SR,50,,2026-02-01,2026-01-01\n"
                          "C5,anna,1,WAI-SR,50,,1/2/2026,\n")
    assert result.exit_code == 2
    assert "row 2, column patient_status: must be one of active, paused" in result.stderr
    assert "row 4, column patient_status: patient C1 has another patient_status in an earlier row" in result.stderr
    assert "row 5, column status_since: is before the row's start_date" in result.stderr
    assert "row 6, column start_date: must be a date written YYYY-MM-DD" in result.stderr
    assert "nothing was written" in result.stderr


def test_stored_flags_of_an_older_rules_revision_are_recomputed_at_the_next_start(db_url: str,
                                                                                   tmp_path: Path) -> None:
    from sqlalchemy import delete, update

    from db.engine import transaction
    from db.flagstore import COMPUTED_FOR, ensure_current
    from db.models import Setting, StoredFlag

    _import(tmp_path, db_url, ["T26,anna,1,PHQ-9,26,"])
    engine = make_engine(db_url)
    assert not ensure_current(engine)  # stored under this revision: nothing to do
    # as a database left by the previous release: no implied risk alert, computed for "rule set 1"
    with transaction(engine) as session:
        session.execute(delete(StoredFlag))
        session.execute(update(Setting).where(Setting.key == COMPUTED_FOR).values(value="1"))
    assert ensure_current(engine)  # the app's start (ui.session) recomputes once
    with transaction(engine) as session:  # and again, left by the previous release
        session.execute(delete(StoredFlag))
        session.execute(update(Setting).where(Setting.key == COMPUTED_FOR).values(value="1"))
    engine.dispose()
    result = runner.invoke(app, ["flags", "--db", db_url])  # so does every command's
    assert "Computed and stored every flag once" in result.stderr
    assert _flags(db_url).query("kind == 'risk_item'")["patient_id"].tolist() == ["T26"]
