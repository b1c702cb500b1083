"""Access control is default-deny: the matrix of who sees which patient, denials included."""

import pytest
from sqlalchemy import Engine, text

from db.access import SYSTEM, Actor
from db.engine import session_factory, transaction
from db.queries import list_patients, patient_info, read_flag_notes, read_scores
from tests.db.helpers import build_clinic

ALL = {"PA1", "PA2", "PB1", "PC1"}
EXPECTED = {
    "ther.a": {"PA1", "PA2"},
    "ther.b": {"PB1"},
    "ther.c": {"PC1"},
    "ther.empty": set(),
    "sup.north": {"PA1", "PA2", "PB1"},
    "sup.south": {"PC1"},
    "sup.noteam": set(),
    "admin": ALL,
}


def test_each_role_sees_exactly_its_patients(engine: Engine) -> None:
    actors = build_clinic(engine)
    with session_factory(engine)() as session:
        for name, expected in EXPECTED.items():
            actor = actors[name]
            assert set(list_patients(session, actor=actor)["patient_id"]) == expected, name
            assert set(read_scores(session, actor=actor)["patient_id"]) == expected, name
            for code in ALL | {"P-DOES-NOT-EXIST"}:
                visible = patient_info(session, actor=actor, code=code) is not None
                assert visible == (code in expected), (name, code)
                scores = read_scores(session, actor=actor, patient_code=code)
                assert scores.empty == (code not in expected), (name, code)


@pytest.mark.parametrize("actor", [
    None,
    Actor(id=999, name="ghost", role="admin", active=False),
    Actor(id=999, name="ghost", role="receptionist"),
    Actor(id=999, name="ghost", role="supervisor", team=None),
])
def test_unknown_inactive_or_roleless_actors_see_nothing(engine: Engine, actor: Actor | None) -> None:
    build_clinic(engine)
    with session_factory(engine)() as session:
        assert list_patients(session, actor=actor).empty
        assert read_scores(session, actor=actor).empty
        assert read_flag_notes(session, actor=actor).empty
        assert patient_info(session, actor=actor, code="PA1") is None


def test_deactivated_therapist_drops_out_of_the_supervisors_view(engine: Engine) -> None:
    actors = build_clinic(engine)
    from db.models import Account

    with transaction(engine) as session:
        session.get(Account, actors["ther.b"].id).active = False
    with session_factory(engine)() as session:
        assert set(list_patients(session, actor=actors["sup.north"])["patient_id"]) == {"PA1", "PA2"}


def test_unknown_and_forbidden_patients_answer_alike(engine: Engine) -> None:
    actors = build_clinic(engine)
    with session_factory(engine)() as session:
        forbidden = patient_info(session, actor=actors["ther.a"], code="PC1")
        missing = patient_info(session, actor=actors["ther.a"], code="PZZ9")
    assert forbidden is None and missing is None


# --------------------------------------------------------------------------- imports check the actor themselves
def test_import_planning_and_writing_refuse_a_therapist_and_a_supervisor(engine) -> None:  # type: ignore[no-untyped-def]
    # issue 14: plan_import read any patient's stored scores without an acting user, and
    # apply_import had no admin check of its own; the page guard was the only fence
    from db.writes import PermissionDenied, apply_import, plan_import
    from tests.db.helpers import scores_frame

    rows = scores_frame([("P1", "t.x", 1, "WAI-SR", 40)])
    with transaction(engine) as session:
        plan = plan_import(session, actor=SYSTEM, scores=rows)
    for role in ("therapist", "supervisor"):
        someone = Actor(id=99, name=f"a.{role}", role=role, team="North")
        with session_factory(engine)() as session:
            with pytest.raises(PermissionDenied):
                plan_import(session, actor=someone, scores=rows)
            with pytest.raises(PermissionDenied):
                apply_import(session, actor=someone, plan=plan)
            session.rollback()
    with session_factory(engine)() as session:
        assert session.scalar(text("SELECT count(*) FROM scores")) == 0  # nothing was written
