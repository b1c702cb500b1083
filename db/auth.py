"""Local accounts: argon2id password hashes, login with growing delays, session validity.

* Hashes: argon2id through argon2-cffi's ``PasswordHasher`` (its defaults follow RFC 9106's
  recommended parameters); a hash made with older parameters is replaced at the next login.
* Passwords (OWASP ASVS 5.0 V6.2): no composition rules; at least 12 and at most 256
  characters, not only spaces, not on the list of common passwords (``common_passwords.txt``,
  also after removing digits and symbols around a common word: ``Password1234!``), not mostly
  one repeated character, and not the demo clinic's public password outside the demo clinic.
* Throttling (OWASP ASVS 5.0 V6.3.1, NIST SP 800-63B 5.2.2): failed logins are counted from the
  ``login_failed`` rows of the audit trail (so a new browser or a restarted server does not reset
  them) under three keys, each with its own :class:`Throttle`: the name from one client address,
  the client address whatever the name, and the name from addresses it never logged in from.
  Past a key's free attempts, the next attempt waits ``first`` x 2^(extra failures), at most
  ``cap``, from the latest failure. An attempt that comes too early is refused *without* being
  checked and is recorded as ``login_throttled``, which counts toward nothing: waiting out a delay
  always gets one real attempt, and retrying during it changes nothing.
* The answer takes the same time whatever happens: every attempt (known, unknown, password-less,
  inactive or throttled name) runs one argon2 verification and the same queries, and names that
  do not exist are throttled exactly like those that do.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from db import audit
from db.access import Actor
from db.models import Account, AuditEvent, utcnow

MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256
#: The demo clinic's shared password: printed in the README and on the demo login page.
DEMO_PASSWORD = "demo-password-2026"
COMMON_PASSWORDS = Path(__file__).with_name("common_passwords.txt")
#: Failed logins of one name from one address before the first delay (the old lockout count).
MAX_FAILURES = 5
LOGIN_FAILED_MESSAGE = (
    "Wrong username or password, or too many failed attempts. Check both and try again; after 5 failed "
    "attempts each further attempt waits longer (15 minutes, then 30, then an hour)."
)

_hasher = PasswordHasher()
#: At most this many argon2 computations at once in the process. Each takes 64 MiB and four lanes
#: (argon2-cffi's RFC 9106 profile), so ten people logging in at once would otherwise need ~640 MB
#: and starve every page on a 2-core server; queued logins wait a fraction of a second instead.
HASH_SLOTS = threading.BoundedSemaphore(2)
# A fixed hash to verify against when the name is unknown, so both paths take the same time.
_DUMMY_HASH = _hasher.hash("alliance-monitor-timing-equaliser")


# --- password policy ------------------------------------------------------------------------------

@cache
def common_passwords() -> frozenset[str]:
    """The blocklist: common passwords and the words they are made of, lower case (one a line)."""
    lines = COMMON_PASSWORDS.read_text(encoding="utf-8").splitlines()
    return frozenset(w.strip() for w in lines if w.strip() and not w.startswith("#"))


_LEET = str.maketrans({"@": "a", "4": "a", "8": "b", "3": "e", "1": "i", "!": "i", "0": "o", "$": "s", "5": "s",
                       "7": "t", "+": "t"})
_DECORATION = re.compile(r"^[\W\d_]+|[\W\d_]+$")


def _core(password: str) -> str:
    """The word a password is made of: lower case, digits and symbols around it removed, leet
    spelling undone, the rest's non-letters dropped (``P@ssw0rd2026!`` -> ``password``)."""
    inner = _DECORATION.sub("", password.lower())
    return re.sub(r"[\W\d_]", "", inner.translate(_LEET))


