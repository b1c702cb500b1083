"""Two-step login: a time-based one-time code (TOTP, RFC 6238) after the password.

What is stored (``db.models``; migration ``0009_mfa``):

* :class:`~db.models.MfaEnrolment`: the account's TOTP secret, encrypted (Fernet) with a key
  derived from the audit key (:func:`secret_box`: HKDF-SHA256 of ``ALLIANCE_AUDIT_KEY`` or the
  audit key file), when it was confirmed, and the newest 30-second time step a code was accepted
  for: a code is accepted for the current step or one step either side (clock drift), and never
  for a step at or before the last one used, so a code seen over someone's shoulder cannot be
  typed again (replay).
* :class:`~db.models.MfaRecoveryCode`: ten single-use recovery codes (argon2id hashes), shown
  once at enrolment and whenever the user makes new ones.
* :class:`~db.models.MfaChallenge`: the step between a right password and the code, five minutes
  long (:data:`CHALLENGE_TTL`) and used once, tied to the account on the server; the browser
  holds only a random token in the HttpOnly cookie :data:`CHALLENGE_COOKIE` (``ui.web``).
* The clinic setting ``mfa_required_roles`` (table ``settings``): the roles that must use
  two-step login; no row means admins only (:data:`DEFAULT_REQUIRED`). Others may enrol.

Wrong codes count with the password login's throttle (``db.auth``): a wrong code is audited as
``login_failed`` (``method="mfa"``) for the account's name and the client's address, and a right
password alone is audited as ``password_ok``, not ``login``, so it does not reset the count; a
challenge also ends after :data:`MAX_CHALLENGE_FAILURES` wrong codes.

Who may do what (default-deny, :class:`db.writes.PermissionDenied` otherwise): an active account
enrols, renews its recovery codes and turns two-step login off for itself only (off only when its
role does not require it); only an admin resets another account's two-step login
(:func:`reset_mfa`), which also ends every session of that account. Every function runs in the
caller's transaction and never commits.
"""

from __future__ import annotations

import base64
import datetime as dt
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db import audit
from db.access import Actor
from db.auth import normalise_address
from db.models import ROLES, Account, MfaChallenge, MfaEnrolment, MfaRecoveryCode, utcnow
from db.queries import get_setting, is_demo
from db.sessions import revoke_account_sessions, token_id
from db.writes import PermissionDenied, _require_admin, set_setting

__all__ = ["CHALLENGE_COOKIE", "CHALLENGE_TTL", "MfaError", "MfaStatus", "audit_login", "begin_enrolment",
           "confirm_enrolment", "consume_challenge", "disable_mfa", "login_step", "mfa_status", "pending_secret",
           "read_challenge", "renew_recovery_codes", "required_roles", "reset_mfa", "set_required_roles",
           "start_challenge", "verify_code"]

SETTING_KEY = "mfa_required_roles"
#: The roles that must use two-step login when the clinic has not chosen (no ``settings`` row).
DEFAULT_REQUIRED = frozenset({"admin"})
CHALLENGE_COOKIE = "alliance_mfa"
CHALLENGE_TTL = dt.timedelta(minutes=5)
MAX_CHALLENGE_FAILURES = 5
RECOVERY_CODES = 10
STEP_SECONDS = 30
ISSUER = "Alliance Monitor"
#: The cookie token's longest accepted length (a real one is 43 characters).
_MAX_TOKEN = 128
#: Recovery codes carry 50 random bits: argon2id at OWASP's smallest settings is plenty.
_code_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1)

WRONG_CODE_MESSAGE = ("That code is not right. Type the 6-digit code your authenticator app shows now for "
                      "Alliance Monitor (each code works once), or one of your recovery codes.")
CHALLENGE_ENDED_MESSAGE = ("Your two-step login has ended: it took longer than 5 minutes, was already used or had "
                           "too many wrong codes. Log in again with your username and password.")


class MfaError(ValueError):
    """A two-step login action that cannot be done, as a sentence saying how to fix it."""


@dataclass(frozen=True)
class MfaStatus:
    """An account's two-step login as "Two-step login" in the sidebar shows it."""

    enrolled: bool
    required: bool
    confirmed_at: dt.datetime | None
    recovery_left: int


def _utc(at: dt.datetime) -> dt.datetime:
    return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


# --- the clinic setting --------------------------------------------------------------------------

def required_roles(session: Session) -> frozenset[str]:
    """The roles that must use two-step login (``mfa_required_roles``; no row: admins, except on
    the demo clinic, whose accounts share a public password and which ``seed-demo`` sets to none)."""
    value = get_setting(session, SETTING_KEY)
    if value is None:
        return frozenset() if is_demo(session) else DEFAULT_REQUIRED
    return frozenset(r for r in value.split(",") if r in ROLES)


