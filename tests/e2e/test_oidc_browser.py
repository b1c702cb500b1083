"""Single sign-on for real: a local OpenID Connect provider (``oidc-provider-mock``) on a
loopback port, a new Streamlit server configured for it, and Chromium going through the whole
flow. The test writes a secrets file with an ``[auth]`` section into a temporary folder and the
server reads it (``STREAMLIT_SECRETS_FILES``); the project's own ``.streamlit`` folder is not
touched. The e-mail matching itself: tests/test_oidc.py."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from db import accounts
from db.access import SYSTEM
from db.engine import make_engine, transaction

pytestmark = pytest.mark.browser
PROVIDER_NAME = "Clinic Identity"


@pytest.fixture
def oidc_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(app base URL, provider base URL): a local OIDC provider and a new Streamlit server
    configured for it, over a fresh demo clinic where therapist.anna has an e-mail address."""
    oidc_provider_mock = pytest.importorskip(
        "oidc_provider_mock", reason="pip install --require-hashes -r requirements-dev.lock (oidc-provider-mock)")
    from typer.testing import CliRunner

    from manage import app
    from tests.e2e.conftest import free_port, start_server

    url = f"sqlite:///{tmp_path / 'sso.db'}"
    result = CliRunner().invoke(app, ["seed-demo", "--db", url])
    assert result.exit_code == 0, result.output
    engine = make_engine(url)
    with transaction(engine) as session:
        accounts.set_email(session, actor=SYSTEM, name="therapist.anna", email="anna@clinic.example")
    engine.dispose()
    with oidc_provider_mock.run_server_in_thread(port=free_port()) as provider:
        issuer = f"http://localhost:{provider.server_port}"
        # the provider vouches for Anna's address (email_verified), not for the impostor's
        _provider_user(issuer, "Anna@Clinic.example", {"email": "Anna@Clinic.example", "email_verified": True})
        _provider_user(issuer, "impostor", {"email": "anna@clinic.example"})  # no email_verified claim
        secrets_file = tmp_path / "secrets.toml"
        secrets_file.write_text(
            "[auth]\n"
            'redirect_uri = "http://127.0.0.1:{port}/oauth2callback"\n'  # Streamlit fills in its port

            f'cookie_secret = "{secrets.token_hex(32)}"\n'
            'client_id = "alliance-monitor"\n'
            'client_secret = "test-secret"\n'
            f'server_metadata_url = "{issuer}/.well-known/openid-configuration"\n', encoding="utf-8")
        proc, base = start_server(url, tmp_path / "streamlit.log", env_extra={
            "STREAMLIT_SECRETS_FILES": str(secrets_file), "ALLIANCE_SSO_NAME": PROVIDER_NAME})
        try:
            yield base, issuer
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def _provider_user(issuer: str, sub: str, claims: dict) -> None:
    """Register a user and its claims at the mock provider (its PUT /users/SUB)."""
    import json
    import urllib.request

    request = urllib.request.Request(f"{issuer}/users/{sub}", data=json.dumps(claims).encode(), method="PUT",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 204


def _sso_login(page, base: str, email: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(base)
    page.get_by_role("button", name=f"Log in with {PROVIDER_NAME}").click()
    page.locator("input[name='sub']").fill(email)  # the provider's own login form
    page.get_by_role("button", name="Authorize").click()


def test_oidc_login_end_to_end(oidc_server: tuple[str, str], page) -> None:  # type: ignore[no-untyped-def]
    base, _issuer = oidc_server
    _sso_login(page, base, "Anna@Clinic.example")
    page.get_by_role("heading", name="My patients").wait_for()
    assert page.get_by_text(re.compile(r"Logged in as\s+therapist\.anna")).count() == 1
    page.get_by_role("button", name="Log out").click()  # ends the app session and the identity cookie,
    page.get_by_role("button", name="End session").click()  # then the provider's session (RP-initiated logout)
    page.get_by_role("button", name=f"Log in with {PROVIDER_NAME}").wait_for()
    page.goto(base)  # a new visit does not slip back in
    page.get_by_role("button", name=f"Log in with {PROVIDER_NAME}").wait_for()
    page.wait_for_timeout(1000)
    assert page.get_by_role("heading", name="My patients").count() == 0


def test_oidc_identity_without_an_account_is_refused(oidc_server: tuple[str, str], page) -> None:  # type: ignore[no-untyped-def]
    base, _issuer = oidc_server
    _sso_login(page, base, "stranger@elsewhere.example")
    page.get_by_text("no active Alliance Monitor account has the e-mail address").wait_for()
    assert page.get_by_role("heading", name="My patients").count() == 0
    assert re.findall(r"P\d{5}", page.content()) == []


def test_oidc_identity_with_an_unverified_email_is_refused(oidc_server: tuple[str, str], page) -> None:  # type: ignore[no-untyped-def]
    # issue 14: a missing or false email_verified let an address the provider never checked in
    base, _issuer = oidc_server
    _sso_login(page, base, "impostor")  # its claims: anna@clinic.example, and no email_verified
    page.get_by_text("no active Alliance Monitor account has the e-mail address").wait_for()
    assert page.get_by_role("heading", name="My patients").count() == 0
    assert re.findall(r"P\d{5}", page.content()) == []
