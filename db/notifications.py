"""Alert e-mails: the outbox written with the flags, and what the sending worker reads and marks.

The rules (issue 17):

* :func:`enqueue_new` runs inside ``db.flagstore.refresh_patients``, in the transaction that
  stores the flags: for every alert event that this write raised (``core.notifications``) it
  adds one ``notifications`` row per recipient, so a queued e-mail exists exactly when its flag
  was committed, and a recompute that finds the same flags adds nothing (the unique key and the
  before/after comparison). An account without an e-mail address gets its row marked
  ``undeliverable`` at once (the admin page lists them).
* Sending happens after the commit, by ``manage.py send-notifications`` (``mail.worker``):
  :func:`claim_due` takes the due rows under a short lease (two workers never send the same
  row), :func:`mark_sent` stamps and audits each sent message, :func:`mark_failed` counts the
  attempt and moves ``next_attempt_at`` on by an exponential backoff; after
  :data:`MAX_ATTEMPTS` the row is ``failed``.
* Each account chooses ``immediate``, a daily ``digest`` (one message a day, at
  ``ALLIANCE_DIGEST_HOUR`` UTC, listing codes and kinds) or ``off`` (:func:`set_mode`).

A row holds the flag's key and the event, never a score; messages name the patient code, the
kind and a link only. Every function takes the caller's session and the acting user, and never
commits.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.orm import Session

from core.notifications import alert_events, new_events, recent_events
from db import audit
from db.access import Actor
from db.models import NOTIFY_MODES, Account, Notification, NotificationSetting, Patient, StoredFlag, utcnow
from db.writes import PermissionDenied, _require_admin

#: Attempts before a row is given up as ``failed``.
MAX_ATTEMPTS = 10
#: The first retry waits this long; each further one twice as long, up to :data:`MAX_BACKOFF`.
FIRST_BACKOFF = dt.timedelta(minutes=1)
MAX_BACKOFF = dt.timedelta(hours=6)
#: How long a claimed row is held for the worker that claimed it (a crashed worker's rows come back).
LEASE = dt.timedelta(minutes=10)
#: What the choices are called in the app.
MODE_WORDS = {"immediate": "Immediately", "digest": "Daily digest", "off": "Off"}
NO_EMAIL = "The account has no e-mail address; an admin adds one on the admin page (Accounts)."
_CHUNK = 500


def digest_hour() -> int:
    """The hour of the day (UTC, 0-23) when daily digests go out: ``ALLIANCE_DIGEST_HOUR``, default 7."""
    raw = os.environ.get("ALLIANCE_DIGEST_HOUR", "").strip()
    try:
        hour = int(raw) if raw else 7
    except ValueError:
        hour = 7
    return min(max(hour, 0), 23)


# --------------------------------------------------------------------------- written with the flags
def stored_events(session: Session, patient_ids: list[int]) -> pd.DataFrame:
    """The alert events of the stored flags of ``patient_ids`` (before a write replaces them)."""
    f = StoredFlag.__table__.c
    rows: list = []
    for start in range(0, len(patient_ids), _CHUNK):
        chunk = patient_ids[start:start + _CHUNK]
        rows += session.execute(select(f.patient_id, f.instrument, f.week, f.kind, f.severity, f.status)
                                .where(f.patient_id.in_(chunk), f.severity.in_(("urgent", "high")))).all()
    frame = pd.DataFrame([tuple(r) for r in rows],
                         columns=["patient_id", "instrument", "week", "kind", "severity", "status"])
    return alert_events(frame.astype({"patient_id": "int64", "week": "int64"}))


def enqueue_new(session: Session, *, before: pd.DataFrame, flags: pd.DataFrame, pids: dict[str, int],
                latest_week: pd.Series | None = None) -> int:
    """Queue the e-mails owed for the events of ``flags`` (the freshly computed stored flags,
    patients by code; ``pids`` maps code to id) that ``before`` (:func:`stored_events`) lacked,
    and, given ``latest_week`` (each patient's latest stored week, indexed by id), only those
    about the patient's last weeks (:func:`core.notifications.recent_events`).

    In the caller's transaction (the one that stores ``flags``). Returns how many rows it added.
    """
    if flags.empty:
        return 0
    after = alert_events(flags.assign(patient_id=flags["patient_id"].map(pids).astype("int64")))
    events = new_events(before, after)
    if latest_week is not None:
        events = recent_events(events, latest_week)
    if events.empty:
        return 0
    to = _recipients(session, sorted({int(p) for p in events["patient_id"]}))
    owed = events.merge(to, on="patient_id", how="inner")
    owed = owed[(owed["audience"] == "therapist") | owed["supervisor"]]
    if owed.empty:
        return 0
    have = _queued(session, owed)
    now = utcnow()
    rows: list[dict] = []
    for r in owed.itertuples(index=False):
        key = (int(r.account_id), int(r.patient_id), str(r.instrument), int(r.week), str(r.event))
        if key in have:
            continue
        have.add(key)
        has_email = isinstance(r.email, str) and bool(r.email)
        rows.append({"account_id": key[0], "patient_id": key[1], "instrument": key[2], "week": key[3],
                     "event": key[4], "audience": r.audience, "created_at": now, "next_attempt_at": now,
                     "status": "pending" if has_email else "undeliverable",
                     "last_error": None if has_email else NO_EMAIL, "attempts": 0})
    if rows:
        session.execute(insert(Notification), rows)
    return len(rows)


def _recipients(session: Session, patient_ids: list[int]) -> pd.DataFrame:
    """Who is told about each patient: the therapist, and the active supervisors of the therapist's
    team (``audience``), with their e-mail address."""
    rows: list[Any] = []
    for start in range(0, len(patient_ids), _CHUNK):
        rows += session.execute(select(Patient.id, Account.id, Account.email, Account.team)
                                .join(Account, Account.id == Patient.therapist_id)
                                .where(Patient.id.in_(patient_ids[start:start + _CHUNK]),
                                       Account.active.is_(True))).all()
    therapists = pd.DataFrame([tuple(r) for r in rows], columns=["patient_id", "account_id", "email", "team"])
    teams = sorted({t for t in therapists["team"] if isinstance(t, str) and t})
    sup_rows = session.execute(select(Account.id, Account.email, Account.team).where(
        Account.role == "supervisor", Account.active.is_(True), Account.team.in_(teams))).all() if teams else []
    supervisors = pd.DataFrame([tuple(r) for r in sup_rows], columns=["account_id", "email", "team"])
    bosses = therapists[["patient_id", "team"]].merge(supervisors, on="team", how="inner")
    out = pd.concat([therapists.assign(audience="therapist"), bosses.assign(audience="supervisor")],
                    ignore_index=True)
    return out.drop(columns="team").astype({"patient_id": "int64", "account_id": "int64"})


def _queued(session: Session, owed: pd.DataFrame) -> set[tuple[int, int, str, int, str]]:
    n = Notification
    ids = sorted({int(p) for p in owed["patient_id"]})
    rows: list[Any] = []
    for start in range(0, len(ids), _CHUNK):
        rows += session.execute(select(n.account_id, n.patient_id, n.instrument, n.week, n.event).where(
            n.patient_id.in_(ids[start:start + _CHUNK]))).all()
    return {(int(a), int(p), str(i), int(w), str(e)) for a, p, i, w, e in rows}


def discard_since(session: Session, *, actor: Actor, after_id: int) -> int:
    """Remove the queued e-mails with an id above ``after_id`` (``seed-demo``: a loaded history
    is not news). Admins only. Returns how many were removed."""
    _require_admin(actor)
    done = session.execute(delete(Notification).where(Notification.id > after_id)
                           .execution_options(synchronize_session=False))
    return int(getattr(done, "rowcount", 0) or 0)


def last_id(session: Session) -> int:
    """The highest id in the outbox (0 when empty)."""
    return int(session.scalar(select(func.max(Notification.id))) or 0)


# --------------------------------------------------------------------------- an account's choice
def get_mode(session: Session, *, actor: Actor) -> tuple[str, str | None]:
    """The actor's own choice (``immediate`` when never chosen) and e-mail address."""
    account = _own_account(session, actor)
    mode = session.scalar(select(NotificationSetting.mode).where(NotificationSetting.account_id == account.id))
    return mode or "immediate", account.email


def set_mode(session: Session, *, actor: Actor, mode: str) -> bool:
    """Set the actor's own choice (``NOTIFY_MODES``); audited. Returns False when nothing changed."""
    if mode not in NOTIFY_MODES:
        raise ValueError(f"{mode!r} is not a choice of alert e-mails; choose one of {', '.join(NOTIFY_MODES)}.")
    account = _own_account(session, actor)
    row = session.get(NotificationSetting, account.id)
    old = row.mode if row is not None else "immediate"
    if old == mode:
        return False
    if row is None:
        session.add(NotificationSetting(account_id=account.id, mode=mode, changed_at=utcnow()))
    else:
        row.mode, row.changed_at = mode, utcnow()
    session.flush()
    audit.record(session, actor=actor, action="set_notifications", old=old, new=mode)
    return True


def _own_account(session: Session, actor: Actor) -> Account:
    account = session.get(Account, actor.id) if actor.id else None
    if account is None or not account.active or not actor.active:
        raise PermissionDenied("Alert e-mails belong to a logged-in account; log in with your own account.")
    return account


# --------------------------------------------------------------------------- for the admin page
STATUS_COUNTS = ("pending", "failed", "undeliverable", "sent", "off")


def queue_counts(session: Session, *, actor: Actor) -> dict[str, int]:
    """How many queued e-mails are in each state (:data:`STATUS_COUNTS`). Admins only."""
    _require_admin(actor)
    rows = dict(session.execute(select(Notification.status, func.count()).group_by(Notification.status)).all())
    return {s: int(rows.get(s, 0)) for s in STATUS_COUNTS}


def problem_rows(session: Session, *, actor: Actor, limit: int = 200) -> pd.DataFrame:
    """The queued e-mails that need an admin (failed, undeliverable, or retried), newest first:
    ``account, patient_id, event, status, attempts, created_at, last_error``. Admins only."""
    _require_admin(actor)
    n = Notification
    rows = session.execute(select(Account.name, Patient.code, n.event, n.status, n.attempts, n.created_at,
                                  n.last_error)
                           .join(Account, Account.id == n.account_id).join(Patient, Patient.id == n.patient_id)
                           .where((n.status.in_(("failed", "undeliverable")))
                                  | ((n.status == "pending") & (n.attempts > 0)))
                           .order_by(n.created_at.desc(), n.id.desc()).limit(limit)).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=["account", "patient_id", "event", "status", "attempts",
                                                           "created_at", "last_error"])