def parse_roles(text: str) -> frozenset[str]:
    """``"admin,supervisor"`` as a set of roles (``"none"`` or empty: none); ``MfaError`` otherwise."""
    words = [w.strip().lower() for w in text.split(",") if w.strip()]
    if words in ([], ["none"]):
        return frozenset()
    unknown = sorted(set(words) - set(ROLES))
    if unknown:
        raise MfaError(f"{', '.join(unknown)} is not a role; name roles from {', '.join(ROLES)} separated by "
                       f"commas (e.g. admin,supervisor), or none.")
    return frozenset(words)


def set_required_roles(session: Session, *, actor: Actor, roles: Iterable[str]) -> frozenset[str]:
    """Set ``mfa_required_roles`` (admins only; audited as a ``setting``). Takes effect at each
    account's next login: a required account without two-step login is sent to enrolment."""
    chosen = parse_roles(",".join(roles))
    set_setting(session, actor=actor, key=SETTING_KEY, value=",".join(r for r in ROLES if r in chosen))
    return chosen


# --- the secret ----------------------------------------------------------------------------------

def secret_box(session: Session) -> Fernet:
    """The Fernet key that encrypts TOTP secrets: HKDF-SHA256 of the audit key (``db.audit``),
    so it lives where the audit key lives, outside the database and its backups."""
    key = audit.signing_key(session)
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                   info=b"alliance-monitor mfa secret v1").derive(key)
    return Fernet(base64.urlsafe_b64encode(derived))


def _secret(session: Session, row: MfaEnrolment, account: Account) -> str:
    try:
        return secret_box(session).decrypt(row.secret.encode("ascii")).decode("ascii")
    except InvalidToken:
        raise MfaError(f"The two-step login secret of {account.name} cannot be read with this server's audit key "
                       f"(was the key replaced?); an admin must reset it (manage.py reset-mfa {account.name}), "
                       f"then {account.name} enrols again.") from None


def _account_of(session: Session, actor: Actor) -> Account:
    account = session.get(Account, actor.id)
    if account is None or not account.active or not actor.active or account.name != actor.name:
        raise PermissionDenied("Only the account's own active login may change its two-step login; log in again.")
    return account


def _enrolment(session: Session, account_id: int) -> MfaEnrolment | None:
    return session.get(MfaEnrolment, account_id)


def provisioning_uri(secret: str, *, name: str) -> str:
    """The ``otpauth://`` URI an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name=ISSUER)


def _qr(uri: str) -> Any:  # a segno.QRCode
    import segno

    return segno.make(uri, error="m")


def qr_svg(uri: str) -> str:
    """The QR code of ``uri`` as an inline SVG element (the page's CSP allows no outside images)."""
    return str(_qr(uri).svg_inline(scale=5, title="QR code for your authenticator app"))


def qr_png(uri: str) -> bytes:
    """The same QR code as PNG bytes (the sidebar's ``st.image``)."""
    import io

    out = io.BytesIO()
    _qr(uri).save(out, kind="png", scale=5)
    return out.getvalue()


def key_for_typing(secret: str) -> str:
    """The secret in groups of four (``ABCD EFGH …``), for typing into an app by hand."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


# --- status, enrolment and recovery codes --------------------------------------------------------

def login_step(session: Session, account: Account | Actor) -> str:
    """What a right password leads to: ``off`` (a session), ``verify`` (type a code) or ``enrol``
    (the role requires two-step login and the account has none yet)."""
    row = _enrolment(session, account.id)
    if row is not None and row.confirmed_at is not None:
        return "verify"
    return "enrol" if account.role in required_roles(session) else "off"


def mfa_status(session: Session, *, actor: Actor) -> MfaStatus:
    """The actor's own two-step login (enrolled, required by the role, since, recovery codes left)."""
    account = _account_of(session, actor)
    row = _enrolment(session, account.id)
    left = 0
    if row is not None and row.confirmed_at is not None:
        left = len(session.scalars(select(MfaRecoveryCode.id).where(
            MfaRecoveryCode.account_id == account.id, MfaRecoveryCode.used_at.is_(None))).all())
    confirmed = row.confirmed_at if row is not None else None
    return MfaStatus(enrolled=confirmed is not None, required=account.role in required_roles(session),
                     confirmed_at=_utc(confirmed) if confirmed else None, recovery_left=left)


def begin_enrolment(session: Session, *, actor: Actor, clock: Callable[[], dt.datetime] = utcnow) -> str:
    """A new TOTP secret for the actor's own account, stored encrypted and waiting for its first
    code (:func:`confirm_enrolment`); returns the secret (base32) for the QR code and manual entry.

    An enrolment already confirmed is refused: turn it off or make new recovery codes instead.
    """
    account = _account_of(session, actor)
    row = _enrolment(session, account.id)
    if row is not None and row.confirmed_at is not None:
        raise MfaError("Two-step login is already on for your account; to move it to a new phone, ask an admin to "
                       "reset it (or turn it off, if your role allows), then enrol again.")
    secret = pyotp.random_base32()
    sealed = secret_box(session).encrypt(secret.encode("ascii")).decode("ascii")
    if row is None:
        session.add(MfaEnrolment(account_id=account.id, secret=sealed, created_at=clock()))
    else:
        row.secret, row.created_at, row.last_step = sealed, clock(), None
    session.flush()
    return secret


def pending_secret(session: Session, *, actor: Actor) -> str | None:
    """The secret of the actor's enrolment that still waits for its first code, else ``None``."""
    account = _account_of(session, actor)
    row = _enrolment(session, account.id)
    return None if row is None or row.confirmed_at is not None else _secret(session, row, account)


def _new_codes(session: Session, account: Account, *, now: dt.datetime) -> list[str]:
    session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.account_id == account.id))
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = base64.b32encode(secrets.token_bytes(10)).decode("ascii").lower()[:10]
        codes.append(f"{raw[:5]}-{raw[5:]}")
        session.add(MfaRecoveryCode(account_id=account.id, code_hash=_code_hasher.hash(raw), created_at=now))
    session.flush()
    return codes


