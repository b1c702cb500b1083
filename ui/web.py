"""The HTTP side of logging in: routes and middleware for Streamlit's ASGI server (``st.App``).

app.py hands :data:`ROUTES` and :data:`MIDDLEWARE` to ``streamlit.starlette.App`` when
``streamlit run app.py`` imports it (see app.py). What they do:

``POST /session/login``
    The login form's post (``ui.login_html``): checks the name and password with
    ``db.auth.authenticate`` (throttling included), starts a **new** server-side session
    (``db.sessions.create_session``; a session the browser had before is ended, so no id is ever
    carried over: session fixation), sets the cookie and sends the browser back to the page it
    asked for (``next``, a local path only: ``/patient?patient=P00042``). Refused: the form again
    with the reason. A post from another site is refused (login CSRF: ``Origin`` and
    ``Sec-Fetch-Site`` must say this site).
``POST /session/mfa``
    The second step for an account with two-step login (``db.mfa``): a right password there
    gives no session but a five-minute challenge (the HttpOnly, ``SameSite=Strict`` cookie
    ``alliance_mfa``, tied to the account on the server) and the code form; a right code (or
    recovery code) makes the session and uses the challenge up. An account whose role requires
    two-step login and has none gets the enrolment page (QR code, key, first code), then its
    recovery codes once, and is logged in. Wrong codes count with the password throttle.
``POST /session/logout``
    Ends every session of the account on the server (this browser's and any other), clears
    the cookie, and (for a single sign-on) goes on to
    Streamlit's ``/auth/logout``, which ends the identity cookie and the provider's session.
``GET /session/sso``
    After the provider's callback: reads the identity Streamlit's signed cookie carries, matches
    it to an account (``db.auth.authenticate_sso``) and starts a session of the same store.

The cookie ``alliance_session``: the opaque token only (no name), ``HttpOnly`` (no script can
read it), ``SameSite=Lax`` (not sent with other sites' posts or embedded requests), ``Path=/``,
``Secure`` behind TLS (the request is https, or the proxy says ``X-Forwarded-Proto: https``, or
``ALLIANCE_SECURE_COOKIE=1``), no ``Max-Age`` (it ends with the browser; the server's limits end
it sooner).

:class:`SessionGate` (middleware), for every HTTP request:

* a page (``/``, ``/patient?patient=…``, …) without a live session gets the login page itself
  (nothing of Streamlit's app is served); a refused cookie (tampered, expired, revoked) is
  cleared and audited (``session_refused``);
* ``/media/…`` (generated files: downloads, images) answers only a live session, and a download
  only the login that made it, for :data:`DOWNLOAD_TTL` seconds; anything else gets 404 like a
  file that does not exist;
* ``/_stcore/upload_file/<Streamlit session id>/…`` answers only the login that Streamlit
  session runs under: the id in the URL is an address, never a credential.

And :func:`install_download_guard` makes a deferred download (``st.download_button`` with a
callable) run only for the Streamlit session that drew the button, while its login is live.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from db import audit, mfa
from db.access import Actor
from db.auth import (
    LOGIN_FAILED_MESSAGE,
    SSO_NO_ACCOUNT_MESSAGE,
    authenticate,
    authenticate_sso,
    login_wait,
    normalise_address,
)
from db.engine import session_factory, transaction
from db.mfa import CHALLENGE_COOKIE, CHALLENGE_TTL
from db.sessions import (
    COOKIE_NAME,
    Resumed,
    audit_refusal,
    create_session,
    resume_by_id,
    resume_session,
    revoke_account_sessions,
    revoke_session,
)
from ui import session as gate
from ui.login_html import (
    LOGIN_PATH,
    LOGOUT_PATH,
    MFA_PATH,
    SSO_PATH,
    enrol_form_html,
    login_form_html,
    login_page,
    mfa_form_html,
    recovery_codes_html,
    safe_next,
)

log = logging.getLogger(__name__)

SECURE_ENV = "ALLIANCE_SECURE_COOKIE"
#: How long a generated download stays fetchable, by the login that made it (seconds).
DOWNLOAD_TTL = 120.0
#: Paths the gate never answers with the login page (Streamlit's own, and the login routes).
_NOT_PAGES = ("/_stcore/", "/static/", "/component/", "/media/", "/session/", "/auth/", "/oauth2callback",
              "/fhir/", "/app/static/")
_STREAMLIT_IDENTITY = "_streamlit_user"

_downloads: dict[str, tuple[str, float]] = {}  # generated file id -> (login session id, monotonic expiry)
_downloads_lock = threading.Lock()


# --- helpers ---------------------------------------------------------------------------------------

def _peer(request: Request) -> str | None:
    host = request.client.host if request.client else None
    try:
        import ipaddress

        return None if host is None or ipaddress.ip_address(host).is_loopback else host
    except ValueError:
        return host


def _address(request: Request) -> str | None:
    return gate.client_address(_peer(request), dict(request.headers))


def behind_tls(request: Request) -> bool:
    """Whether the cookie gets ``Secure``: ``$ALLIANCE_SECURE_COOKIE`` (1/0) when set, else an
    https request or a proxy's ``X-Forwarded-Proto: https``."""
    forced = os.environ.get(SECURE_ENV, "").strip().lower()
    if forced in ("1", "true", "yes", "on"):
        return True
    if forced in ("0", "false", "no", "off"):
        return False
    return request.url.scheme == "https" or request.headers.get("x-forwarded-proto", "").lower() == "https"


