"""The worker that sends the outbox (``manage.py send-notifications``).

One pass (:func:`send_due`): claim the due messages (``db.notifications.claim_due``, in a short
transaction of its own), open one SMTP connection, send each message and mark it sent (audited)
or failed (retried later, with backoff) in a transaction of its own. Nothing here runs inside a
write: a slow or broken mail server delays e-mails, never a score.

Delivery is at least once: a message the server accepted whose "sent" mark then failed to commit
goes again after the lease (``db.notifications.LEASE``).
"""

from __future__ import annotations

import datetime as dt
import smtplib
from dataclasses import dataclass

from sqlalchemy import Engine

from db import notifications
from db.access import SYSTEM
from db.engine import transaction
from mail.smtp import SmtpSettings, alert_message, open_connection

#: What a failed send may raise: the server's refusals and the network's.
SEND_ERRORS = (smtplib.SMTPException, OSError)


@dataclass(frozen=True)
class PassResult:
    """What one pass did: messages sent and failed (each message may tell several alerts)."""

    sent: int = 0
    failed: int = 0
    last_error: str | None = None


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def send_due(engine: Engine, *, settings: SmtpSettings, base_url: str, now: dt.datetime | None = None) -> PassResult:
    """Send every message due at ``now`` once; returns the counts."""
    with transaction(engine) as session:
        messages = notifications.claim_due(session, actor=SYSTEM, now=now)
    if not messages:
        return PassResult()
    sent = failed = 0
    last_error = None
    smtp: smtplib.SMTP | None = None
    unreachable: str | None = None  # the server could not be reached: the rest of this pass waits too
    for message in messages:
        email = alert_message(sender=settings.sender, to=message.email, base_url=base_url, digest=message.digest,
                              items=[(code, event) for _, code, event in message.items])
        try:
            if unreachable:
                raise ConnectionError(unreachable)
            if smtp is None:
                try:
                    smtp = open_connection(settings)
                except SEND_ERRORS as exc:
                    unreachable = _error_text(exc)
                    raise
            smtp.send_message(email)
        except SEND_ERRORS as exc:
            last_error = unreachable or _error_text(exc)
            failed += 1
            if isinstance(exc, smtplib.SMTPServerDisconnected):
                smtp = None  # reconnect for the next message
            with transaction(engine) as session:
                notifications.mark_failed(session, actor=SYSTEM, message=message, error=last_error, now=now)
            continue
        with transaction(engine) as session:
            notifications.mark_sent(session, actor=SYSTEM, message=message, now=now)
        sent += 1
    if smtp is not None:
        try:
            smtp.quit()
        except SEND_ERRORS:
            smtp.close()
    return PassResult(sent=sent, failed=failed, last_error=last_error)
