"""Server-side login sessions: created at login, looked up on every request, ended for good.

A login is a row of ``login_sessions`` (:class:`db.models.LoginSession`). The browser holds a
random opaque token (256 bits, :func:`secrets.token_urlsafe`) in an HttpOnly cookie; the table
keeps only its SHA-256 (:func:`token_id`), so neither a copy of the database nor its logs log
anybody in, and the cookie carries no name, role or anything else.

* :func:`create_session` at every login (password or single sign-on) makes a *fresh* token: a
  token the browser had before is never promoted to a login (session fixation).
* :func:`resume_session` answers "who is this token?" on every request and script run. A token
  is refused (``None``, with the reason) when it is unknown (tampered or made up), revoked,
  past its absolute lifetime (``expires_at``, ``ALLIANCE_SESSION_HOURS`` after login), idle for
  longer than the idle timeout (``ALLIANCE_IDLE_MINUTES`` since ``last_seen_at``), or when its
  account is deactivated. Both limits are enforced here, on the server; the cookie's own
  lifetime only tidies the browser. An idle or expired session is revoked on the spot, so it
  cannot come back when the clock or the settings change.
* :func:`revoke_session` ends one (logout, or the user ending one of their own sessions);
  :func:`revoke_account_sessions` ends every session of an account, in the caller's transaction:
  ``db.accounts`` calls it at a password reset, a deactivation and a role change.
* :func:`list_sessions` lists an account's own sessions, for "My sessions".

Refusals are audited by the caller (``session_refused``, :func:`audit_refusal`), which knows the
client's address; every function here takes the caller's session and never commits.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace

import pandas as pd
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db import audit
from db.access import Actor, access_fingerprint
from db.models import Account, LoginSession, utcnow

#: The idle timeout and the absolute lifetime (environment, read at import; fractions allowed).
IDLE_ENV = "ALLIANCE_IDLE_MINUTES"
LIFETIME_ENV = "ALLIANCE_SESSION_HOURS"
#: The cookie's name: says what it is for and nothing about who holds it.
COOKIE_NAME = "alliance_session"
#: Longest accepted token (a real one is 43 characters): longer input is refused unread.
MAX_TOKEN_CHARS = 128
METHODS = ("password", "sso")
#: Revocation reasons that come from a change of the account (``db.accounts``), not from the user.
ACCOUNT_CHANGES = frozenset({"password reset", "deactivated", "role changed", "mfa reset"})


def idle_timeout() -> dt.timedelta:
    """``$ALLIANCE_IDLE_MINUTES`` (default 30; fractions such as 0.1 allowed, for tests)."""
    return dt.timedelta(minutes=_positive(IDLE_ENV, "30"))


def absolute_lifetime() -> dt.timedelta:
    """``$ALLIANCE_SESSION_HOURS`` (default 12)."""
    return dt.timedelta(hours=_positive(LIFETIME_ENV, "12"))


def _positive(name: str, default: str) -> float:
    raw = os.environ.get(name, default)
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name} is {raw!r}, which is not a number; set it to a number such as {default} "
                         f"or remove it to use the default ({default}).") from None
    if not value > 0:
        raise ValueError(f"{name} is {raw!r}; it must be more than 0 (default {default}).")
    return value


def token_id(token: str) -> str:
    """The row id of a cookie token: its SHA-256, hex."""
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _utc(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class Resumed:
    """What :func:`resume_session` found: the actor, or ``None`` and the reason for refusing."""

    actor: Actor | None
    session_id: str | None = None
    reason: str | None = None
    method: str | None = None


def create_session(session: Session, *, actor: Actor, method: str = "password", user_agent: str = "",
                   address: str | None = None, clock: Callable[[], dt.datetime] = utcnow,
                   lifetime: dt.timedelta | None = None) -> str:
    """Start a login of ``actor`` and return its new token (for the cookie; shown nowhere else).

    Parameters
    ----------
    session : Session
        The caller's transaction (the login's own audit row is written by ``db.auth``).
    actor : Actor
        The account that just proved who it is (password or single sign-on).
    method : str
        ``"password"`` or ``"sso"``.
    user_agent, address : str
        The browser's User-Agent (cut to 256 characters) and the client address, for "My sessions".
    clock : callable
        Returns the current UTC time (injectable for tests).
    lifetime : timedelta, optional
        The absolute lifetime; default :func:`absolute_lifetime`.
    """
    if method not in METHODS:
        raise ValueError(f"The login method {method!r} does not exist; use one of {', '.join(METHODS)}.")
    now = clock()
    token = secrets.token_urlsafe(32)
    session.add(LoginSession(id=token_id(token), account_id=actor.id, method=method, created_at=now,
                             last_seen_at=now, expires_at=now + (lifetime or absolute_lifetime()),
                             user_agent=(user_agent or "")[:256], address=(address or "unknown")[:64]))
    session.flush()
    return token


def _end(row: LoginSession, *, at: dt.datetime, reason: str) -> None:
    row.revoked_at = at
    row.revoke_reason = reason[:32]


def resume_session(session: Session, *, token: str | None, clock: Callable[[], dt.datetime] = utcnow,
                   idle: dt.timedelta | None = None, touch: bool = True) -> Resumed:
    """The actor a cookie token stands for, or why it is refused.

    ``reason`` is ``None`` when there was no token at all (nothing to audit), else one of
    ``unknown`` (tampered or made up), ``revoked`` (logged out or ended by the user), ``expired``
    (absolute lifetime), ``idle`` and ``account`` (deactivated, password reset, role changed).
    ``touch`` moves ``last_seen_at`` to now (every script run does; a download's re-check does
    not need to). The caller commits.
    """
    if not token:
        return Resumed(None)
    if len(token) > MAX_TOKEN_CHARS or not token.isascii():
        return Resumed(None, reason="unknown")
    return resume_by_id(session, session_id=token_id(token), clock=clock, idle=idle, touch=touch)


def resume_by_id(session: Session, *, session_id: str, clock: Callable[[], dt.datetime] = utcnow,
                 idle: dt.timedelta | None = None, touch: bool = False) -> Resumed:
    """:func:`resume_session` for a session the server already knows by its id (the token's
    hash): a download's or a fragment's re-check at the moment it runs."""
    sid = session_id
    row = session.get(LoginSession, sid)
    if row is None:
        return Resumed(None, reason="unknown")
    now = clock()
    if row.revoked_at is not None:
        changed = row.revoke_reason in ACCOUNT_CHANGES  # ended by an admin's change of the account
        return Resumed(None, sid, "account" if changed else "revoked", row.method)
    if now >= _utc(row.expires_at):
        _end(row, at=now, reason="expired")
        return Resumed(None, sid, "expired", row.method)
    if now - _utc(row.last_seen_at) > (idle or idle_timeout()):
        _end(row, at=now, reason="idle")
        return Resumed(None, sid, "idle", row.method)
    account = session.get(Account, row.account_id)
    if account is None or not account.active:
        _end(row, at=now, reason="account")
        return Resumed(None, sid, "account", row.method)
    if touch and now > _utc(row.last_seen_at):
        row.last_seen_at = now
    actor = Actor.from_account(account)
    actor = replace(actor, scope=access_fingerprint(session, actor=actor))
    return Resumed(actor, sid, None, row.method)


def audit_refusal(session: Session, *, resumed: Resumed, address: str | None = None, where: str = "") -> None:
    """Record that a cookie was refused (tampered, expired, revoked, idle, deactivated account)."""
    if resumed.reason is None:
        return
    name = "(unknown session)"
    if resumed.session_id is not None:
        row = session.get(LoginSession, resumed.session_id)
        account = session.get(Account, row.account_id) if row is not None else None
        name = account.name if account is not None else name
    detail: dict[str, str] = {"reason": resumed.reason, "address": address or "unknown"}
    if where:
        detail["where"] = where[:64]
    audit.record(session, actor=name, action="session_refused", **detail)  # type: ignore[arg-type]


def revoke_session(session: Session, *, session_id: str, account_id: int | None = None, reason: str = "logout",
                   clock: Callable[[], dt.datetime] = utcnow) -> bool:
    """End one session (by its id, the token's hash); with ``account_id``, only if it is theirs.

    Returns True when a live session was ended.
    """
    row = session.get(LoginSession, session_id)
    if row is None or row.revoked_at is not None or (account_id is not None and row.account_id != account_id):
        return False
    _end(row, at=clock(), reason=reason)
    session.flush()
    return True


def revoke_account_sessions(session: Session, *, account_id: int, reason: str,
                            clock: Callable[[], dt.datetime] = utcnow, keep: str | None = None) -> int:
    """End every live session of an account (``keep``: a session id to leave alone); the count."""
    stmt = (update(LoginSession).where(LoginSession.account_id == account_id, LoginSession.revoked_at.is_(None))
            .values(revoked_at=clock(), revoke_reason=reason[:32]))
    if keep is not None:
        stmt = stmt.where(LoginSession.id != keep)
    result = session.execute(stmt.execution_options(synchronize_session="fetch"))
    return int(getattr(result, "rowcount", 0) or 0)


SESSION_COLUMNS = ["session_id", "method", "created_at", "last_seen_at", "expires_at", "user_agent", "address",
                   "live", "ended_at", "ended_because"]


def list_sessions(session: Session, *, actor: Actor, clock: Callable[[], dt.datetime] = utcnow,
                  idle: dt.timedelta | None = None, include_ended: bool = False, limit: int = 20) -> pd.DataFrame:
    """The actor's own sessions, newest first (:data:`SESSION_COLUMNS`); only the live ones unless
    ``include_ended``. ``session_id`` is the row id (the token's hash), never the token."""
    stmt = select(LoginSession).where(LoginSession.account_id == actor.id)
    if not include_ended:
        stmt = stmt.where(LoginSession.revoked_at.is_(None))
    now, idle = clock(), idle or idle_timeout()
    rows = session.scalars(stmt.order_by(LoginSession.last_seen_at.desc()).limit(max(1, limit))).all()
    out = []
    for r in rows:
        live = (r.revoked_at is None and now < _utc(r.expires_at) and now - _utc(r.last_seen_at) <= idle)
        if not live and not include_ended:
            continue
        out.append([r.id, r.method, _utc(r.created_at), _utc(r.last_seen_at), _utc(r.expires_at), r.user_agent,
                    r.address, live, r.revoked_at and _utc(r.revoked_at), r.revoke_reason])
    frame = pd.DataFrame(out, columns=SESSION_COLUMNS)
    for col in ("created_at", "last_seen_at", "expires_at", "ended_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    frame["live"] = frame["live"].astype(bool)
    return frame


def describe_browser(user_agent: str) -> str:
    """A short name for a User-Agent string ("Chrome on Linux"), for "My sessions"."""
    ua = user_agent or ""
    browser = next((name for key, name in (("Edg/", "Edge"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
                                            ("Safari/", "Safari")) if key in ua), "A browser")
    system = next((name for key, name in (("Windows", "Windows"), ("Mac OS", "macOS"), ("Android", "Android"),
                                          ("iPhone", "iPhone"), ("iPad", "iPad"), ("Linux", "Linux")) if key in ua),
                  "")
    if "HeadlessChrome" in ua:
        browser = "Headless Chrome"
    return f"{browser} on {system}" if system else browser
