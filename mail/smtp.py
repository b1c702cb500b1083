"""SMTP settings from the environment, the alert messages, and sending them (stdlib only).

Settings (docs/notifications.md): ``ALLIANCE_SMTP_HOST`` (without it nothing is sent),
``ALLIANCE_SMTP_PORT`` (default 587 with STARTTLS, else 25), ``ALLIANCE_SMTP_USER`` and
``ALLIANCE_SMTP_PASSWORD`` (log in when a user is set), ``ALLIANCE_SMTP_FROM`` (the sender; needed),
``ALLIANCE_SMTP_STARTTLS`` (``1``/``0``; default ``1`` when a user is set, so a password never
crosses the network in the clear) and ``ALLIANCE_PUBLIC_URL`` (the app's address for the link,
such as ``https://alliance.clinic.org``).

A message names the patient code, the kind of alert and a link to the patient page, nothing
else: no score, no item answer, no therapist's note.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import urlencode

from core.notifications import event_label

NOT_CONFIGURED = ("Alert e-mails are not sent: no SMTP server is configured. Set ALLIANCE_SMTP_HOST and "
                  "ALLIANCE_SMTP_FROM (and ALLIANCE_SMTP_PORT, ALLIANCE_SMTP_USER, ALLIANCE_SMTP_PASSWORD, "
                  "ALLIANCE_SMTP_STARTTLS as your mail server needs) in the environment of the app and of "
                  "manage.py send-notifications; docs/notifications.md explains them.")


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 20.0


def _flag(value: str | None, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def smtp_settings(env: Mapping[str, str] | None = None) -> SmtpSettings | None:
    """The SMTP settings of ``env`` (the process environment), or ``None`` when not configured.

    Raises
    ------
    ValueError
        When a host is set but the sender or the port is wrong.
    """
    env = os.environ if env is None else env
    host = (env.get("ALLIANCE_SMTP_HOST") or "").strip()
    if not host:
        return None
    user = (env.get("ALLIANCE_SMTP_USER") or "").strip() or None
    starttls = _flag(env.get("ALLIANCE_SMTP_STARTTLS"), default=user is not None)
    raw_port = (env.get("ALLIANCE_SMTP_PORT") or "").strip()
    try:
        port = int(raw_port) if raw_port else (587 if starttls else 25)
    except ValueError:
        raise ValueError(f"ALLIANCE_SMTP_PORT is {raw_port!r}, not a port number; set it to the mail server's "
                         f"port, such as 587.") from None
    if not 0 < port < 65536:
        raise ValueError(f"ALLIANCE_SMTP_PORT is {port}, not a port number; set it to the mail server's port, "
                         f"such as 587.")
    sender = (env.get("ALLIANCE_SMTP_FROM") or "").strip()
    if "@" not in sender:
        raise ValueError("ALLIANCE_SMTP_FROM is not set to an e-mail address; set it to the address alert "
                         "e-mails come from, such as alliance-monitor@clinic.org.")
    return SmtpSettings(host=host, port=port, sender=sender, user=user,
                        password=env.get("ALLIANCE_SMTP_PASSWORD") or None, starttls=starttls)


def public_url(env: Mapping[str, str] | None = None) -> str:
    """The app's address for links (``ALLIANCE_PUBLIC_URL``, no trailing slash); empty when unset."""
    env = os.environ if env is None else env
    return (env.get("ALLIANCE_PUBLIC_URL") or "").strip().rstrip("/")


def patient_link(code: str, base: str) -> str:
    """The patient page's address: ``BASE/patient?patient=CODE`` (a bare path without a base)."""
    return f"{base}/patient?{urlencode({'patient': code})}"


_FOOTER = ("This message names only the patient code and the kind of alert; log in to see why. You can "
           "choose immediate e-mails, a daily digest or none under \"My notifications\" in the app's sidebar.")


def alert_message(*, sender: str, to: str, items: list[tuple[str, str]], base_url: str,
                  digest: bool = False) -> EmailMessage:
    """The e-mail telling ``to`` about ``items`` ((patient code, event) pairs): codes, kinds and links.

    One item: "Alliance Monitor: Risk item for P00042"; a digest lists every item on its own line.
    """
    lines = [f"- {code}: {event_label(event)} - {patient_link(code, base_url)}" for code, event in items]
    message = EmailMessage()
    if digest:
        message["Subject"] = f"Alliance Monitor: {len(items)} alert{'s' if len(items) != 1 else ''} today"
        body = ["Alliance Monitor raised these alerts for your patients since your last digest:", "", *lines]
    else:
        ((code, event),) = items
        message["Subject"] = f"Alliance Monitor: {event_label(event)} for {code}"
        body = [f"Alliance Monitor raised an alert for patient {code}: {event_label(event)}.", "",
                f"Open the patient page: {patient_link(code, base_url)}"]
    if not base_url:
        body += ["", "(Open Alliance Monitor and add the address above after the app's own address.)"]
    message["From"] = sender
    message["To"] = to
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1])
    message.set_content("\n".join([*body, "", _FOOTER]) + "\n")
    return message


def open_connection(settings: SmtpSettings) -> smtplib.SMTP:
    """A logged-in SMTP connection (STARTTLS first when configured)."""
    smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    try:
        smtp.ehlo()
        if settings.starttls:
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
        if settings.user:
            smtp.login(settings.user, settings.password or "")
    except BaseException:
        smtp.close()
        raise
    return smtp
