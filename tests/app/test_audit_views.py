"""Issue 18: the views that showed scores without a trace are audited, once per browser session.

My patients shows the latest scores of every listed patient (``view_caseload_list``); the weekly
entry shows a stored questionnaire before it is edited (``view_score``). Over a private copy of
the demo clinic, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json

from sqlalchemy import select

from db import accounts
from db.access import SYSTEM
from db.engine import make_engine, session_factory
from db.models import AuditEvent


def _events(url: str, action: str, actor: str) -> list[AuditEvent]:
    engine = make_engine(url)
    with session_factory(engine)() as session:
        events = list(session.scalars(select(AuditEvent).where(AuditEvent.action == action, AuditEvent.actor == actor)
                                      .order_by(AuditEvent.id)))
    engine.dispose()
    return events


def test_my_patients_records_every_listed_patient_once_per_session(app_as, writable_demo: str) -> None:  # type: ignore[no-untyped-def]
    at = app_as("therapist.anna").run()
    assert not at.exception, at.exception
    listed = sorted(at.dataframe[0].value["patient_id"])
    events = _events(writable_demo, "view_caseload_list", "therapist.anna")
    assert len(events) == 1
    detail = json.loads(events[0].detail)
    assert detail["patients"] == listed and detail["count"] == len(listed) > 0
    at.toggle(key="only_new").set_value(True).run()  # filtering reruns the page: no second row
    at.run()
    assert len(_events(writable_demo, "view_caseload_list", "therapist.anna")) == 1
    app_as("therapist.anna").run()  # a new browser session is recorded again
    assert len(_events(writable_demo, "view_caseload_list", "therapist.anna")) == 2
    engine = make_engine(writable_demo)  # the admin's filter by patient code finds the list views
    with session_factory(engine)() as session:
        found = accounts.audit_trail(session, actor=SYSTEM, patient_code=listed[0])
    engine.dispose()
    assert (found["action"] == "view_caseload_list").sum() == 2


def test_the_weekly_entry_records_each_stored_score_it_shows_once(app_as, writable_demo: str) -> None:  # type: ignore[no-untyped-def]
    at = app_as("therapist.anna", script="pages/entry.py")
    at.query_params["patient"] = "P00001"
    at.run()
    at.selectbox[1].set_value("WAI-SR").run()
    at.number_input[0].set_value(2).run()
    assert not at.exception, at.exception
    assert "Week 2 already has a WAI-SR for patient P00001" in " ".join(str(i.value) for i in at.info)
    events = _events(writable_demo, "view_score", "therapist.anna")
    shown = [(e.patient_code, json.loads(e.detail)["instrument"], json.loads(e.detail)["week"]) for e in events]
    assert shown[-1] == ("P00001", "WAI-SR", 2) and len(set(shown)) == len(shown)  # every week shown on the way
    assert json.loads(events[-1].detail) == {"instrument": "WAI-SR", "week": 2, "version": 1}
    at.run()  # every keystroke reruns the page: no second row
    at.number_input[0].set_value(45).run()  # an empty week shows nothing stored: nothing recorded
    assert not at.info or "already has" not in " ".join(str(i.value) for i in at.info)
    assert len(_events(writable_demo, "view_score", "therapist.anna")) == len(events)