def _repeated_unit(text: str) -> str:
    """The shortest piece ``text`` repeats (``abcabcabc`` -> ``abc``), else ``text``."""
    for size in range(1, len(text) // 2 + 1):
        if len(text) % size == 0 and text[:size] * (len(text) // size) == text:
            return text[:size]
    return text


def check_password_policy(password: str, *, demo: bool = False) -> None:
    """Raise ``ValueError`` with a sentence when ``password`` may not be set.

    Parameters
    ----------
    password : str
        The new password, exactly as typed (it is never stripped or truncated).
    demo : bool
        True on the demo clinic's database (``db.queries.is_demo``), where the public demo
        password is allowed.
    """
    if not password.strip():
        raise ValueError("The password is empty or only spaces; type a password of at least "
                         f"{MIN_PASSWORD_LENGTH} characters (a few unrelated words are easy to remember).")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(
            f"The password is {len(password)} characters long; use at least {MIN_PASSWORD_LENGTH} "
            f"(a few unrelated words make a long password that is easy to remember)."
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ValueError(f"The password is {len(password):,} characters long; use at most {MAX_PASSWORD_LENGTH} "
                         f"(a password manager or a few unrelated words are plenty).")
    if password == DEMO_PASSWORD and not demo:
        raise ValueError("This is the demo clinic's public password (it is printed in the README and on the demo "
                         "login page); choose a password of your own.")
    lowered, core = password.lower(), _core(password)
    listed = common_passwords()
    if lowered in listed or lowered.replace(" ", "") in listed or core in listed or _repeated_unit(core) in listed:
        raise ValueError("This password is on the list of common passwords that attackers try first (or is a "
                         "common word with digits or symbols added); choose another, e.g. a few unrelated words.")
    if len(set(lowered)) < 4 or len(_repeated_unit(lowered)) < 4:
        raise ValueError("This password repeats a few characters over and over; choose one that does not, e.g. a "
                         "few unrelated words.")


def hash_password(password: str, *, demo: bool = False) -> str:
    """An argon2id hash of ``password`` (after checking the policy; ``demo`` as there)."""
    check_password_policy(password, demo=demo)
    with HASH_SLOTS:
        return _hasher.hash(password)


# --- throttling -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Throttle:
    """Growing delays for one key of failed logins.

    After ``free`` failures within ``window`` (counted since the key's latest successful login
    when ``since_success``), the next attempt waits ``first * 2 ** (n - free)`` after the latest
    failure, at most ``cap``; ``n`` is the number of failures. ``None`` in a field turns the
    key off.
    """

    scope: str
    free: int
    first: dt.timedelta
    cap: dt.timedelta
    window: dt.timedelta
    since_success: bool = True

    def delay(self, failures: int) -> dt.timedelta:
        """The wait after ``failures`` failures (zero while they are within the free ones)."""
        if failures < self.free:
            return dt.timedelta(0)
        return min(self.first * 2 ** min(failures - self.free, 30), self.cap)


#: One name from one client address: the typing user, or one attacker's guesses at one account.
#: 5 free, then 15 min, 30 min, 1 h, 1 h, ...: at most about 30 guesses a day.
BY_NAME_AND_ADDRESS = Throttle("name from this address", MAX_FAILURES, dt.timedelta(minutes=15),
                               dt.timedelta(hours=1), dt.timedelta(hours=24))
#: One client address whatever the names (password spraying): 20 free an hour, then 1 min, 2, 4, ...
#: at most 1 h. A clinic behind one proxy shares it: see docs/security.md.
BY_ADDRESS = Throttle("this address", 20, dt.timedelta(minutes=1), dt.timedelta(hours=1), dt.timedelta(hours=1),
                      since_success=False)
#: One name from addresses it has not logged in from in ``TRUSTED_FOR`` (guesses spread over many
#: addresses): 10 free an hour, then 1 min, 2, 4, ... at most 15 min. The name's own usual
#: addresses are exempt, so a distributed attack cannot lock its user out.
BY_NAME = Throttle("name", 10, dt.timedelta(minutes=1), dt.timedelta(minutes=15), dt.timedelta(hours=1))
TRUSTED_FOR = dt.timedelta(days=30)
#: What the trail records when the caller does not know the client's address.
UNKNOWN_ADDRESS = "unknown"


def normalise_address(address: str | None) -> str:
    """A client address as the trail stores it: a canonical IP address, else ``"unknown"``."""
    if not address:
        return UNKNOWN_ADDRESS
    try:
        return str(ipaddress.ip_address(address.strip().split("%")[0]))
    except ValueError:
        return UNKNOWN_ADDRESS


def _utc(at: dt.datetime | None) -> dt.datetime | None:
    return None if at is None else (at if at.tzinfo else at.replace(tzinfo=dt.UTC))


def _address_like(address: str) -> str:
    # the rows' detail is json.dumps(..., sort_keys=True) (db.audit.record); an address is only
    # hex digits, dots and colons, so it needs no LIKE escaping
    return "%" + json.dumps({"address": address})[1:-1] + "%"


def _last(session: Session, action: str, *, name: str | None, address: str | None,
          before: dt.datetime) -> dt.datetime | None:
    stmt = select(func.max(AuditEvent.at)).where(AuditEvent.action == action, AuditEvent.at <= before)
    if name is not None:
        stmt = stmt.where(AuditEvent.actor == name)
    if address is not None:
        stmt = stmt.where(AuditEvent.detail.like(_address_like(address)))
    return _utc(session.scalar(stmt))


def _failures(session: Session, rule: Throttle, *, name: str | None, address: str | None,
              now: dt.datetime) -> tuple[int, dt.datetime | None]:
    """Failed (checked) logins of one key within the rule's window: their number and the latest."""
    since = now - rule.window
    if rule.since_success:
        ok = _last(session, "login", name=name, address=address, before=now)
        since = max(since, ok) if ok is not None else since
    stmt = select(func.count(), func.max(AuditEvent.at)).where(
        AuditEvent.action == "login_failed", AuditEvent.at > since, AuditEvent.at <= now)
    if name is not None:
        stmt = stmt.where(AuditEvent.actor == name)
    if address is not None:
        stmt = stmt.where(AuditEvent.detail.like(_address_like(address)))
    n, latest = session.execute(stmt).one()
    return int(n or 0), _utc(latest)


def _waits(session: Session, *, name: str, address: str, now: dt.datetime) -> dict[str, dt.datetime]:
    """Until when each throttled key makes attempts wait (only keys that make them wait now or later)."""
    keys: list[tuple[Throttle, str | None, str | None]] = [(BY_NAME_AND_ADDRESS, name, address),
                                                           (BY_ADDRESS, None, address)]
    trusted = _last(session, "login", name=name, address=address, before=now)
    if trusted is None or now - trusted > TRUSTED_FOR:
        keys.append((BY_NAME, name, None))
    out = {}
    for rule, key_name, key_address in keys:
        n, latest = _failures(session, rule, name=key_name, address=key_address, now=now)
        wait = rule.delay(n)
        if latest is not None and wait > dt.timedelta(0):
            out[rule.scope] = latest + wait
    return out


def login_wait(session: Session, *, name: str, address: str | None = None,
               clock: Callable[[], dt.datetime] = utcnow) -> dt.timedelta:
    """How long the next login attempt of ``name`` from ``address`` must wait (zero: none)."""
    now = clock()
    waits = _waits(session, name=name.strip()[:64], address=normalise_address(address), now=now)
    return max([until - now for until in waits.values()] + [dt.timedelta(0)])


def authenticate(session: Session, *, name: str, password: str, address: str | None = None,
                 clock: Callable[[], dt.datetime] = utcnow) -> Actor | None:
    """The actor for a correct name and password, else ``None`` (and the failure is audited).

    ``address`` is the client's address (``ui.session.client_address``; ``None`` when unknown).
    An attempt that comes before a throttle's delay is over is refused without being checked,
    but takes the same time (see the module docstring). An account with a second step
    (``db.mfa.login_step``) is audited ``password_ok`` rather than ``login``: the code makes the
    login. The caller commits the session (the audit rows are part of the transaction).
    """
    now = clock()
    name = name.strip()[:64]
    where = normalise_address(address)
    waits = _waits(session, name=name, address=where, now=now)
    early = sorted(scope for scope, until in waits.items() if now < until)
    account = session.scalar(select(Account).where(Account.name == name))
    stored = account.password_hash if account is not None and account.password_hash else _DUMMY_HASH
    try:
        with HASH_SLOTS:
            _hasher.verify(stored, password)
        ok = account is not None and account.active and account.password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if early:
        audit.record(session, actor=name, action="login_throttled", at=now, address=where, keys=early)
        return None
    if not ok or account is None:
        audit.record(session, actor=name, action="login_failed", at=now, address=where)
        after = _waits(session, name=name, address=where, now=now)
        if after:
            audit.record(session, actor=name, action="lockout", at=now, address=where, keys=sorted(after),
                         minutes=round(max(u - now for u in after.values()).total_seconds() / 60))
        return None
    if _hasher.check_needs_rehash(account.password_hash or ""):
        with HASH_SLOTS:
            account.password_hash = _hasher.hash(password)
    from db.mfa import login_step  # db.mfa builds on this module

    # a right password is a login only without a second step; else the code makes it one (db.mfa)
    action = "login" if login_step(session, account) == "off" else "password_ok"
    audit.record(session, actor=name, action=action, at=now, address=where)
    return Actor.from_account(account)


SSO_NO_ACCOUNT_MESSAGE = (
    "Your single sign-on worked, but no active Alliance Monitor account has the e-mail address {email} "
    "as an address your provider has verified and that is not yet linked to another sign-on. Ask your "
    "clinic's admin to add this address to your account (Admin → Accounts), then log in again."
)


def authenticate_sso(session: Session, *, email: str | None, email_verified: object = None,
                     issuer: str | None = None, subject: str | None = None, provider: str = "oidc",
                     clock: Callable[[], dt.datetime] = utcnow) -> Actor | None:
    """The actor an OpenID Connect identity logs in as, or ``None`` (refused).

    An account is bound to the provider's identity (``issuer`` and ``subject``, the ID token's
    ``iss`` and ``sub``) at its first single sign-on, and from then on answers to that identity
    alone: a later change of the e-mail at the provider neither locks the person out nor lets
    someone else who gets that address in. An identity not yet bound matches an active, unbound
    account by its whole e-mail address (case-insensitively), and only when the provider says
    the address is verified (``email_verified`` true; a missing claim refuses). The role and
    team come from the account, never from the provider. Every outcome is audited (``login``
    with ``method="sso"``, ``sso_bound`` at the first, or ``login_failed`` with the reason); the
    caller commits.

    Parameters
    ----------
    session : Session
        The caller's transaction.
    email : str or None
        The ``email`` claim of the ID token.
    email_verified : object, optional
        The ``email_verified`` claim: ``True`` (or ``"true"``) is needed to match by e-mail.
    issuer, subject : str, optional
        The ``iss`` and ``sub`` claims; without both, nobody logs in.
    provider : str
        A name for the audit trail.
    clock : callable
        Returns the current UTC time (injectable for tests).
    """
    now = clock()
    address = (email or "").strip().lower()
    who = address[:64] or "(no e-mail)"

    def refuse(reason: str) -> None:
        audit.record(session, actor=who, action="login_failed", at=now, method="sso", provider=provider,
                     reason=reason)

    iss, sub = (issuer or "").strip(), (subject or "").strip()
    if not iss or not sub:
        refuse("the provider gave no issuer or subject")
        return None
    account = session.scalar(select(Account).where(Account.sso_issuer == iss, Account.sso_subject == sub))
    if account is not None:
        if not account.active:
            refuse("the account bound to this identity is deactivated")
            return None
        audit.record(session, actor=account.name, action="login", at=now, method="sso", provider=provider)
        return Actor.from_account(account)
    if email_verified not in (True, "true", "True", 1):
        refuse("the provider has not verified this e-mail")
        return None
    account = session.scalar(select(Account).where(func.lower(Account.email) == address,
                                                    Account.active.is_(True))) if address else None
    if account is None:
        refuse("no active account with this e-mail")
        return None
    if account.sso_subject is not None:
        refuse("the account with this e-mail is bound to another single sign-on identity")
        return None
    account.sso_issuer, account.sso_subject = iss, sub
    audit.record(session, actor=account.name, action="sso_bound", at=now, provider=provider, issuer=iss)
    audit.record(session, actor=account.name, action="login", at=now, method="sso", provider=provider)
    return Actor.from_account(account)
