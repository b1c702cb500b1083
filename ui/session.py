"""The login gate, used by app.py *and* by every page itself.

Streamlit can serve a page file before app.py has run in a session, so each page calls
:func:`require` first: without a valid login it shows the login form and stops. A login is
valid while the account is active, its ``session_epoch`` is unchanged (password change or
deactivation logs out everywhere), the idle time is under ``IDLE_TIMEOUT`` and the login is
younger than ``ABSOLUTE_TIMEOUT`` (both configurable by environment variables).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable

import streamlit as st
from sqlalchemy import Engine

from db import audit
from db.access import Actor, refresh_actor
from db.auth import LOGIN_FAILED_MESSAGE, authenticate
from db.engine import is_current, make_engine, session_factory, transaction, upgrade
from db.queries import demo_accounts

IDLE_TIMEOUT = dt.timedelta(minutes=float(os.environ.get("ALLIANCE_IDLE_MINUTES", "30")))
ABSOLUTE_TIMEOUT = dt.timedelta(hours=float(os.environ.get("ALLIANCE_SESSION_HOURS", "12")))
DEMO_PASSWORD = "demo-password-2026"
ALL_ROLES = ("therapist", "supervisor", "admin")

#: The clock, replaceable in tests.
clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)  # noqa: E731


@st.cache_resource(show_spinner=False)
def get_engine() -> Engine:
    """The process-wide engine; the schema is created or upgraded on first use."""
    engine = make_engine()
    if not is_current(engine):
        upgrade(engine)
    return engine


def _logout(reason: str | None = None) -> None:
    for key in ("actor", "login_at", "last_seen"):
        st.session_state.pop(key, None)
    if reason:
        st.session_state["logout_reason"] = reason


def current_actor() -> Actor | None:
    """The logged-in actor, or ``None`` (timeouts and remote logouts applied)."""
    actor: Actor | None = st.session_state.get("actor")
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


def login_form() -> None:
    """The login form ("Username", "Password", "Log in"); demo accounts listed in demo mode."""
    st.title("Alliance Monitor")
    st.caption("Weekly alliance and symptom monitoring: each patient against their own average.")
    reason = st.session_state.pop("logout_reason", None)
    if reason:
        st.info(reason)
    with st.form("login"):
        name = st.text_input("Username")
        password = st.text_input("Password", type="password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        with transaction(get_engine()) as session:
            actor = authenticate(session, name=name, password=password, clock=clock)
        if actor is None:
            st.error(LOGIN_FAILED_MESSAGE)
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
        st.table(accounts.rename(columns={"name": "Username", "role": "Role", "team": "Team",
                                          "display_name": "Name"}).set_index("Username"))


def require(roles: tuple[str, ...] = ALL_ROLES) -> Actor:
    """The page guard: the logged-in actor with one of ``roles``; else the login form, or
    a refusal, and the page stops."""
    actor = current_actor()
    if actor is None:
        login_form()
        st.stop()
    if actor.role not in roles:
        st.error("This page is not part of your role. Choose a page from the menu, or ask an admin "
                 "if you need access.")
        st.stop()
    return actor


def logout_button(actor: Actor) -> None:
    """A sidebar line with who is logged in and a "Log out" button."""
    with st.sidebar:
        st.caption(f"Logged in as **{actor.name}** ({actor.role}{', team ' + actor.team if actor.team else ''})")
        if st.button("Log out"):
            with transaction(get_engine()) as session:
                audit.record(session, actor=actor, action="logout")
            _logout()
            st.rerun()
