"""The login gate, used by app.py *and* by every page itself.

A login is a server-side session (``db.sessions``): the browser holds only a random token in
an HttpOnly cookie (``alliance_session``), set by the form post to ``/session/login`` or by the
single sign-on hand-over at ``/session/sso`` (``ui.web``). On **every script run**,
:func:`current_actor` reads that cookie from the request (``st.context.cookies``: the cookies
of the browser's own connection) and asks the database who it stands for. Nothing in
``st.session_state`` is a credential: a second browser that reconnects with this tab's
Streamlit session id (which appears in upload URLs, so in proxy logs) brings its own cookies
and gets the login form.

Streamlit can serve a page file before app.py has run in a session, so each page calls
:func:`require` first: without a live login it shows the login form and stops. A login lasts
across reloads, new tabs and deep links until logout, the idle timeout (``IDLE_TIMEOUT``,
``ALLIANCE_IDLE_MINUTES``), the absolute lifetime (``ABSOLUTE_TIMEOUT``,
``ALLIANCE_SESSION_HOURS``), or a password reset, deactivation or role change (which end every
session of the account, ``db.accounts``). A refused cookie (tampered, expired, revoked) is
audited once per browser session (``session_refused``).

Downloads and fragments run later than the page that drew them: :func:`guard_download` and
:func:`live_fragment` re-check the live session (and, for downloads, the right to each patient)
at the moment they run.

Two-step login (``db.mfa``) happens before any session exists (``ui.web``); the sidebar's
"Two-step login" (:func:`my_two_step_login`) lets a user enrol, make new recovery codes and turn
it off where their role allows.

Single sign-on: when ``.streamlit/secrets.toml`` has an ``[auth]`` section for an OpenID Connect
provider, the login form also offers "Log in with <provider>"; the identity is matched to an
account (``db.auth.authenticate_sso``) and gets a session of the same store (``ui.web``).
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlencode, urlparse

import streamlit as st
from sqlalchemy import Engine
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from core.markdown import text
from db.access import Actor, may_see_patient
from db.engine import database_url, is_current, make_engine, session_factory, transaction, upgrade
from db.flagstore import ensure_current as ensure_flags
from db.queries import demo_accounts
from db.sessions import (
    COOKIE_NAME,
    absolute_lifetime,
    audit_refusal,
    describe_browser,
    idle_timeout,
    list_sessions,
    resume_by_id,
    resume_session,
    revoke_account_sessions,
    revoke_session,
    token_id,
)
from ui.login_html import login_form_html, logout_form_html

IDLE_TIMEOUT = idle_timeout()
ABSOLUTE_TIMEOUT = absolute_lifetime()
DEMO_PASSWORD = "demo-password-2026"
ALL_ROLES = ("therapist", "supervisor", "admin")

#: The clock, replaceable in tests.
clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)  # noqa: E731

#: Why a cookie was refused, as the login form says it.
REFUSAL_MESSAGES = {
    "idle": "You were logged out after a period without activity; log in again.",
    "expired": "Your session reached its maximum length; log in again.",
    "revoked": "Your login was ended (you logged out, or ended this session elsewhere); log in again.",
    "account": "Your account was changed or deactivated; log in again, or ask an admin if you cannot.",
    "unknown": "Your login could not be recognised (it may have been tampered with); log in again.",
}
DOWNLOAD_REFUSED = ("This download is no longer available: your login has ended or no longer allows it. "
                    "Log in again and download it anew.")


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


def sso_link() -> tuple[str, str] | None:
    """The "Log in with <provider>" link (label, URL of Streamlit's /auth/login), or ``None``."""
    settings = sso_settings()
    if settings is None:
        return None
    try:
        from streamlit.user_info import generate_login_redirect_url

        return f"Log in with {sso_name(settings)}", generate_login_redirect_url("default")
    except Exception:  # misconfigured [auth] section: password logins only
        return None


# --- which Streamlit session belongs to which login ------------------------------------------------

_BINDINGS: OrderedDict[str, str] = OrderedDict()
_BINDINGS_LOCK = threading.Lock()
_BINDINGS_MAX = 20_000


def bind(streamlit_session: str, login_session: str) -> None:
    """Remember that a Streamlit session (a tab's connection) runs under a login session; the
    server (``ui.web``) lets its uploads, downloads and media through only for that login."""
    with _BINDINGS_LOCK:
        _BINDINGS[streamlit_session] = login_session
        _BINDINGS.move_to_end(streamlit_session)
        while len(_BINDINGS) > _BINDINGS_MAX:
            _BINDINGS.popitem(last=False)


def unbind(streamlit_session: str) -> None:
    with _BINDINGS_LOCK:
        _BINDINGS.pop(streamlit_session, None)


def binding(streamlit_session: str | None) -> str | None:
    """The login session a Streamlit session last ran under (``None``: none, or logged out)."""
    if not streamlit_session:
        return None
    with _BINDINGS_LOCK:
        return _BINDINGS.get(streamlit_session)


def _streamlit_session_id() -> str | None:
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else None


def request_token() -> str | None:
    """The session token of the browser's request (its ``alliance_session`` cookie), or ``None``."""
    try:
        return st.context.cookies.get(COOKIE_NAME)
    except Exception:  # bare scripts without a request
        return None


def current_actor() -> Actor | None:
    """The logged-in actor, re-derived from the request's cookie and the server-side session on
    every call (timeouts, revocations and account changes applied), or ``None``."""
    token = request_token()
    with transaction(get_engine()) as session:
        resumed = resume_session(session, token=token, clock=clock, idle=IDLE_TIMEOUT)
        if resumed.reason is not None:
            key = resumed.session_id or f"unknown:{token_id(token or '')}"
            seen: set[str] = st.session_state.setdefault("refused_sessions", set())
            if key not in seen:
                audit_refusal(session, resumed=resumed, address=_request_address(), where="app")
                seen.add(key)
                st.session_state["logout_reason"] = REFUSAL_MESSAGES[resumed.reason]
    streamlit_session = _streamlit_session_id()
    if resumed.actor is None or resumed.session_id is None:
        if streamlit_session:
            unbind(streamlit_session)
        st.session_state.pop("login_session_id", None)
        return None
    if streamlit_session:
        bind(streamlit_session, resumed.session_id)
    st.session_state["login_session_id"] = resumed.session_id
    return resumed.actor


def live_actor(actor: Actor, login_session: str | None, *, where: str) -> Actor | None:
    """``actor`` as the database has it now, if ``login_session`` is still live and theirs; else
    ``None`` (and the refusal is audited). For work that runs after its page: downloads."""
    if not login_session:
        return None
    with transaction(get_engine()) as session:
        resumed = resume_by_id(session, session_id=login_session, clock=clock, idle=IDLE_TIMEOUT, touch=False)
        if resumed.actor is None:
            audit_refusal(session, resumed=resumed, where=where)
            return None
    return resumed.actor if resumed.actor.id == actor.id else None


def guard_download(actor: Actor, build: Callable[[Actor], bytes], *,
                   patients: Iterable[str] = ()) -> Callable[[], bytes]:
    """A ``st.download_button(data=...)`` callable that re-checks, when the user clicks, that the
    login that drew the button is still live and that its account may still see each of
    ``patients``; only then calls ``build`` with the actor as the database has it now. Otherwise
    it raises ``PermissionError`` and produces nothing (Streamlit says the file could not be made)."""
    login_session = st.session_state.get("login_session_id")
    codes = list(dict.fromkeys(patients))

    def run() -> bytes:
        fresh = live_actor(actor, login_session, where="download")
        if fresh is None:
            raise PermissionError(DOWNLOAD_REFUSED)
        with session_factory(get_engine())() as session:
            if any(may_see_patient(session, actor=fresh, code=code) is None for code in codes):
                raise PermissionError(DOWNLOAD_REFUSED)
        return build(fresh)

    return run


F = TypeVar("F", bound=Callable[..., Any])


def live_fragment(func: F) -> F:
    """``st.fragment`` that re-checks the login whenever the fragment reruns on its own.

    A fragment's rerun runs only the fragment, not app.py or the page's guard; without this, a
    fragment kept showing the patient after an idle timeout or a remote logout. When the login
    has ended (or another login took over the browser), the whole page reruns instead, which
    shows the login form.
    """
    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        ctx = get_script_run_ctx()
        if ctx is not None and ctx.fragment_ids_this_run:  # a fragment-only rerun
            before = st.session_state.get("login_session_id")
            if current_actor() is None or st.session_state.get("login_session_id") != before:
                st.rerun(scope="app")
        return func(*args, **kwargs)

    return st.fragment(checked)  # type: ignore[return-value]


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


def _current_path() -> str:
    """This page's path and query (where the login form sends the browser back to)."""
    try:
        path = urlparse(st.context.url or "").path or "/"
    except Exception:
        path = "/"
    query = {k: v for k, v in st.query_params.to_dict().items()}
    return path + (f"?{urlencode(query)}" if query else "")


def demo_table(session: Any) -> tuple[str, list[list[str]]] | None:
    """The demo accounts for the login form (password, rows), or ``None`` outside the demo clinic."""
    accounts = demo_accounts(session)
    if accounts is None:
        return None
    rows = accounts.astype(object).where(accounts.notna(), "")[["name", "role", "team", "display_name"]]
    return DEMO_PASSWORD, rows.astype(str).values.tolist()


def login_form() -> None:
    """The login form ("Username", "Password", "Log in"), as a plain HTML form that posts to
    ``/session/login`` (``ui.login_html``); demo accounts listed in demo mode."""
    st.title("Alliance Monitor")
    st.caption("Weekly alliance and symptom monitoring: each patient against their own average.")
    with session_factory(get_engine())() as session:
        demo = demo_table(session)
    reason = st.session_state.pop("logout_reason", None)
    if reason:
        st.info(reason)
    st.html(login_form_html(next_path=_current_path(), sso=sso_link(), demo=demo))


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
    """A sidebar line with who is logged in, a "Log out" button, "My sessions" and "Two-step login"."""
    with st.sidebar:
        team = f", team {text(actor.team)}" if actor.team else ""
        st.caption(f"Logged in as **{text(actor.name)}** ({actor.role}{team})")
        st.html(logout_form_html())
        my_sessions(actor)
        my_two_step_login(actor)
        my_notifications(actor)


def my_sessions(actor: Actor) -> None:
    """The actor's own live sessions (browser, address, since, last used), each with "End"."""
    current = st.session_state.get("login_session_id")
    with session_factory(get_engine())() as session:
        frame = list_sessions(session, actor=actor, clock=clock, idle=IDLE_TIMEOUT)
    with st.expander(f"My sessions ({len(frame)})"):
        st.caption("Where you are logged in now. End a session you do not recognise, and tell your admin.")
        for row in frame.itertuples():
            here = row.session_id == current
            left, right = st.columns([3, 1], vertical_alignment="center")
            left.caption(f"{'**This browser** · ' if here else ''}{text(describe_browser(row.user_agent))}, "
                         f"{text(row.address)} · since {row.created_at:%d %b %H:%M} UTC · last used "
                         f"{row.last_seen_at:%H:%M} UTC{' · single sign-on' if row.method == 'sso' else ''}")
            if right.button("End", key=f"end_session_{row.session_id[:16]}",
                            help="Log this session out now." if not here else "Log out here."):
                with transaction(get_engine()) as session:
                    revoke_session(session, session_id=row.session_id, account_id=actor.id,
                                   reason="ended by user", clock=clock)
                st.rerun()
        if len(frame) > 1 and current and st.button("End all my other sessions", key="end_other_sessions"):
            with transaction(get_engine()) as session:
                revoke_account_sessions(session, account_id=actor.id, reason="ended by user", clock=clock,
                                        keep=current)
            st.rerun()


def my_two_step_login(actor: Actor) -> None:
    """"Two-step login": the actor's status, enrolment (QR code, key, first code), new recovery
    codes (shown once) and turning it off where the role allows (``db.mfa``)."""
    from db import mfa
    from db.writes import PermissionDenied

    try:
        with session_factory(get_engine())() as session:
            status = mfa.mfa_status(session, actor=actor)
            pending = None if status.enrolled else mfa.pending_secret(session, actor=actor)
    except (PermissionDenied, mfa.MfaError):
        return  # not an account of this database, or an unreadable secret (an admin resets it)
    codes = st.session_state.pop("mfa_new_codes", None)
    with st.expander("Two-step login", expanded=bool(codes) or pending is not None):
        if codes:
            st.warning("Save these recovery codes now (print them or keep them in a password manager): they are "
                       "shown only this once. Each works once, when your phone is not at hand.")
            st.code("\n".join(codes), language=None)
        if status.enrolled:
            since = f" since {status.confirmed_at:%d %b %Y}" if status.confirmed_at else ""
            st.caption(f"**On**{since}: after your password you type a code from your authenticator app. "
                       f"{status.recovery_left} unused recovery code{'s' if status.recovery_left != 1 else ''} left.")
            if st.button("Make new recovery codes", key="mfa_renew", help="The old recovery codes stop working."):
                _mfa_action(lambda session: st.session_state.update(
                    mfa_new_codes=mfa.renew_recovery_codes(session, actor=actor, clock=clock)))
            if status.required:
                st.caption("Your clinic requires two-step login for your role, so it cannot be turned off. Lost "
                           "your phone? Log in with a recovery code, or ask an admin to reset it.")
            elif st.button("Turn off two-step login", key="mfa_off"):
                _mfa_action(lambda session: mfa.disable_mfa(session, actor=actor))
            return
        if status.required:
            st.caption("Your clinic requires two-step login for your role: set it up now (you will be asked at your "
                       "next login otherwise).")
        else:
            st.caption("**Off**. Optional for your role: after your password, a code from an authenticator app on "
                       "your phone (e.g. FreeOTP, Aegis, Google or Microsoft Authenticator).")
        if pending is None:
            if st.button("Set up two-step login", key="mfa_begin"):
                _mfa_action(lambda session: mfa.begin_enrolment(session, actor=actor, clock=clock))
            return
        _enrol_step(actor, pending)


def _enrol_step(actor: Actor, secret: str) -> None:
    from db import mfa

    st.caption("Scan this QR code with your authenticator app, or type the key, then type the 6-digit code it shows.")
    st.image(mfa.qr_png(mfa.provisioning_uri(secret, name=actor.name)), width=200)
    st.code(mfa.key_for_typing(secret), language=None)
    code = st.text_input("Code from the app", key="mfa_first_code", max_chars=8)
    if st.button("Turn on two-step login", key="mfa_confirm"):
        _mfa_action(lambda session: st.session_state.update(
            mfa_new_codes=mfa.confirm_enrolment(session, actor=actor, code=code or "", clock=clock)))


def _mfa_action(act: Callable[[Any], object]) -> None:
    """Run one two-step login change in its own transaction; a refusal is shown as its sentence
    (its audit row kept), a success reruns the page."""
    from db.mfa import MfaError
    from db.writes import PermissionDenied

    problem = None
    with transaction(get_engine()) as session:
        try:
            act(session)
        except (MfaError, PermissionDenied) as exc:
            problem = str(exc)
    if problem:
        st.error(problem)
        return
    st.rerun()


def my_notifications(actor: Actor) -> None:
    """The actor's choice of alert e-mails (immediately, a daily digest, or off) and where they go."""
    from db import notifications
    from db.writes import PermissionDenied
    from mail.smtp import smtp_settings

    try:
        with session_factory(get_engine())() as session:
            mode, email = notifications.get_mode(session, actor=actor)
    except PermissionDenied:
        return  # not an account of this database (nothing to choose)
    try:
        configured = smtp_settings() is not None
    except ValueError:
        configured = False
    with st.expander("My notifications"):
        st.caption("An e-mail when one of your patients gets an urgent or high alert: the patient code, the kind "
                   "and a link, nothing more. A daily digest lists them once a day.")
        st.segmented_control("Alert e-mails", list(notifications.MODE_WORDS), default=mode, key="notify_mode",
                             format_func=notifications.MODE_WORDS.get, on_change=_save_notify_mode, args=(actor,))
        if not email:
            st.caption("Your account has no e-mail address, so no alert e-mail can reach you; ask your admin to "
                       "add one.")
        else:
            st.caption(f"E-mails go to {text(email)}.")
        if not configured:
            st.caption("This clinic sends no alert e-mails yet: no mail server is configured (ask your admin).")


def _save_notify_mode(actor: Actor) -> None:
    from db import notifications

    choice = st.session_state.get("notify_mode")
    if choice is None:  # a click on the chosen button unselects it: keep the stored choice
        with session_factory(get_engine())() as session:
            st.session_state["notify_mode"] = notifications.get_mode(session, actor=actor)[0]
        return
    from db.writes import PermissionDenied

    try:
        with transaction(get_engine()) as session:
            notifications.set_mode(session, actor=actor, mode=choice)
    except PermissionDenied:
        pass  # the login has ended meanwhile: the page guard says so on this very run
