"""The login gate, used by app.py *and* by every page itself.

Streamlit can serve a page file before app.py has run in a session, so each page calls
:func:`require` first: without a valid login it shows the login form and stops. A login is
valid while the account is active, its ``session_epoch`` is unchanged (password change or
deactivation logs out everywhere), the idle time is under ``IDLE_TIMEOUT`` and the login is
younger than ``ABSOLUTE_TIMEOUT`` (both configurable by environment variables).

Single sign-on: when ``.streamlit/secrets.toml`` (or ``--secrets.files``) has an ``[auth]``
section for an OpenID Connect provider, the login page also offers "Log in with <provider>"
(Streamlit's ``st.login``). The identity the provider returns is matched to an active account
by e-mail (``db.auth.authenticate_sso``); the role and team still come from the account. The
timeouts apply as to a password login, and ending such a session also ends Streamlit's identity
cookie (``st.logout``), so the same browser cannot slip back in without the provider.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlparse

import streamlit as st
from sqlalchemy import Engine

from core.markdown import text
from db import audit
from db.access import Actor, refresh_actor
from db.auth import LOGIN_FAILED_MESSAGE, SSO_NO_ACCOUNT_MESSAGE, authenticate, authenticate_sso, login_wait
from db.engine import database_url, is_current, make_engine, session_factory, transaction, upgrade
from db.flagstore import ensure_current as ensure_flags
from db.queries import demo_accounts

IDLE_TIMEOUT = dt.timedelta(minutes=float(os.environ.get("ALLIANCE_IDLE_MINUTES", "30")))
ABSOLUTE_TIMEOUT = dt.timedelta(hours=float(os.environ.get("ALLIANCE_SESSION_HOURS", "12")))
DEMO_PASSWORD = "demo-password-2026"
ALL_ROLES = ("therapist", "supervisor", "admin")

#: The clock, replaceable in tests.
clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)  # noqa: E731


@st.cache_resource(show_spinner=False)
def _engine_for(url: str) -> Engine:
    engine = make_engine(url)
    if not is_current(engine):
        upgrade(engine)
    ensure_flags(engine)  # the first start under a new rule set computes every flag once
    return engine


def get_engine() -> Engine:
    """The process-wide engine for ``$ALLIANCE_DB_URL`` (or the SQLite default); the schema is
    created or upgraded on first use."""
    return _engine_for(database_url())


def sso_settings() -> dict[str, Any] | None:
    """The ``[auth]`` secrets section when an OpenID Connect provider is configured, else ``None``."""
    try:
        from streamlit.auth_util import get_secrets_auth_section

        section = get_secrets_auth_section()
    except Exception:  # no or unreadable secrets: no single sign-on
        return None
    if not section or "server_metadata_url" not in section:
        return None
    return dict(section)


def sso_name(settings: dict[str, Any]) -> str:
    """What the login button calls the provider: ``$ALLIANCE_SSO_NAME``, else its host name."""
    return os.environ.get("ALLIANCE_SSO_NAME") or urlparse(str(settings["server_metadata_url"])).hostname or "SSO"


def _sso_claims() -> dict[str, Any] | None:
    """The identity Streamlit's OIDC cookie carries, or ``None`` (not configured / not logged in)."""
    try:
        if not st.user.is_logged_in:
            return None
        return dict(st.user.to_dict())
    except Exception:  # no runtime (bare scripts) or no [auth] section
        return None


def _adopt_sso() -> Actor | None:
    """Log in the account matching the provider's identity, once per session (refusals too)."""
    claims = _sso_claims()
    if claims is None or sso_settings() is None:
        return None
    email = str(claims.get("email") or "")
    if st.session_state.get("sso_refused") == email:
        return None
    with transaction(get_engine()) as session:
        actor = authenticate_sso(session, email=email, email_verified=claims.get("email_verified"),
                                 issuer=str(claims.get("iss") or ""), subject=str(claims.get("sub") or ""),
                                 provider=sso_name(sso_settings() or {}), clock=clock)
    if actor is None:
        st.session_state["sso_refused"] = email
        return None
    now = clock()
    st.session_state.update(actor=actor, login_at=now, last_seen=now, via_sso=True)
    return actor


def _logout(reason: str | None = None) -> bool:
    """Forget the login; returns True when the browser is being sent to end the SSO session too."""
    for key in ("actor", "login_at", "last_seen"):
        st.session_state.pop(key, None)
    if reason:
        st.session_state["logout_reason"] = reason
    if st.session_state.pop("via_sso", False) and _sso_claims() is not None:
        st.logout()  # end the identity cookie too, or the next run would log straight back in
        return True
    return False