# --------------------------------------------------------------------------- for the worker
@dataclass
class Message:
    """One e-mail to send: to whom, and the (row id, patient code, event) it tells."""

    account_id: int
    account: str
    email: str
    digest: bool
    items: list[tuple[int, str, str]] = field(default_factory=list)


def _digest_due(last: dt.datetime | None, now: dt.datetime, hour: int) -> bool:
    """True when today's digest time has come and the last digest went out before it."""
    today = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if now < today:
        return False
    if last is None:
        return True
    last = last if last.tzinfo else last.replace(tzinfo=dt.UTC)
    return last < today


def claim_due(session: Session, *, actor: Actor, now: dt.datetime | None = None) -> list[Message]:
    """The messages due now, their rows leased for :data:`LEASE`. Admins (the worker) only.

    On the way, rows of accounts that chose ``off`` become ``off``, and rows of accounts without
    an e-mail address or no longer active become ``undeliverable``. A digest account's rows
    wait for its next digest time and go as one message.
    """
    _require_admin(actor)
    now = now or utcnow()
    n, s = Notification, NotificationSetting
    rows = session.execute(select(n.id, n.account_id, Account.name, Account.email, Account.active, Patient.code,
                                  n.event, s.mode, s.last_digest_at)
                           .join(Account, Account.id == n.account_id).join(Patient, Patient.id == n.patient_id)
                           .outerjoin(s, s.account_id == n.account_id)
                           .where(n.status == "pending", n.next_attempt_at <= now)
                           .order_by(n.account_id, n.id)).all()
    off = [r.id for r in rows if r.mode == "off"]
    lost = [r.id for r in rows if r.mode != "off" and (not r.email or not r.active)]
    if off:
        session.execute(update(n).where(n.id.in_(off)).values(status="off").execution_options(
            synchronize_session=False))
    if lost:
        session.execute(update(n).where(n.id.in_(lost)).values(status="undeliverable", last_error=NO_EMAIL)
                        .execution_options(synchronize_session=False))
    hour = digest_hour()
    settled = set(off) | set(lost)
    wanted = [r for r in rows if r.id not in settled
              and (r.mode != "digest" or _digest_due(r.last_digest_at, now, hour))]
    if not wanted:
        return []
    claimed = set(session.scalars(
        update(n).where(n.id.in_([r.id for r in wanted]), n.status == "pending", n.next_attempt_at <= now)
        .values(next_attempt_at=now + LEASE).returning(n.id).execution_options(synchronize_session=False)))
    messages: dict[tuple[int, int], Message] = {}
    for r in wanted:
        if r.id not in claimed:
            continue  # another worker has it
        digest = r.mode == "digest"
        key = (r.account_id, 0 if digest else r.id)
        message = messages.setdefault(key, Message(r.account_id, r.name, r.email, digest))
        message.items.append((r.id, r.code, r.event))
    return list(messages.values())


