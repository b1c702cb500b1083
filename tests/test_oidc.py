"""Single sign-on: the e-mail match and the identity binding on both database backends. The
whole OpenID Connect flow in a real browser against a local provider is in
tests/e2e/test_oidc_browser.py."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, text

from db import accounts, audit
from db.access import SYSTEM
from db.auth import authenticate_sso
from db.engine import session_factory, transaction
from tests.db.helpers import build_clinic


def _set_email(engine: Engine, name: str, email: str) -> None:
    with transaction(engine) as session:
        accounts.set_email(session, actor=SYSTEM, name=name, email=email)


ISS = "https://id.clinic.example"


def _sso(session, email: str, *, sub: str = "sub-1", verified: object = True, iss: str = ISS):  # type: ignore[no-untyped-def]
    return authenticate_sso(session, email=email, email_verified=verified, issuer=iss, subject=sub, provider="test")


def _last(engine: Engine) -> tuple[str, str, dict]:
    with session_factory(engine)() as session:
        last = audit.read_events(session).iloc[-1]
    return last["actor"], last["action"], json.loads(last["detail"])


def _linked(engine: Engine, name: str) -> bool:
    with session_factory(engine)() as session:
        table = accounts.account_table(session, actor=SYSTEM).set_index("name")
    return bool(table.loc[name, "sso_linked"])


def test_sso_matches_an_active_account_by_verified_email_binds_it_and_keeps_its_role(engine: Engine) -> None:
    build_clinic(engine)
    _set_email(engine, "sup.north", "Sara.North@clinic.example")
    with transaction(engine) as session:
        actor = _sso(session, "  SARA.north@Clinic.Example ")
    assert actor is not None and (actor.name, actor.role, actor.team) == ("sup.north", "supervisor", "North")
    assert _last(engine) == ("sup.north", "login", {"method": "sso", "provider": "test"})
    with session_factory(engine)() as session:
        events = audit.read_events(session)
        bound = session.scalar(text("SELECT sso_issuer || ' ' || sso_subject FROM accounts WHERE name = 'sup.north'"))
    assert events.iloc[-2]["action"] == "sso_bound" and bound == f"{ISS} sub-1"


@pytest.mark.parametrize(("email", "verified", "iss", "sub", "reason"), [
    ("nobody@clinic.example", True, ISS, "s", "no active account with this e-mail"),
    ("sara.north@clinic.example", False, ISS, "s", "the provider has not verified this e-mail"),
    ("sara.north@clinic.example", None, ISS, "s", "the provider has not verified this e-mail"),  # claim missing
    ("sara.north@clinic.example", "yes", ISS, "s", "the provider has not verified this e-mail"),
    ("", True, ISS, "s", "no active account with this e-mail"),
    ("north@clinic.example", True, ISS, "s", "no active account with this e-mail"),  # part of an address
    ("sara.north@clinic.example", True, "", "s", "the provider gave no issuer or subject"),
    ("sara.north@clinic.example", True, ISS, " ", "the provider gave no issuer or subject"),
])
def test_sso_refuses_unknown_unverified_partial_and_anonymous_identities(  # type: ignore[no-untyped-def]
        engine: Engine, email: str, verified, iss: str, sub: str, reason: str) -> None:
    build_clinic(engine)
    _set_email(engine, "sup.north", "sara.north@clinic.example")
    with transaction(engine) as session:
        assert _sso(session, email, verified=verified, iss=iss, sub=sub) is None
    _, action, detail = _last(engine)
    assert action == "login_failed" and detail["reason"] == reason


def test_a_bound_account_answers_to_its_identity_only(engine: Engine) -> None:
    # issue 14: SSO matched by e-mail alone, so whoever got the address at the provider got in
    build_clinic(engine)
    _set_email(engine, "sup.north", "sara.north@clinic.example")
    with transaction(engine) as session:
        assert _sso(session, "sara.north@clinic.example", sub="sara") is not None
    with transaction(engine) as session:  # another identity with the same (verified) address
        assert _sso(session, "sara.north@clinic.example", sub="mallory") is None
    assert _last(engine)[2]["reason"] == "the account with this e-mail is bound to another single sign-on identity"
    with transaction(engine) as session:  # the same identity after a change of address at the provider
        actor = _sso(session, "sara@new-provider.example", sub="sara")
    assert actor is not None and actor.name == "sup.north"
    with transaction(engine) as session:  # the same subject from another issuer is another identity
        assert _sso(session, "sara.north@clinic.example", sub="sara", iss="https://other.example") is None


def test_a_new_email_address_unbinds_the_account(engine: Engine) -> None:
    build_clinic(engine)
    _set_email(engine, "sup.north", "sara.north@clinic.example")
    with transaction(engine) as session:
        assert _sso(session, "sara.north@clinic.example", sub="sara") is not None
    assert _linked(engine, "sup.north") is True
    _set_email(engine, "sup.north", "sara.n@clinic.example")
    assert _last(engine)[2].get("sso_unbound") is True
    assert _linked(engine, "sup.north") is False  # what the admin's account table shows
    with transaction(engine) as session:
        actor = _sso(session, "sara.n@clinic.example", sub="sara-new")
    assert actor is not None and actor.name == "sup.north"


def test_sso_refuses_a_deactivated_account_bound_or_not(engine: Engine) -> None:
    actors = build_clinic(engine)
    _set_email(engine, "sup.south", "south@clinic.example")
    _set_email(engine, "sup.north", "north@clinic.example")
    with transaction(engine) as session:
        assert _sso(session, "north@clinic.example", sub="north") is not None
    with transaction(engine) as session:
        accounts.deactivate_account(session, actor=actors["admin"], name="sup.south")
        accounts.deactivate_account(session, actor=actors["admin"], name="sup.north")
    with transaction(engine) as session:
        assert _sso(session, "south@clinic.example", sub="south") is None
    with transaction(engine) as session:
        assert _sso(session, "north@clinic.example", sub="north") is None
    assert _last(engine)[2]["reason"] == "the account bound to this identity is deactivated"