def _matching_step(secret: str, code: str, *, now: dt.datetime, after: int | None) -> int | None:
    """The time step (now ±1) whose TOTP is ``code`` and that comes after ``after``, else ``None``."""
    if len(code) != 6 or not code.isdigit():
        return None
    totp, step = pyotp.TOTP(secret), int(now.timestamp()) // STEP_SECONDS
    found = None
    for candidate in (step - 1, step, step + 1):  # every candidate is compared: no timing hint
        ok = hmac.compare_digest(totp.generate_otp(candidate), code)
        if ok and (after is None or candidate > after) and found is None:
            found = candidate
    return found


def _clean(code: str) -> str:
    return "".join(code.split()).replace("-", "").lower()[:32]


def confirm_enrolment(session: Session, *, actor: Actor, code: str,
                      clock: Callable[[], dt.datetime] = utcnow) -> list[str]:
    """Turn the actor's pending enrolment on with a first right code; returns the ten recovery
    codes (to show once). A wrong code raises :class:`MfaError` (and is audited)."""
    account = _account_of(session, actor)
    row = _enrolment(session, account.id)
    if row is None or row.confirmed_at is not None:
        raise MfaError("There is no two-step login enrolment waiting for a code; start the enrolment again.")
    now = clock()
    step = _matching_step(_secret(session, row, account), _clean(code), now=now, after=row.last_step)
    if step is None:
        audit.record(session, actor=account.name, action="mfa_failed", at=now, during="enrolment")
        raise MfaError("That code is not right. Type the 6-digit code your authenticator app shows now for "
                       "Alliance Monitor after scanning the QR code (or typing the key), and check that the "
                       "phone's clock is set automatically.")
    row.confirmed_at, row.last_step, row.last_used_at = now, step, now
    codes = _new_codes(session, account, now=now)
    audit.record(session, actor=account.name, action="mfa_enrolled", at=now, recovery_codes=len(codes))
    return codes


def renew_recovery_codes(session: Session, *, actor: Actor, clock: Callable[[], dt.datetime] = utcnow) -> list[str]:
    """Ten new recovery codes for the actor's own account (the old ones stop working); audited."""
    account = _account_of(session, actor)
    row = _enrolment(session, account.id)
    if row is None or row.confirmed_at is None:
        raise MfaError("Two-step login is not on for your account, so it has no recovery codes; enrol first.")
    codes = _new_codes(session, account, now=clock())
    audit.record(session, actor=account.name, action="mfa_codes_renewed", recovery_codes=len(codes))
    return codes


def _remove(session: Session, account_id: int) -> bool:
    had = session.execute(delete(MfaEnrolment).where(MfaEnrolment.account_id == account_id))
    session.execute(delete(MfaRecoveryCode).where(MfaRecoveryCode.account_id == account_id))
    session.execute(delete(MfaChallenge).where(MfaChallenge.account_id == account_id))
    return bool(getattr(had, "rowcount", 0))


def disable_mfa(session: Session, *, actor: Actor) -> None:
    """Turn the actor's own two-step login off; refused while their role requires it."""
    account = _account_of(session, actor)
    if account.role in required_roles(session):
        raise MfaError(f"Your clinic requires two-step login for the {account.role} role, so it cannot be turned "
                       f"off; to move it to a new phone, ask an admin to reset it.")
    if _remove(session, account.id):
        audit.record(session, actor=account.name, action="mfa_disabled")


