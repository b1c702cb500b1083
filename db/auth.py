"""Local accounts: argon2id password hashes, login with lockout, session validity.

* Hashes: argon2id through argon2-cffi's ``PasswordHasher`` (its defaults follow RFC 9106's
  recommended parameters); a hash made with older parameters is replaced at the next login.
* Passwords: no composition rules, at least 12 characters (OWASP ASVS 2.1.1).
* Lockout: after ``MAX_FAILURES`` failed logins within ``WINDOW`` the name is locked for
  ``LOCKOUT``. It is kept in the audit trail (so a new browser session does not reset it) and
  applies to names that do not exist too, so the answer never reveals whether an account
  exists.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db import audit
from db.access import Actor
from db.models import Account, AuditEvent, utcnow

MIN_PASSWORD_LENGTH = 12
MAX_FAILURES = 5
WINDOW = dt.timedelta(minutes=15)
LOCKOUT = dt.timedelta(minutes=15)
LOGIN_FAILED_MESSAGE = (
    "Wrong username or password, or the account is locked after too many attempts. "
    "Check both and try again; after 5 failed attempts, wait 15 minutes or ask an admin."
)

_hasher = PasswordHasher()
#: At most this many argon2 computations at once in the process. Each takes 64 MiB and four lanes
#: (argon2-cffi's RFC 9106 profile), so ten people logging in at once would otherwise need ~640 MB
#: and starve every page on a 2-core server; queued logins wait a fraction of a second instead.
HASH_SLOTS = threading.BoundedSemaphore(2)
# A fixed hash to verify against when the name is unknown, so both paths take the same time.
_DUMMY_HASH = _hasher.hash("alliance-monitor-timing-equaliser")


def check_password_policy(password: str) -> None:
    """Raise ``ValueError`` when the password is shorter than the minimum."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(
            f"The password is {len(password)} characters long; use at least {MIN_PASSWORD_LENGTH} "
            f"(a few unrelated words make a long password that is easy to remember)."
        )


def hash_password(password: str) -> str:
    """An argon2id hash of ``password`` (after checking the length policy)."""
    check_password_policy(password)
    with HASH_SLOTS:
        return _hasher.hash(password)


def _locked(session: Session, name: str, now: dt.datetime) -> bool:
    last_lock = session.scalar(
        select(func.max(AuditEvent.at)).where(AuditEvent.action == "lockout", AuditEvent.actor == name)
    )
    if last_lock is None:
        return False
    last_lock = last_lock if last_lock.tzinfo else last_lock.replace(tzinfo=dt.UTC)
    return now - last_lock < LOCKOUT


def _recent_failures(session: Session, name: str, now: dt.datetime) -> int:
    since = now - WINDOW
    last_ok = session.scalar(
        select(func.max(AuditEvent.at)).where(
            AuditEvent.actor == name, AuditEvent.action.in_(("login", "lockout"))
        )
    )
    if last_ok is not None:
        last_ok = last_ok if last_ok.tzinfo else last_ok.replace(tzinfo=dt.UTC)
        since = max(since, last_ok)
    return session.scalar(
        select(func.count()).select_from(AuditEvent).where(
            AuditEvent.actor == name, AuditEvent.action == "login_failed", AuditEvent.at > since
        )
    ) or 0


def authenticate(session: Session, *, name: str, password: str,
                 clock: Callable[[], dt.datetime] = utcnow) -> Actor | None:
    """The actor for a correct name and password, else ``None`` (and the failure is audited).

    The caller commits the session (the audit rows are part of the transaction).
    """
    now = clock()
    name = name.strip()[:64]
    if _locked(session, name, now):
        audit.record(session, actor=name, action="login_failed", at=now, reason="locked")
        return None
    account = session.scalar(select(Account).where(Account.name == name))
    stored = account.password_hash if account is not None and account.password_hash else _DUMMY_HASH
    try:
        with HASH_SLOTS:
            _hasher.verify(stored, password)
        ok = account is not None and account.active and account.password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if not ok or account is None:
        audit.record(session, actor=name, action="login_failed", at=now)
        if _recent_failures(session, name, now) >= MAX_FAILURES:
            audit.record(session, actor=name, action="lockout", at=now,
                         minutes=int(LOCKOUT.total_seconds() // 60))
        return None
    if _hasher.check_needs_rehash(account.password_hash or ""):
        with HASH_SLOTS:
            account.password_hash = _hasher.hash(password)
    audit.record(session, actor=name, action="login", at=now)
    return Actor.from_account(account)


SSO_NO_ACCOUNT_MESSAGE = (
    "Your single sign-on worked, but no active Alliance Monitor account has the e-mail address {email}. "
    "Ask your clinic's admin to add this address to your account (Admin → Accounts), then log in again."
)


def authenticate_sso(session: Session, *, email: str | None, email_verified: object = None,
                     provider: str = "oidc", clock: Callable[[], dt.datetime] = utcnow) -> Actor | None:
    """The actor whose account has ``email`` (an identity an OpenID Connect provider vouched for).

    The match is on the whole address, case-insensitively, and only active accounts match; the
    role and team come from the account, never from the provider. An identity whose provider says
    ``email_verified`` is false is refused. Both outcomes are audited (``login`` with
    ``method="sso"``, or ``login_failed``); the caller commits.

    Parameters
    ----------
    session : Session
        The caller's transaction.
    email : str or None
        The ``email`` claim of the ID token.
    email_verified : object, optional
        The ``email_verified`` claim; only an explicit false refuses (some providers omit it).
    provider : str
        A name for the audit trail.
    clock : callable
        Returns the current UTC time (injectable for tests).
    """
    now = clock()
    address = (email or "").strip().lower()
    account = None
    if address and email_verified not in (False, "false", "False", 0):
        account = session.scalar(select(Account).where(func.lower(Account.email) == address,
                                                        Account.active.is_(True)))
    if account is None:
        audit.record(session, actor=address[:64] or "(no e-mail)", action="login_failed", at=now,
                     method="sso", provider=provider, reason="no active account with this e-mail")
        return None
    audit.record(session, actor=account.name, action="login", at=now, method="sso", provider=provider)
    return Actor.from_account(account)