def _set_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(COOKIE_NAME, token, path="/", httponly=True, samesite="lax", secure=behind_tls(request))


def _clear_cookie(response: Response, request: Request, *, identity: bool = False) -> None:
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="lax", secure=behind_tls(request))
    if identity:  # Streamlit's single sign-on identity (and its chunks): no way back in without the provider
        for name in request.cookies:
            if name == _STREAMLIT_IDENTITY or name.startswith(f"{_STREAMLIT_IDENTITY}_"):
                response.delete_cookie(name, path="/")


def same_site(request: Request) -> bool:
    """Whether a post comes from this site's own page (login CSRF): ``Sec-Fetch-Site`` says
    same-origin (or is absent), and ``Origin``, when sent, names this host."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    hosts = {request.headers.get("host", ""), request.headers.get("x-forwarded-host", "")} - {""}
    return urlparse(origin).netloc in hosts


def _demo(session: Any) -> tuple[str, list[list[str]]] | None:
    return gate.demo_table(session)


def _page(request: Request, *, next_path: str, status: int = 200, notice: str | None = None,
          error: str | None = None, warning: str | None = None) -> HTMLResponse:
    with session_factory(gate.get_engine())() as session:
        demo = _demo(session)
    body = login_form_html(next_path=next_path, notice=notice, error=error, warning=warning, sso=gate.sso_link(),
                           demo=demo)
    response = HTMLResponse(login_page(body), status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _resume(token: str | None, *, touch: bool) -> Resumed:
    with transaction(gate.get_engine()) as session:
        return resume_session(session, token=token, clock=gate.clock, idle=gate.IDLE_TIMEOUT, touch=touch)


def _audit_refusal(resumed: Resumed, request: Request, where: str) -> None:
    with transaction(gate.get_engine()) as session:
        audit_refusal(session, resumed=resumed, address=_address(request), where=where)


def _next_of(request: Request) -> str:
    query = request.url.query
    return safe_next(request.url.path + (f"?{query}" if query else ""))


# --- routes ------------------------------------------------------------------------------------------

def _wait_sentence(minutes: int) -> str:
    return (f"Too many failed attempts for this name or from this computer: the next attempt is checked in "
            f"{minutes} minute{'s' if minutes != 1 else ''} at the earliest (attempts before then are refused "
            f"without being checked).")


def _wait_warning(session: Any, *, name: str, address: str | None) -> str | None:
    wait = login_wait(session, name=name, address=address, clock=gate.clock)
    return _wait_sentence(max(1, -(-int(wait.total_seconds()) // 60))) if wait > dt.timedelta(0) else None


def _new_login(session: Any, request: Request, actor: Actor) -> str:
    """A fresh session for ``actor`` (the one this browser had before is ended: fixation); its token."""
    old = request.cookies.get(COOKIE_NAME)
    if old:
        resumed = resume_session(session, token=old, clock=gate.clock, idle=gate.IDLE_TIMEOUT, touch=False)
        if resumed.session_id is not None:
            revoke_session(session, session_id=resumed.session_id, reason="replaced", clock=gate.clock)
    return create_session(session, actor=actor, method="password", address=_address(request),
                          user_agent=request.headers.get("user-agent", ""), clock=gate.clock,
                          lifetime=gate.ABSOLUTE_TIMEOUT)


def _html(body: str, *, status: int = 200) -> HTMLResponse:
    response = HTMLResponse(login_page(body), status_code=status)
    response.headers["Cache-Control"] = "no-store"
    return response


def _set_challenge(response: Response, request: Request, token: str) -> None:
    response.set_cookie(CHALLENGE_COOKIE, token, path="/session/", httponly=True, samesite="strict",
                        secure=behind_tls(request), max_age=int(CHALLENGE_TTL.total_seconds()))


def _clear_challenge(response: Response, request: Request) -> None:
    response.delete_cookie(CHALLENGE_COOKIE, path="/session/", httponly=True, samesite="strict",
                           secure=behind_tls(request))


def _second_step_page(session: Any, actor: Actor, purpose: str, *, error: str | None = None,
                      warning: str | None = None) -> str:
    """The code form (``verify``) or the enrolment page with its QR code (``enrol``)."""
    if purpose == "verify":
        return mfa_form_html(name=actor.name, error=error, warning=warning)
    secret = mfa.pending_secret(session, actor=actor) or mfa.begin_enrolment(session, actor=actor, clock=gate.clock)
    return enrol_form_html(name=actor.name, secret=secret, error=error, warning=warning,
                           qr_svg=mfa.qr_svg(mfa.provisioning_uri(secret, name=actor.name)))


def _log_in(request: Request, form: FormData) -> Response:
    name = str(form.get("username") or "")[:64]
    password = str(form.get("password") or "")[:1024]
    next_path = safe_next(str(form.get("next") or "/"))
    address = _address(request)
    engine = gate.get_engine()
    challenge = body = None
    with transaction(engine) as session:
        actor = authenticate(session, name=name, password=password, address=address, clock=gate.clock)
        token = None
        if actor is not None:
            step = mfa.login_step(session, actor)
            if step == "off":
                token = _new_login(session, request, actor)
            else:  # no session yet: a five-minute challenge for the code (db.mfa)
                if step == "enrol":
                    mfa.begin_enrolment(session, actor=actor, clock=gate.clock)  # a new key at every attempt
                challenge = mfa.start_challenge(session, account_id=actor.id, purpose=step, next_path=next_path,
                                                clock=gate.clock)
                body = _second_step_page(session, actor, step)
    if challenge is not None and body is not None:
        response: Response = _html(body)
        _set_challenge(response, request, challenge)
        return response
    if token is None:
        with session_factory(engine)() as session:
            warning = _wait_warning(session, name=name, address=address)
        return _page(request, next_path=next_path, status=401, error=LOGIN_FAILED_MESSAGE, warning=warning)
    response = RedirectResponse(next_path, status_code=303)
    _set_cookie(response, request, token)
    response.headers["Cache-Control"] = "no-store"
    return response


def _check_code(session: Any, request: Request, row: Any, actor: Actor, code: str) -> tuple[str, Any]:
    """One code against a live challenge: ``("login", token)``, ``("codes", (token, codes))``,
    ``("again", page)`` or ``("ended", None)``."""
    address = _address(request)
    warning = _wait_warning(session, name=actor.name, address=address)
    if warning is not None:  # throttled: refused without being checked
        audit.record(session, actor=actor.name, action="login_throttled", address=normalise_address(address),
                     method="mfa")
        return "again", _second_step_page(session, actor, row.purpose, warning=warning)
    codes: list[str] | None = None
    if row.purpose == "verify":
        try:
            ok = mfa.verify_code(session, actor=actor, code=code, address=address, clock=gate.clock) is not None
            error = mfa.WRONG_CODE_MESSAGE
        except mfa.MfaError as exc:  # a secret the audit key cannot read: only an admin's reset helps
            ok, error = False, str(exc)
    else:
        try:
            codes = mfa.confirm_enrolment(session, actor=actor, code=code, clock=gate.clock)
            mfa.audit_login(session, actor=actor, address=address, second="enrolment", clock=gate.clock)
            ok, error = True, ""
        except mfa.MfaError as exc:
            audit.record(session, actor=actor.name, action="login_failed", address=normalise_address(address),
                         method="mfa")
            ok, error = False, str(exc)
    if not ok:
        row.failures += 1
        if row.failures >= mfa.MAX_CHALLENGE_FAILURES:
            mfa.consume_challenge(session, row, clock=gate.clock)
            return "ended", None
        return "again", _second_step_page(session, actor, row.purpose, error=error,
                                          warning=_wait_warning(session, name=actor.name, address=address))
    mfa.consume_challenge(session, row, clock=gate.clock)
    token = _new_login(session, request, actor)
    return ("login", token) if codes is None else ("codes", (token, codes))


def _second_step(request: Request, form: FormData) -> Response:
    code = str(form.get("code") or "")[:64]
    with transaction(gate.get_engine()) as session:
        found = mfa.read_challenge(session, token=request.cookies.get(CHALLENGE_COOKIE), clock=gate.clock)
        outcome, value = ("ended", None) if found is None else _check_code(session, request, *found, code)
        next_path = found[0].next_path if found is not None else "/"
    if outcome == "again":
        return _html(value, status=401)
    if outcome == "ended":
        response: Response = _page(request, next_path="/", status=401, error=mfa.CHALLENGE_ENDED_MESSAGE)
    elif outcome == "codes":
        token, codes = value
        response = _html(recovery_codes_html(codes, next_path=next_path))
        _set_cookie(response, request, token)
    else:
        response = RedirectResponse(safe_next(next_path), status_code=303)
        response.headers["Cache-Control"] = "no-store"
        _set_cookie(response, request, value)
    _clear_challenge(response, request)
    return response


async def _login_post(request: Request, handle: Any, *, max_fields: int) -> Response:
    """A login form's post, refused when it comes from another site (login CSRF)."""
    if not same_site(request):
        return PlainTextResponse("This login came from another web site and was refused. Open Alliance Monitor "
                                 "itself and log in there.", status_code=403)
    form = await request.form(max_files=0, max_fields=max_fields)
    return await run_in_threadpool(handle, request, form)


