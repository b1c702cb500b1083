"""Addressed in feedback: access-checked, audited, reopenable, laid over the flag's status."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from sqlalchemy import select

from db.engine import session_factory, transaction
from db.flags import read_flags
from db.models import AuditEvent, FlagNote
from db.notes import mark_flag
from db.queries import read_flag_notes
from tests.db.helpers import build_clinic


def _flag(**overrides: object) -> dict:
    return {"patient_code": "PA1", "instrument": "WAI-SR", "week": 3, "kind": "rupture", **overrides}


def test_addressed_then_reopened_is_stored_with_who_and_audited(engine) -> None:  # type: ignore[no-untyped-def]
    actors = build_clinic(engine)
    with transaction(engine) as session:
        mark_flag(session, actor=actors["ther.a"], action="addressed", note="Asked how the work feels", **_flag())
    with session_factory(engine)() as session:
        notes = read_flag_notes(session, actor=actors["ther.a"], patient_code="PA1")
        assert notes[["action", "note", "by"]].values.tolist() == [["addressed", "Asked how the work feels", "ther.a"]]
        assert notes["at"].notna().all()
        # the supervisor of the team sees the note too
        assert len(read_flag_notes(session, actor=actors["sup.north"], patient_code="PA1")) == 1
    with transaction(engine) as session:
        mark_flag(session, actor=actors["ther.a"], action="reopened", note="Not settled yet", **_flag())
    with session_factory(engine)() as session:
        notes = read_flag_notes(session, actor=actors["ther.a"], patient_code="PA1")
        assert notes["action"].tolist() == ["reopened"]
        assert session.scalar(select(FlagNote.id).order_by(FlagNote.id.desc())) is not None
        assert len(session.scalars(select(FlagNote)).all()) == 2  # the history is kept
        events = session.scalars(select(AuditEvent).where(AuditEvent.action.like("flag_%"))
                                 .order_by(AuditEvent.id)).all()
    assert [e.action for e in events] == ["flag_addressed", "flag_reopened"]
    first, second = (json.loads(e.detail) for e in events)
    assert (first["old_status"], first["new_status"], first["note"]) == ("not addressed", "addressed",
                                                                        "Asked how the work feels")
    assert (second["old_status"], second["new_status"]) == ("addressed", "not addressed")
    assert {e.patient_code for e in events} == {"PA1"} and {e.actor for e in events} == {"ther.a"}


@pytest.mark.parametrize("who,code", [("ther.b", "PA1"), ("ther.a", "P99999"), ("sup.south", "PA1"),
                                      ("sup.noteam", "PA1"), ("ther.empty", "PA1")])
def test_a_patient_the_actor_may_not_see_is_no_such_patient(engine, who: str, code: str) -> None:  # type: ignore[no-untyped-def]
    actors = build_clinic(engine)
    with pytest.raises(LookupError, match="^No such patient$"), transaction(engine) as session:
        mark_flag(session, actor=actors[who], action="addressed", note="x", **_flag(patient_code=code))
    with session_factory(engine)() as session:
        assert session.scalars(select(FlagNote)).all() == []
        assert session.scalars(select(AuditEvent).where(AuditEvent.action.like("flag_%"))).all() == []


@pytest.mark.parametrize("action,note,message", [
    ("addressed", "   ", "Write a short note"),
    ("deleted", "x", "does not exist"),
    ("addressed", "x" * 1001, "shorten it"),
    ("reopened", "", "nothing to reopen"),
])
def test_bad_actions_are_refused_with_a_sentence(engine, action: str, note: str, message: str) -> None:  # type: ignore[no-untyped-def]
    actors = build_clinic(engine)
    with pytest.raises(ValueError, match=message), transaction(engine) as session:
        mark_flag(session, actor=actors["ther.a"], action=action, note=note, **_flag())


def test_read_flags_shows_addressed_status_and_note(engine) -> None:  # type: ignore[no-untyped-def]
    from db.access import SYSTEM
    from db.writes import apply_import, plan_import
    from tests.db.helpers import scores_frame

    actors = build_clinic(engine)
    rows = [("PA1", "ther.a", w, "WAI-SR", s) for w, s in [(4, 47), (5, 46), (6, 47), (7, 33)]]
    with transaction(engine) as session:
        apply_import(session, actor=SYSTEM, plan=plan_import(session, actor=SYSTEM, scores=scores_frame(rows)))
    with session_factory(engine)() as session:
        flags = read_flags(session, actor=actors["ther.a"], patient_code="PA1")
    rupture = flags[flags["kind"].eq("rupture")]
    assert rupture["week"].tolist() == [7]
    computed = rupture["status"].iloc[0]
    with transaction(engine) as session:
        mark_flag(session, actor=actors["ther.a"], action="addressed", note="Acknowledged in feedback",
                  **_flag(week=7))
    with session_factory(engine)() as session:
        flags = read_flags(session, actor=actors["ther.a"], patient_code="PA1")
    row = flags[flags["kind"].eq("rupture")].iloc[0]
    assert (row["status"], row["note"], row["note_by"]) == ("addressed", "Acknowledged in feedback", "ther.a")
    with transaction(engine) as session:
        mark_flag(session, actor=actors["ther.a"], action="reopened", note="", **_flag(week=7))
    with session_factory(engine)() as session:
        flags = read_flags(session, actor=actors["ther.a"], patient_code="PA1")
    assert flags[flags["kind"].eq("rupture")]["status"].iloc[0] == computed


def test_record_flag_action_is_gone() -> None:
    import db.writes

    assert not hasattr(db.writes, "record_flag_action")


def test_a_missed_questionnaire_flag_can_be_addressed(engine) -> None:  # type: ignore[no-untyped-def]
    """Patient-level flags (no instrument) are addressed and overlaid like any other."""
    from db.access import SYSTEM
    from db.writes import apply_import, plan_import
    from tests.db.helpers import scores_frame

    actors = build_clinic(engine)  # PA1 has WAI-SR weeks 1-3
    with transaction(engine) as session:
        apply_import(session, actor=SYSTEM, plan=plan_import(session, actor=SYSTEM, scores=scores_frame(
            [("PA1", "ther.a", 6, "WAI-SR", 44)])))  # weeks 4 and 5 missed
    with session_factory(engine)() as session:
        flags = read_flags(session, actor=actors["ther.a"], patient_code="PA1")
    missed = flags[flags["kind"].eq("missed")]
    assert missed["week"].tolist() == [5] and missed["instrument"].isna().all()
    with transaction(engine) as session:
        mark_flag(session, actor=actors["ther.a"], patient_code="PA1", instrument=None, week=5, kind="missed",
                  action="addressed", note="Phoned the patient; back on track")
    with session_factory(engine)() as session:
        flags = read_flags(session, actor=actors["ther.a"], patient_code="PA1")
    row = flags[flags["kind"].eq("missed")].iloc[0]
    assert (row["status"], row["note"]) == ("addressed", "Phoned the patient; back on track")
    assert pd.isna(row["instrument"])
