"""Integration clients of the FHIR endpoint: bearer tokens an admin creates, lists and revokes.

A treatment platform posts QuestionnaireResponse resources to ``POST /fhir/QuestionnaireResponse``
(``ui.fhir_http``) with ``Authorization: Bearer TOKEN``. The rules:

* :func:`create_client` (admins only) makes a random token (``secrets.token_urlsafe``, 256 bits)
  and stores only its SHA-256; the token is returned once, to be shown once;
* :func:`authenticate` answers a client for a live token and ``None`` for a missing, unknown or
  revoked one (the hashes are compared with ``hmac.compare_digest``); every refusal is audited
  (``api_auth_failed``), a success stamps ``last_used_at``;
* :func:`revoke_client` (admins only) ends a client at once; the row stays (the audit trail
  names it);
* a client may only write scores: :func:`client_actor` is the actor the import path runs under,
  named ``api:NAME`` in the audit trail (no account name holds a colon), and ``can_replace``
  decides whether it may overwrite a stored score with another value.

Every function takes the caller's session and never commits.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import select
from sqlalchemy.orm import Session

from db import audit
from db.access import Actor
from db.models import ApiClient, utcnow
from db.writes import _require_admin

#: A client name: 1-48 letters, digits, dots, dashes or underscores, starting with a letter or digit.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")
#: Longest accepted token (a real one is 43 characters after the prefix): longer input is refused unread.
MAX_TOKEN_CHARS = 128
TOKEN_PREFIX = "amc_"
COLUMNS = ["name", "can_replace", "created_at", "created_by", "last_used_at", "revoked_at"]


@dataclass(frozen=True)
class Client:
    """A live API client, as the HTTP layer sees it (never the ORM row)."""

    id: int
    name: str
    can_replace: bool


def token_hash(token: str) -> str:
    """The SHA-256 hex digest stored for ``token``."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def client_actor(client: Client) -> Actor:
    """The actor the import path runs under for ``client`` (``api:NAME`` in the audit trail).

    It has the admin role because the import path (``db.writes.plan_import``) is an admin's
    action; the HTTP layer calls nothing but that path with it, so a client can write scores
    and read nothing.
    """
    return Actor(id=0, name=f"api:{client.name}", role="admin")


def create_client(session: Session, *, actor: Actor, name: str, can_replace: bool = False) -> tuple[Client, str]:
    """Add a client; returns it and its token (shown once: only the hash is stored).

    Raises
    ------
    ValueError
        For a malformed name or one that a client (live or revoked) already has.
    PermissionDenied
        When ``actor`` is not an active admin.
    """
    _require_admin(actor)
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise ValueError("A client name is 1-48 letters, digits, dots, dashes or underscores (such as "
                         "treatment-platform); choose another name.")
    if session.scalar(select(ApiClient.id).where(ApiClient.name == name)) is not None:
        raise ValueError(f"There is already an API client named {name} (revoked clients keep their name); "
                         f"choose another name.")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiClient(name=name, token_hash=token_hash(token), can_replace=bool(can_replace), created_at=utcnow(),
                    created_by=actor.name)
    session.add(row)
    session.flush()
    audit.record(session, actor=actor, action="create_api_client", client=name, can_replace=bool(can_replace))
    return Client(row.id, row.name, row.can_replace), token


def list_clients(session: Session, *, actor: Actor) -> pd.DataFrame:
    """Every client (live and revoked), oldest first: :data:`COLUMNS`. Admins only."""
    _require_admin(actor)
    rows = session.execute(select(ApiClient.name, ApiClient.can_replace, ApiClient.created_at,
                                  ApiClient.created_by, ApiClient.last_used_at, ApiClient.revoked_at)
                           .order_by(ApiClient.created_at, ApiClient.id)).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=COLUMNS)


def revoke_client(session: Session, *, actor: Actor, name: str) -> None:
    """End client ``name`` at once: its token is refused from the next request on. Admins only.

    Raises
    ------
    ValueError
        When there is no such client or it is already revoked.
    """
    _require_admin(actor)
    row = session.scalar(select(ApiClient).where(ApiClient.name == name))
    if row is None:
        raise ValueError(f"There is no API client named {name}; list them with manage.py api-clients.")
    if row.revoked_at is not None:
        raise ValueError(f"The API client {name} was already revoked on {row.revoked_at:%Y-%m-%d %H:%M} UTC; "
                         f"nothing changed.")
    row.revoked_at = utcnow()
    session.flush()
    audit.record(session, actor=actor, action="revoke_api_client", client=name)


def authenticate(session: Session, *, token: str | None, address: str | None = None) -> Client | None:
    """The live client holding ``token``, else ``None`` (missing, unknown or revoked; audited)."""
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isprintable():
        _refused(session, reason="missing" if not token else "unknown", address=address)
        return None
    digest = token_hash(token)
    row = session.scalar(select(ApiClient).where(ApiClient.token_hash == digest))
    if row is None or not hmac.compare_digest(row.token_hash, digest):
        _refused(session, reason="unknown", address=address)
        return None
    if row.revoked_at is not None:
        _refused(session, reason="revoked", address=address, client=row.name)
        return None
    row.last_used_at = utcnow()
    session.flush()
    return Client(row.id, row.name, row.can_replace)


def _refused(session: Session, *, reason: str, address: str | None, client: str | None = None) -> None:
    audit.record(session, actor=f"api:{client}" if client else "api", action="api_auth_failed", reason=reason,
                 address=address)