async def mfa_route(request: Request) -> Response:
    """``POST /session/mfa``: the second step of a login (a code, or the first code of an enrolment)."""
    return await _login_post(request, _second_step, max_fields=5)


async def login_route(request: Request) -> Response:
    """``POST /session/login``: the login form's post."""
    return await _login_post(request, _log_in, max_fields=10)


def _log_out(request: Request) -> Response:
    token = request.cookies.get(COOKIE_NAME)
    method = None
    with transaction(gate.get_engine()) as session:
        resumed = resume_session(session, token=token, clock=gate.clock, idle=gate.IDLE_TIMEOUT, touch=False)
        if resumed.session_id is not None:
            method = resumed.method
            revoke_session(session, session_id=resumed.session_id, reason="logout", clock=gate.clock)
        if resumed.actor is not None:  # logout ends every session of the account, in every browser
            ended = revoke_account_sessions(session, account_id=resumed.actor.id, reason="logout", clock=gate.clock)
            audit.record(session, actor=resumed.actor, action="logout", sessions=ended + 1)
    target = "/auth/logout" if method == "sso" and gate.sso_settings() is not None else "/"
    response = RedirectResponse(target, status_code=303)
    _clear_cookie(response, request)
    return response


async def logout_route(request: Request) -> Response:
    """``POST /session/logout``: end this browser's session."""
    if not same_site(request):
        return PlainTextResponse("This logout came from another web site and was ignored.", status_code=403)
    return await run_in_threadpool(_log_out, request)


