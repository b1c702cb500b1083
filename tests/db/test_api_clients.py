"""API clients of the FHIR endpoint: created with a token shown once and stored hashed, listed,
revoked, authenticated (db.api_clients), and the three commands; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from db import api_clients
from db.access import SYSTEM, Actor
from db.engine import transaction
from db.models import ApiClient, AuditEvent
from db.writes import PermissionDenied
from manage import app

THERAPIST = Actor(id=5, name="therapist.x", role="therapist")


def _actions(engine: Engine) -> list[tuple[str, str]]:
    with transaction(engine) as session:
        return [(a, n) for a, n in session.execute(select(AuditEvent.action, AuditEvent.actor)
                                                   .order_by(AuditEvent.id)).all()]


def test_create_stores_only_the_hash_and_the_token_authenticates(engine: Engine) -> None:
    with transaction(engine) as session:
        client, token = api_clients.create_client(session, actor=SYSTEM, name="platform")
    assert token.startswith(api_clients.TOKEN_PREFIX) and len(token) > 40
    with transaction(engine) as session:
        row = session.scalar(select(ApiClient).where(ApiClient.name == "platform"))
        assert row is not None and row.token_hash == api_clients.token_hash(token) and token not in row.token_hash
        assert row.can_replace is False and row.created_by == "system" and row.last_used_at is None
        found = api_clients.authenticate(session, token=token)
    assert found == client and found.can_replace is False
    with transaction(engine) as session:
        assert session.scalar(select(ApiClient.last_used_at)) is not None
    assert ("create_api_client", "system") in _actions(engine)
    assert api_clients.client_actor(client).name == "api:platform"


@pytest.mark.parametrize("token", [None, "", "amc_wrong", "x" * 500, "amc_\x00"])
def test_missing_or_unknown_tokens_are_refused_and_audited(engine: Engine, token: str | None) -> None:
    with transaction(engine) as session:
        api_clients.create_client(session, actor=SYSTEM, name="platform")
    with transaction(engine) as session:
        assert api_clients.authenticate(session, token=token, address="10.0.0.1") is None
    assert _actions(engine)[-1] == ("api_auth_failed", "api")


def test_revoked_token_is_refused_and_the_row_kept(engine: Engine) -> None:
    with transaction(engine) as session:
        _, token = api_clients.create_client(session, actor=SYSTEM, name="platform", can_replace=True)
    with transaction(engine) as session:
        api_clients.revoke_client(session, actor=SYSTEM, name="platform")
    with transaction(engine) as session:
        assert api_clients.authenticate(session, token=token) is None
        listed = api_clients.list_clients(session, actor=SYSTEM)
    assert listed["name"].tolist() == ["platform"] and bool(listed["can_replace"].iloc[0])
    assert listed["revoked_at"].notna().all()
    assert _actions(engine)[-2:] == [("revoke_api_client", "system"), ("api_auth_failed", "api:platform")]
    with transaction(engine) as session, pytest.raises(ValueError, match="already revoked"):
        api_clients.revoke_client(session, actor=SYSTEM, name="platform")
    with transaction(engine) as session, pytest.raises(ValueError, match="no API client named other"):
        api_clients.revoke_client(session, actor=SYSTEM, name="other")


@pytest.mark.parametrize("name", ["", "has space", "a:b", "x" * 49, "-lead"])
def test_bad_or_taken_names_are_refused(engine: Engine, name: str) -> None:
    with transaction(engine) as session, pytest.raises(ValueError, match="client name is 1-48"):
        api_clients.create_client(session, actor=SYSTEM, name=name)
    with transaction(engine) as session:
        api_clients.create_client(session, actor=SYSTEM, name="platform")
    with transaction(engine) as session, pytest.raises(ValueError, match="already an API client named platform"):
        api_clients.create_client(session, actor=SYSTEM, name="platform")


def test_only_admins_manage_clients(engine: Engine) -> None:
    with transaction(engine) as session:
        for call in (lambda: api_clients.create_client(session, actor=THERAPIST, name="p"),
                     lambda: api_clients.list_clients(session, actor=THERAPIST),
                     lambda: api_clients.revoke_client(session, actor=THERAPIST, name="p")):
            with pytest.raises(PermissionDenied):
                call()


def test_the_commands(db_url: str, engine: Engine) -> None:
    runner = CliRunner()
    created = runner.invoke(app, ["create-api-client", "platform", "--can-replace", "--db", db_url])
    assert created.exit_code == 0, created.output
    token = created.stdout.strip().splitlines()[-1]
    assert token.startswith("amc_") and " " not in token
    with transaction(engine) as session:
        assert api_clients.authenticate(session, token=token).can_replace  # type: ignore[union-attr]
    again = runner.invoke(app, ["create-api-client", "platform", "--db", db_url])
    assert again.exit_code == 2 and "choose another name" in again.output
    listed = runner.invoke(app, ["api-clients", "--db", db_url])
    assert listed.exit_code == 0
    lines = listed.stdout.strip().splitlines()
    assert lines[0] == "name,can_replace,created_at,created_by,last_used_at,revoked_at"
    assert lines[1].startswith("platform,True,") and lines[1].endswith(",")  # used, not revoked
    assert token not in listed.stdout
    revoked = runner.invoke(app, ["revoke-api-client", "platform", "--db", db_url])
    assert revoked.exit_code == 0 and "Revoked" in revoked.stdout
    assert runner.invoke(app, ["revoke-api-client", "platform", "--db", db_url]).exit_code == 2
    assert runner.invoke(app, ["api-clients", "--db", db_url]).stdout.strip().splitlines()[1].endswith("Z")
    with transaction(engine) as session:
        assert api_clients.authenticate(session, token=token) is None