def mark_sent(session: Session, *, actor: Actor, message: Message, now: dt.datetime | None = None) -> None:
    """Stamp the rows of a sent message and audit it (recipient, patient code, kind). Admins only."""
    _require_admin(actor)
    now = now or utcnow()
    ids = [i for i, _, _ in message.items]
    session.execute(update(Notification).where(Notification.id.in_(ids))
                    .values(status="sent", sent_at=now, attempts=Notification.attempts + 1, last_error=None)
                    .execution_options(synchronize_session=False))
    if message.digest:
        row = session.get(NotificationSetting, message.account_id)
        if row is not None:
            row.last_digest_at = now
    for _, code, event in message.items:
        audit.record(session, actor=actor, action="send_notification", patient_code=code,
                     recipient=message.account, kind=event, mode="digest" if message.digest else "immediate")
    session.flush()


def mark_failed(session: Session, *, actor: Actor, message: Message, error: str,
                now: dt.datetime | None = None) -> None:
    """Count a failed attempt at ``message``: retry after the backoff, or ``failed`` after
    :data:`MAX_ATTEMPTS`. ``error`` is the SMTP server's answer (no message content). Admins only."""
    _require_admin(actor)
    now = now or utcnow()
    ids = [i for i, _, _ in message.items]
    for row in session.scalars(select(Notification).where(Notification.id.in_(ids))):
        row.attempts += 1
        row.last_error = error[:500]
        row.next_attempt_at = now + backoff(row.attempts)
        if row.attempts >= MAX_ATTEMPTS:
            row.status = "failed"
    session.flush()


def backoff(attempts: int) -> dt.timedelta:
    """The wait after the ``attempts``-th failed attempt: 1, 2, 4, … minutes, at most 6 hours."""
    return min(FIRST_BACKOFF * (2 ** max(attempts - 1, 0)), MAX_BACKOFF)