def _sso_claims(request: Request) -> dict[str, Any]:
    """The identity in Streamlit's signed single sign-on cookie (empty: none, or not valid).

    Uses Streamlit's own reader of that cookie (``streamlit==1.67.0``, pinned in requirements.txt).
    """
    try:
        from streamlit.auth_util import get_origin_from_redirect_uri
        from streamlit.web.server.starlette.starlette_websocket import (
            _get_signed_cookie_with_chunks,
            _parse_decoded_user_cookie,
        )

        raw = _get_signed_cookie_with_chunks(dict(request.cookies), _STREAMLIT_IDENTITY)
        origin = get_origin_from_redirect_uri()
        if raw is None or not origin:
            return {}
        claims = _parse_decoded_user_cookie(raw, origin)
    except Exception:  # no [auth] section, a rotated secret, a malformed cookie
        log.warning("The single sign-on cookie could not be read; the login form is shown instead.")
        return {}
    return claims if claims.get("is_logged_in") else {}


def _sso(request: Request) -> Response:
    next_path = safe_next(request.query_params.get("next"))
    settings = gate.sso_settings()
    claims = _sso_claims(request) if settings is not None else {}
    if not claims:
        response = _page(request, next_path=next_path)
        _clear_cookie(response, request, identity=True)
        return response
    email = str(claims.get("email") or "")
    with transaction(gate.get_engine()) as session:
        actor = authenticate_sso(session, email=email, email_verified=claims.get("email_verified"),
                                 issuer=str(claims.get("iss") or ""), subject=str(claims.get("sub") or ""),
                                 provider=gate.sso_name(settings or {}), clock=gate.clock)
        token = None if actor is None else create_session(
            session, actor=actor, method="sso", address=_address(request),
            user_agent=request.headers.get("user-agent", ""), clock=gate.clock, lifetime=gate.ABSOLUTE_TIMEOUT)
    if token is None:
        response = _page(request, next_path=next_path, status=403,
                         error=SSO_NO_ACCOUNT_MESSAGE.format(email=email or "(none given)"))
        _clear_cookie(response, request, identity=True)
        return response
    redirect = RedirectResponse(next_path, status_code=303)
    _set_cookie(redirect, request, token)
    return redirect


