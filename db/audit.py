"""The audit trail: append-only rows, each hash-chained to the one before.

``hash = sha256(prev_hash | at | actor | action | patient_code | detail)`` with the first
row chained to ``GENESIS``. Database triggers refuse UPDATE and DELETE; an edit or removal
made around them (e.g. by editing the file) breaks the chain, which :func:`verify_chain`
reports with the first broken row. No health data go into ``detail`` beyond patient codes,
instruments and weeks, except the old and new value of a changed score.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

import pandas as pd
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from db.access import Actor
from db.models import AuditEvent, utcnow

GENESIS = "0" * 64
#: PostgreSQL advisory-lock key that serialises writers of the chain.
_CHAIN_LOCK = 0x41_4C_4C_49


def _digest(prev_hash: str, at: dt.datetime, actor: str, action: str,
            patient_code: str | None, detail: str) -> str:
    stamp = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    payload = "\x1f".join([prev_hash, stamp, actor, action, patient_code or "", detail])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def record(session: Session, *, actor: Actor | str, action: str,
           patient_code: str | None = None, at: dt.datetime | None = None,
           **detail: Any) -> AuditEvent:
    """Append one event (in the caller's transaction).

    ``action`` is a short verb such as ``login``, ``login_failed``, ``view_patient``,
    ``import``, ``change_score``, ``export``, ``create_account``.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK})
    prev = session.scalar(select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)) or GENESIS
    name = actor if isinstance(actor, str) else actor.name
    at = at or utcnow()
    body = json.dumps(detail, sort_keys=True, default=str, ensure_ascii=False)
    event = AuditEvent(at=at, actor=name, action=action, patient_code=patient_code, detail=body,
                       prev_hash=prev, hash=_digest(prev, at, name, action, patient_code, body))
    session.add(event)
    session.flush()
    return event


def read_events(session: Session, *, since: dt.datetime | None = None) -> pd.DataFrame:
    """The trail as a frame (oldest first), optionally from ``since`` (UTC) on."""
    stmt = select(AuditEvent.id, AuditEvent.at, AuditEvent.actor, AuditEvent.action,
                  AuditEvent.patient_code, AuditEvent.detail).order_by(AuditEvent.id)
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= since)
    rows = session.execute(stmt).all()
    frame = pd.DataFrame(rows, columns=["id", "at", "actor", "action", "patient_code", "detail"])
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame


def verify_chain(session: Session) -> tuple[bool, str]:
    """Check every row's hash and link. Returns ``(ok, message)`` naming the first broken row."""
    prev = GENESIS
    count = 0
    for ev in session.scalars(select(AuditEvent).order_by(AuditEvent.id)).yield_per(2000):
        at = ev.at if ev.at.tzinfo else ev.at.replace(tzinfo=dt.UTC)
        if ev.prev_hash != prev:
            return False, (f"Audit row {ev.id} does not follow the row before it: a row was removed "
                           f"or inserted out of order before id {ev.id}.")
        if _digest(ev.prev_hash, at, ev.actor, ev.action, ev.patient_code, ev.detail) != ev.hash:
            return False, f"Audit row {ev.id} was changed after it was written (its hash does not match)."
        prev = ev.hash
        count += 1
    return True, f"The audit trail is intact: {count} rows, every hash and link checks out."