def reset_mfa(session: Session, *, actor: Actor, name: str, reason: str | None = None,
              clock: Callable[[], dt.datetime] = utcnow) -> int:
    """Remove ``name``'s two-step login (a lost phone): admins only. Every session of the account
    ends at once; at its next login a role that requires it enrols again. Returns the number of
    sessions ended. Audited (``mfa_reset``)."""
    _require_admin(actor)
    account = session.scalar(select(Account).where(Account.name == name.strip()))
    if account is None:
        raise MfaError(f"There is no account {name!r}; check the name in the accounts table.")
    if not _remove(session, account.id):
        raise MfaError(f"{account.name} has no two-step login to reset.")
    ended = revoke_account_sessions(session, account_id=account.id, reason="mfa reset", clock=clock)
    audit.record(session, actor=actor, action="mfa_reset", account=account.name, sessions_ended=ended,
                 reason=reason or None)
    return ended


# --- the login step ------------------------------------------------------------------------------

def start_challenge(session: Session, *, account_id: int, purpose: str, next_path: str = "/",
                    clock: Callable[[], dt.datetime] = utcnow) -> str:
    """A new challenge for the account after a right password; returns the cookie's token."""
    if purpose not in ("verify", "enrol"):
        raise ValueError(f"The challenge purpose {purpose!r} does not exist; use verify or enrol.")
    now, token = clock(), secrets.token_urlsafe(32)
    session.add(MfaChallenge(id=token_id(token), account_id=account_id, purpose=purpose, next_path=next_path[:512],
                             created_at=now, expires_at=now + CHALLENGE_TTL, failures=0))
    session.flush()
    return token


def read_challenge(session: Session, *, token: str | None,
                   clock: Callable[[], dt.datetime] = utcnow) -> tuple[MfaChallenge, Actor] | None:
    """The live challenge a cookie token stands for and its account's actor, else ``None``
    (unknown, expired, used, too many wrong codes, or the account deactivated)."""
    if not token or len(token) > _MAX_TOKEN or not token.isascii():
        return None
    row = session.get(MfaChallenge, token_id(token))
    if row is None or row.used_at is not None or clock() >= _utc(row.expires_at):
        return None
    account = session.get(Account, row.account_id)
    if account is None or not account.active or row.failures >= MAX_CHALLENGE_FAILURES:
        return None
    return row, Actor.from_account(account)


def consume_challenge(session: Session, row: MfaChallenge, *, clock: Callable[[], dt.datetime] = utcnow) -> None:
    """Use a challenge up (a login was made of it, or it is given up)."""
    row.used_at = clock()
    session.flush()


def _use_recovery_code(session: Session, account_id: int, code: str, *, now: dt.datetime) -> bool:
    if len(code) != 10:
        return False
    rows = session.scalars(select(MfaRecoveryCode).where(MfaRecoveryCode.account_id == account_id,
                                                         MfaRecoveryCode.used_at.is_(None))).all()
    for row in rows:
        try:
            _code_hasher.verify(row.code_hash, code)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            continue
        row.used_at = now
        return True
    return False


def verify_code(session: Session, *, actor: Actor, code: str, address: str | None = None,
                clock: Callable[[], dt.datetime] = utcnow) -> str | None:
    """Check a second-step code of ``actor``: ``"totp"`` or ``"recovery"`` when right, else ``None``.

    A TOTP is accepted for the current time step or one either side, and only for a step after
    the last one used (replay refused); a recovery code works once. A wrong code is audited as
    ``login_failed`` (``method="mfa"``), so it counts with the password throttle; a right one as
    ``login`` (``method="mfa"``), which, as a password login does, starts the count afresh. The
    caller checks the throttle first (``db.auth.login_wait``).
    """
    now, where = clock(), normalise_address(address)
    row = _enrolment(session, actor.id)
    account = session.get(Account, actor.id)
    cleaned, used = _clean(code), None
    if row is not None and row.confirmed_at is not None and account is not None and account.active:
        step = _matching_step(_secret(session, row, account), cleaned, now=now, after=row.last_step)
        if step is not None:
            row.last_step, row.last_used_at, used = step, now, "totp"
        elif _use_recovery_code(session, actor.id, cleaned, now=now):
            row.last_used_at, used = now, "recovery"
    if used is None:
        audit.record(session, actor=actor.name, action="login_failed", at=now, address=where, method="mfa")
        return None
    audit_login(session, actor=actor, address=address, second=used, clock=lambda: now)
    return used


def audit_login(session: Session, *, actor: Actor, address: str | None, second: str,
                clock: Callable[[], dt.datetime] = utcnow) -> None:
    """Audit the login a second step completed (``login``, ``method="mfa"``; ``second``: totp,
    recovery or enrolment): the password throttle counts afresh from it (``db.auth``)."""
    audit.record(session, actor=actor.name, action="login", at=clock(), address=normalise_address(address),
                 method="mfa", second=second)