async def sso_route(request: Request) -> Response:
    """``GET /session/sso``: turn the provider's identity into a session of this store."""
    return await run_in_threadpool(_sso, request)


ROUTES = [
    Route(LOGIN_PATH, login_route, methods=["POST"]),
    Route(LOGOUT_PATH, logout_route, methods=["POST"]),
    Route(SSO_PATH, sso_route, methods=["GET"]),
    Route(MFA_PATH, mfa_route, methods=["POST"]),
]


# --- the gate ---------------------------------------------------------------------------------------

def _is_page(path: str) -> bool:
    if path == "/":
        return True
    return not path.startswith(_NOT_PAGES) and "." not in path.rsplit("/", 1)[-1]


def register_download(file_id: str, login_session: str) -> None:
    """Tie a generated download to the login that made it, for :data:`DOWNLOAD_TTL` seconds."""
    now = time.monotonic()
    with _downloads_lock:
        for old in [k for k, (_, until) in _downloads.items() if until < now]:
            _downloads.pop(old, None)
        _downloads[file_id] = (login_session, now + DOWNLOAD_TTL)


def _download_owner(file_id: str) -> tuple[str, float] | None:
    with _downloads_lock:
        return _downloads.get(file_id)


class SessionGate:
    """Pure ASGI middleware: pages, media and uploads only for a live login (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response = await run_in_threadpool(self.decide, request)
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    def decide(self, request: Request) -> Response | None:
        """``None`` to let the request through, else the answer to give instead."""
        path = request.url.path
        if path.startswith("/media/"):
            return self._media(request, path)
        if path.startswith("/_stcore/upload_file/"):
            return self._upload(request, path)
        if request.method in ("GET", "HEAD") and _is_page(path):
            return self._page_visit(request)
        return None

    def _page_visit(self, request: Request) -> Response | None:
        token = request.cookies.get(COOKIE_NAME)
        resumed = _resume(token, touch=True)
        if resumed.actor is not None:
            return None
        if resumed.reason is not None:
            _audit_refusal(resumed, request, where=request.url.path)
            response = _page(request, next_path=_next_of(request), notice=gate.REFUSAL_MESSAGES[resumed.reason])
            _clear_cookie(response, request, identity=resumed.method == "sso")
            return response
        if _STREAMLIT_IDENTITY in request.cookies and gate.sso_settings() is not None:
            return RedirectResponse(f"{SSO_PATH}?next={quote(_next_of(request), safe='')}", status_code=303)
        return _page(request, next_path=_next_of(request))

    def _media(self, request: Request, path: str) -> Response | None:
        resumed = _resume(request.cookies.get(COOKIE_NAME), touch=False)
        file_id = path.removeprefix("/media/").split(".", 1)[0]
        owner = _download_owner(file_id)
        if resumed.actor is None or (owner is not None and (owner[0] != resumed.session_id
                                                            or owner[1] < time.monotonic())):
            if resumed.reason is not None:
                _audit_refusal(resumed, request, where="media")
            return PlainTextResponse("File not found", status_code=404)
        return None

    def _upload(self, request: Request, path: str) -> Response | None:
        parts = path.removeprefix("/_stcore/upload_file/").split("/")
        resumed = _resume(request.cookies.get(COOKIE_NAME), touch=False)
        if resumed.actor is None or not parts or gate.binding(parts[0]) != resumed.session_id:
            if resumed.reason is not None:
                _audit_refusal(resumed, request, where="upload")
            return PlainTextResponse("This upload does not belong to your login; reload the page and try again.",
                                     status_code=403)
        return None


@functools.lru_cache(maxsize=1)
def chart_chunk() -> str | None:
    """The address of Streamlit's plotly chart bundle (plotly.js, 4.7 MB), relative like the
    index page's own scripts; ``None`` if this Streamlit build has none."""
    from streamlit import file_util

    found = sorted(Path(file_util.get_static_dir(), "static", "js").glob("PlotlyChart.*.js"))
    return f"./static/js/{found[0].name}" if found else None


