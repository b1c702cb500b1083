"""Access control is default-deny: the matrix of who sees which patient, denials included."""

import pytest
from sqlalchemy import Engine

from db.access import Actor
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
