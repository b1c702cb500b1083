""""New since your last visit" on My patients and the caseload (stored flags' raised_at vs the
user's previous visit, db.visits), over a private writable demo clinic on both backends."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from sqlalchemy import text
from streamlit.testing.v1 import AppTest
from typer.testing import CliRunner

from db.engine import make_engine, transaction
from manage import app
from tests.app.conftest import ROOT, TIMEOUT, log_in, main_text
from ui import cache as ui_cache


def _page(url: str, name: str, script: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / script), default_timeout=TIMEOUT)
    log_in(at, url, name)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def _new_patients(at: AppTest) -> set[str]:
    frame = at.dataframe[0].value
    return set(frame.loc[frame["new_mark"] == "New", "patient_id"])


def test_a_flag_raised_after_the_last_visit_is_marked_new_once(writable_demo: str, tmp_path: Path) -> None:
    st.cache_data.clear()
    ui_cache.clear()
    engine = make_engine(writable_demo)
    with transaction(engine) as session:  # other tests' AppTests visited the demo clinic's pages
        session.execute(text("DELETE FROM page_visits"))
    engine.dispose()
    first = _page(writable_demo, "therapist.anna", "pages/my_patients.py")
    assert "From your next visit on" in main_text(first) and _new_patients(first) == set()
    board = _page(writable_demo, "supervisor.sara", "pages/caseload.py")
    assert "From your next visit on" in main_text(board)
    # P00021 (start 2026-10-19, last questionnaire in week 6) sends week 7: alliance 18, a rupture and low alliance
    csv = tmp_path / "week.csv"
    csv.write_text("patient_id,therapist_id,week,instrument,score\nP00021,therapist.anna,7,WAI-SR,18\n",
                   encoding="utf-8")
    assert CliRunner().invoke(app, ["import-scores", str(csv), "--db", writable_demo]).exit_code == 0
    again = _page(writable_demo, "therapist.anna", "pages/my_patients.py")
    assert _new_patients(again) == {"P00021"}
    assert "1 patient has flags new since your last visit" in main_text(again)
    board = _page(writable_demo, "supervisor.sara", "pages/caseload.py")
    alerts = board.dataframe[0].value
    new = alerts[alerts["new_mark"] == "New"]
    assert set(new["patient_id"]) == {"P00021"} and set(new["week"]) == {7}
    assert "2 new since your last visit" in main_text(board) or f"{len(new)} new since" in main_text(board)
    # the next visit compares with this one: nothing is new any more
    third = _page(writable_demo, "therapist.anna", "pages/my_patients.py")
    assert _new_patients(third) == set() and "No flags are new since your last visit" in main_text(third)
    st.cache_data.clear()
    ui_cache.clear()
