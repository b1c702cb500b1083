"""Weekly entry: validation, access, the optimistic version check and the audit trail."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, select

from db import audit
from db.engine import session_factory, transaction
from db.entry import NO_SUCH_PATIENT, NoSuchPatient, StaleEntry, read_entry, save_entry
from db.models import AuditEvent, Score
from tests.db.helpers import build_clinic

GAD = [1, 2, 0, 3, 1, 1, 2]


def test_new_entry_from_items_then_edit_with_reason(engine: Engine) -> None:
    actors = build_clinic(engine)
    anna = actors["ther.a"]
    with transaction(engine) as s:
        assert save_entry(s, actor=anna, code="PA1", instrument="GAD-7", week=1, items=GAD) == ("new", 1)
    with session_factory(engine)() as s:
        stored = read_entry(s, actor=anna, code="PA1", instrument="GAD-7", week=1)
    assert stored is not None and stored.total == 10 and stored.items == GAD and stored.version == 1
    assert stored.source == "entry" and stored.entered_by == "ther.a"
    with transaction(engine) as s, pytest.raises(ValueError, match="needs a reason"):
        save_entry(s, actor=anna, code="PA1", instrument="GAD-7", week=1, items=[0] * 7, read_version=1)
    with transaction(engine) as s:
        assert save_entry(s, actor=anna, code="PA1", instrument="GAD-7", week=1, items=GAD,
                          read_version=1) == ("unchanged", 1)
        assert save_entry(s, actor=anna, code="PA1", instrument="GAD-7", week=1, items=[0] * 7, read_version=1,
                          reason="typing error on the paper form") == ("changed", 2)
    with session_factory(engine)() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "change_score")).one()
        assert audit.verify_chain(s)[0]
    detail = json.loads(event.detail)
    assert event.patient_code == "PA1" and event.actor == "ther.a"
    assert (detail["old"], detail["new"], detail["old_items"], detail["reason"]) == (
        10.0, 0.0, GAD, "typing error on the paper form")


def test_total_only_and_validation_errors_name_the_field(engine: Engine) -> None:
    anna = build_clinic(engine)["ther.a"]
    with transaction(engine) as s:
        assert save_entry(s, actor=anna, code="PA1", instrument="SPIN", week=4, total=30)[0] == "new"
    cases = [
        ({"instrument": "SPIN", "week": 5, "total": 69}, "Score is outside SPIN's range"),
        ({"instrument": "GAD-7", "week": 5, "items": [1, 2, 3, 4, 0, 0, 0]}, "Item 4 is outside"),
        ({"instrument": "GAD-7", "week": 5, "items": [1, 1, 1, None, 1, 1, 1]}, "needs all 7 item responses"),
        ({"instrument": "GAD-7", "week": 5, "items": [1] * 7, "total": 8}, "does not equal the sum"),
        ({"instrument": "GAD-7", "week": 0, "total": 3}, "Week must be a whole number"),
        ({"instrument": "GAD-7", "week": 5, "items": [1] * 6}, "has 7 items"),
        ({"instrument": "GAD-7", "week": 5}, "is empty and the items are not all given"),
    ]
    for kwargs, message in cases:
        with transaction(engine) as s, pytest.raises(ValueError, match=message):
            save_entry(s, actor=anna, code="PA1", **kwargs)  # type: ignore[arg-type]


def test_lost_race_gets_a_clear_message_and_nothing_is_overwritten(engine: Engine) -> None:
    actors = build_clinic(engine)
    anna, sup = actors["ther.a"], actors["sup.north"]
    with session_factory(engine)() as s:  # both open the week: version 1 of the imported score (41)
        seen_by_anna = read_entry(s, actor=anna, code="PA1", instrument="WAI-SR", week=1)
        seen_by_sup = read_entry(s, actor=sup, code="PA1", instrument="WAI-SR", week=1)
    assert seen_by_anna is not None and seen_by_sup is not None and seen_by_anna.version == 1
    with transaction(engine) as s:
        save_entry(s, actor=sup, code="PA1", instrument="WAI-SR", week=1, total=45,
                   read_version=seen_by_sup.version, reason="corrected from paper")
    with transaction(engine) as s, pytest.raises(StaleEntry, match="sup.north after you opened it"):
        save_entry(s, actor=anna, code="PA1", instrument="WAI-SR", week=1, total=50,
                   read_version=seen_by_anna.version, reason="my correction")
    with transaction(engine) as s, pytest.raises(StaleEntry, match="already has a WAI-SR"):
        save_entry(s, actor=anna, code="PA1", instrument="WAI-SR", week=1, total=50)
    with session_factory(engine)() as s:
        score = s.scalars(select(Score).where(Score.instrument == "WAI-SR", Score.week == 1,
                                              Score.total == 45)).one()
        assert score.version == 2


def test_forbidden_and_unknown_patients_are_answered_alike(engine: Engine) -> None:
    actors = build_clinic(engine)
    for actor, code in [(actors["ther.a"], "PC1"), (actors["ther.a"], "NOPE"), (actors["sup.south"], "PA1"),
                        (actors["ther.empty"], "PA1")]:
        with transaction(engine) as s, pytest.raises(NoSuchPatient) as info:
            save_entry(s, actor=actor, code=code, instrument="SPIN", week=9, total=10)
        assert str(info.value) == NO_SUCH_PATIENT
        with session_factory(engine)() as s, pytest.raises(NoSuchPatient):
            read_entry(s, actor=actor, code=code, instrument="SPIN", week=9)
    with transaction(engine) as s:  # a supervisor may enter for the team
        assert save_entry(s, actor=actors["sup.north"], code="PB1", instrument="SPIN", week=9, total=10)[0] == "new"