def current_actor() -> Actor | None:
    """The logged-in actor, or ``None`` (timeouts and remote logouts applied)."""
    actor: Actor | None = st.session_state.get("actor")
    if actor is None:
        actor = _adopt_sso()
    if actor is None:
        return None
    now = clock()
    if now - st.session_state.get("last_seen", now) > IDLE_TIMEOUT:
        _logout("You were logged out after a period without activity; log in again.")
        return None
    if now - st.session_state.get("login_at", now) > ABSOLUTE_TIMEOUT:
        _logout("Your session reached its maximum length; log in again.")
        return None
    with session_factory(get_engine())() as session:
        fresh = refresh_actor(session, actor)
    if fresh is None:
        _logout("Your account was changed or deactivated; log in again.")
        return None
    st.session_state["last_seen"] = now
    st.session_state["actor"] = fresh
    return fresh


def client_address(peer: str | None, headers: Mapping[str, str]) -> str | None:
    """The address a login attempt is throttled by (``db.auth``), from the connection and headers.

    ``peer`` is the websocket's remote address as Streamlit reports it (``st.context.ip_address``:
    ``None`` for this machine). A remote peer is the client itself and its headers are ignored,
    since a client can send any header. A local peer is the reverse proxy of docs/deploy.md,
    which sets ``X-Real-IP`` to the address it was connected from (else the last hop of
    ``X-Forwarded-For``, the one the proxy added). ``None`` when neither names an address.
    """
    def valid(text: str | None) -> str | None:
        try:
            return str(ipaddress.ip_address((text or "").strip().split("%")[0]))
        except ValueError:
            return None

    if peer:
        return valid(peer)
    lowered = {k.lower(): v for k, v in headers.items()}
    real = valid(lowered.get("x-real-ip"))
    if real:
        return real
    hops = [h for h in (lowered.get("x-forwarded-for") or "").split(",") if h.strip()]
    return valid(hops[-1]) if hops else None


def _request_address() -> str | None:
    """This session's client address (see :func:`client_address`); ``None`` outside a server."""
    try:
        return client_address(st.context.ip_address, dict(st.context.headers))
    except Exception:  # bare scripts and tests without a request
        return None


def login_form() -> None:
    """The login form ("Username", "Password", "Log in"); demo accounts listed in demo mode."""
    st.title("Alliance Monitor")
    st.caption("Weekly alliance and symptom monitoring: each patient against their own average.")
    reason = st.session_state.pop("logout_reason", None)
    if reason:
        st.info(reason)
    settings = sso_settings()
    if settings is not None:
        refused = st.session_state.get("sso_refused")
        if refused is not None:
            st.error(SSO_NO_ACCOUNT_MESSAGE.format(email=refused or "(none given)"))
            if st.button(f"Log out of {sso_name(settings)}"):
                st.session_state.pop("sso_refused", None)
                st.logout()
        elif st.button(f"Log in with {sso_name(settings)}", type="primary"):
            st.login()
        st.caption("Or log in with your Alliance Monitor username and password:")
    with st.form("login"):
        name = st.text_input("Username")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        address = _request_address()
        with transaction(get_engine()) as session:
            actor = authenticate(session, name=name, password=password, address=address, clock=clock)
        if actor is None:
            st.error(LOGIN_FAILED_MESSAGE)
            with session_factory(get_engine())() as session:
                wait = login_wait(session, name=name, address=address, clock=clock)
            if wait > dt.timedelta(0):
                minutes = max(1, -(-int(wait.total_seconds()) // 60))
                st.warning(f"Too many failed attempts for this name or from this computer: the next attempt is "
                           f"checked in {minutes} minute{'s' if minutes != 1 else ''} at the earliest (attempts "
                           f"before then are refused without being checked).")
        else:
            now = clock()
            st.session_state.update(actor=actor, login_at=now, last_seen=now)
            st.rerun()
    with session_factory(get_engine())() as session:
        accounts = demo_accounts(session)
    if accounts is not None:
        st.divider()
        st.markdown(f"**Demo clinic.** All data are synthetic. Every demo account's password is "
                    f"`{DEMO_PASSWORD}`.")
        # st.table renders its cells as Markdown: every cell goes through text()
        shown = accounts.astype(object).where(accounts.notna(), "").map(text)
        st.table(shown.rename(columns={"name": "Username", "role": "Role", "team": "Team",
                                       "display_name": "Name"}).set_index("Username"))


def require(roles: tuple[str, ...] = ALL_ROLES) -> Actor:
    """The page guard: the logged-in actor with one of ``roles``; else the login form, or
    a refusal, and the page stops."""
    actor = current_actor()
    if actor is None:
        login_form()
        st.stop()
    # Drawn here, not in app.py: a freshly started server can serve a page file before app.py
    # has run, and the account line and "Log out" must be there too.
    logout_button(actor)
    if actor.role not in roles:
        st.error("This page is not part of your role. Choose a page from the menu, or ask an admin "
                 "if you need access.")
        st.stop()
    return actor


def logout_button(actor: Actor) -> None:
    """A sidebar line with who is logged in and a "Log out" button."""
    with st.sidebar:
        team = f", team {text(actor.team)}" if actor.team else ""
        st.caption(f"Logged in as **{text(actor.name)}** ({actor.role}{team})")
        if st.button("Log out"):
            with transaction(get_engine()) as session:
                audit.record(session, actor=actor, action="logout")
            if not _logout():
                st.rerun()
