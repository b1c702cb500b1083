"""A local SMTP server for the alert e-mail tests (aiosmtpd), on a free port of 127.0.0.1."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes
from email.message import Message

from aiosmtpd.controller import Controller

from mail.smtp import SmtpSettings


class Inbox:
    """An aiosmtpd handler keeping every message it accepts; ``refuse`` answers DATA with a 4xx."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []
        self.refuse = False

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        if self.refuse:
            return "451 4.3.0 Mail server busy, try again later"
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def local_smtp() -> Iterator[tuple[Inbox, SmtpSettings]]:
    """A running server and the settings that reach it."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield inbox, SmtpSettings(host="127.0.0.1", port=controller.port, sender="monitor@clinic.test")
    finally:
        controller.stop()


def text_of(message: Message) -> str:
    """The subject and the body of a received message."""
    return str(message["Subject"]) + "\n" + message.get_payload(decode=True).decode("utf-8")
