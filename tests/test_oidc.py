"""Single sign-on: the e-mail match on both database backends. The whole OpenID Connect flow in a
real browser against a local provider is in tests/e2e/test_oidc_browser.py."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine

from db import accounts, audit
from db.access import SYSTEM
from db.auth import authenticate_sso
from db.engine import session_factory, transaction
from tests.db.helpers import build_clinic


def _set_email(engine: Engine, name: str, email: str) -> None:
    with transaction(engine) as session:
        accounts.set_email(session, actor=SYSTEM, name=name, email=email)


def test_sso_matches_an_active_account_by_email_and_keeps_its_role(engine: Engine) -> None:
    build_clinic(engine)
    _set_email(engine, "sup.north", "Sara.North@clinic.example")
    with transaction(engine) as session:
        actor = authenticate_sso(session, email="  SARA.north@Clinic.Example ", provider="test")
    assert actor is not None and (actor.name, actor.role, actor.team) == ("sup.north", "supervisor", "North")
    with session_factory(engine)() as session:
        last = audit.read_events(session).iloc[-1]
    assert (last["actor"], last["action"]) == ("sup.north", "login")
    assert json.loads(last["detail"]) == {"method": "sso", "provider": "test"}


@pytest.mark.parametrize(("email", "verified"), [
    ("nobody@clinic.example", None),      # no account has it
    ("sara.north@clinic.example", False),  # the provider did not verify it
    ("", None),                            # no e-mail claim at all
    ("north@clinic.example", None),        # a part of an address is no match
])
def test_sso_refuses_unknown_unverified_and_partial_addresses(engine: Engine, email: str, verified) -> None:  # type: ignore[no-untyped-def]
    build_clinic(engine)
    _set_email(engine, "sup.north", "sara.north@clinic.example")
    with transaction(engine) as session:
        assert authenticate_sso(session, email=email, email_verified=verified) is None
    with session_factory(engine)() as session:
        last = audit.read_events(session).iloc[-1]
    assert last["action"] == "login_failed"
    assert json.loads(last["detail"])["reason"] == "no active account with this e-mail"


def test_sso_refuses_a_deactivated_account(engine: Engine) -> None:
    actors = build_clinic(engine)
    _set_email(engine, "sup.south", "south@clinic.example")
    with transaction(engine) as session:
        accounts.deactivate_account(session, actor=actors["admin"], name="sup.south")
    with transaction(engine) as session:
        assert authenticate_sso(session, email="south@clinic.example") is None