class ChartPreload:
    """Pure ASGI middleware: Streamlit's app page (``index.html``) asks the browser to fetch and
    compile the plotly chart bundle while the app starts (``<link rel="modulepreload">``), so
    the first chart a user opens (a patient's course) does not wait for 4.7 MB of plotly.js to
    be loaded after its data arrive (issue 19). Other responses pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        href = chart_chunk()
        if scope["type"] != "http" or scope["method"] != "GET" or not _is_page(scope["path"]) or href is None:
            await self.app(scope, receive, send)
            return
        tag = f'<link rel="modulepreload" crossorigin href="{href}">'.encode()
        held: dict[str, Any] = {}
        body: list[bytes] = []

        async def rewrite(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers", []))
                if message["status"] == 200 and headers.get(b"content-type", b"").startswith(b"text/html") \
                        and b"content-encoding" not in headers:
                    held["start"] = message
                    return
                held["passing"] = True
            if held.get("passing") or message["type"] != "http.response.body":
                await send(message)
                return
            body.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            html = b"".join(body)
            if tag not in html and b"</head>" in html:
                html = html.replace(b"</head>", tag + b"</head>", 1)
            start = held["start"]
            start["headers"] = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"] \
                + [(b"content-length", str(len(html)).encode())]
            await send(start)
            await send({"type": "http.response.body", "body": html, "more_body": False})

        await self.app(scope, receive, rewrite)


#: Outermost first: the gate answers a page without a login with the login page (which needs no
#: chart); a page of a live login reaches Streamlit through the preload.
MIDDLEWARE = [Middleware(SessionGate), Middleware(ChartPreload)]


# --- deferred downloads -----------------------------------------------------------------------------

def _live_login(login_session: str | None) -> bool:
    if not login_session:
        return False
    with transaction(gate.get_engine()) as session:
        resumed = resume_by_id(session, session_id=login_session, clock=gate.clock, idle=gate.IDLE_TIMEOUT)
        if resumed.actor is None:
            audit_refusal(session, resumed=resumed, where="download")
        return resumed.actor is not None


def install_download_guard() -> None:
    """Make Streamlit's deferred-download handler refuse a download id drawn for another
    Streamlit session, or one whose login has ended, and tie the file it makes to that login.

    Streamlit 1.67 runs a deferred download's callable for whichever connection sends its id
    (the handler ignores the session): a second browser that learnt the id got the file.
    This wraps ``DeferredFileHandler.handle`` (``streamlit==1.67.0`` is pinned).
    """
    from streamlit.runtime import backend_operation_handler as handlers

    original = handlers.DeferredFileHandler.handle
    if getattr(original, "alliance_guard", False):
        return

    async def handle(self: Any, request: Any, session_id: str) -> Any:
        file_id = request.deferred_file.file_id
        manager = self._get_media_file_mgr()
        with manager._lock:
            entry = manager._deferred_callables.get(file_id)
        owner = entry.get("session_id") if entry else None
        login_session = gate.binding(session_id)
        if owner != session_id or not await asyncio.to_thread(_live_login, login_session):
            return handlers.BackendOperationResponse(request_id=request.request_id,
                                                     error_msg="Failed to generate file for download")
        response = await original(self, request, session_id)
        url = response.deferred_file.url if response.HasField("deferred_file") else ""
        if url and login_session:
            register_download(url.rsplit("/", 1)[-1].split(".", 1)[0], login_session)
        return response

    handle.alliance_guard = True  # type: ignore[attr-defined]
    handlers.DeferredFileHandler.handle = handle  # type: ignore[method-assign]


from ui.fhir_http import FHIR_ROUTES  # noqa: E402  (the FHIR intake, issue 17)

ROUTES += FHIR_ROUTES
