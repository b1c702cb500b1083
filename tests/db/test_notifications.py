"""Alert e-mails (issue 17): queued with the flag in the write's transaction, sent after the commit
to the right people through a real (local, aiosmtpd) SMTP server, naming only the patient code,
the kind and a link; retried after a failing server; "off", digest, re-import, no SMTP settings.
On SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from db import notifications
from db.access import SYSTEM, Actor
from db.engine import session_factory, transaction
from db.models import AuditEvent, Notification, Score
from db.writes import PermissionDenied, create_account
from mail.smtp import SmtpSettings, alert_message, smtp_settings
from mail.worker import send_due
from manage import app
from tests.smtp_server import Inbox, free_port, local_smtp, text_of

runner = CliRunner()
BASE = "https://alliance.clinic.test"
HEADER = "patient_id,therapist_id,week,instrument,score," + ",".join(f"item_{i}" for i in range(1, 10))
# PHQ-9 total 14 with item 9 (self-harm) answered 2: a risk item. Neither 14 nor the answers may be mailed.
RISK_ROW = "PQK,ther.a,1,PHQ-9,14," + ",".join(["1"] * 4 + ["2"] * 5)
CALM_ROW = "PQK,ther.a,2,PHQ-9,4," + ",".join(["1"] * 4 + ["0"] * 5)
LATER = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)  # after every row's next attempt, after the digest hour


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, SmtpSettings]]:
    with local_smtp() as server:
        yield server


def _people(engine: Engine, *, therapist_email: str | None = "anna@clinic.test") -> dict[str, Actor]:
    """ther.a and ther.b (team North) with sup.north; sup.south in another team."""
    people = [("ther.a", "therapist", "North", therapist_email), ("ther.b", "therapist", "North", None),
              ("sup.north", "supervisor", "North", "sara@clinic.test"),
              ("sup.south", "supervisor", "South", "south@clinic.test")]
    with transaction(engine) as session:
        return {n: Actor.from_account(create_account(session, actor=SYSTEM, name=n, role=r, password=None, team=t,
                                                     email=e)) for n, r, t, e in people}


def _import(engine: Engine, tmp_path: Path, *rows: str, replace: bool = False) -> None:
    path = tmp_path / "scores.csv"
    path.write_text(HEADER + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    url = engine.url.render_as_string(hide_password=False)
    result = runner.invoke(app, ["import-scores", str(path), "--db", url] + (["--replace"] if replace else []))
    assert result.exit_code == 0, result.output + result.stderr


def _queue(engine: Engine) -> list[tuple[str, str, str, int]]:
    from db.models import Account

    with session_factory(engine)() as session:
        rows = session.execute(select(Account.name, Notification.event, Notification.status, Notification.attempts)
                               .join(Account, Account.id == Notification.account_id)
                               .order_by(Account.name)).all()
    return [tuple(r) for r in rows]


def test_a_risk_item_mails_the_therapist_and_the_supervisor_code_kind_and_link_only(engine: Engine, tmp_path: Path,
                                                                                    smtp) -> None:  # type: ignore[no-untyped-def]
    inbox, settings = smtp
    _people(engine)
    _import(engine, tmp_path, RISK_ROW)
    # queued in the import's transaction: one row per recipient, nothing sent yet
    assert _queue(engine) == [("sup.north", "risk_item", "pending", 0), ("ther.a", "risk_item", "pending", 0)]
    assert inbox.messages == []
    result = send_due(engine, settings=settings, base_url=BASE, now=LATER)
    assert (result.sent, result.failed) == (2, 0)
    by_rcpt = {rcpt[0]: message for rcpt, message in inbox.messages}
    assert set(by_rcpt) == {"anna@clinic.test", "sara@clinic.test"}  # not sup.south, not ther.b
    for message in by_rcpt.values():
        text = text_of(message)
        assert "PQK" in text and "Risk item" in text and f"{BASE}/patient?patient=PQK" in text
        assert message["From"] == "monitor@clinic.test"
        # nothing clinical: neither the total nor any item answer nor the item's wording
        for absent in ("14", "2", "item 9", "item_9", "self-harm", "PHQ-9", "answered", "score"):
            assert absent not in text.lower().replace("pqk", ""), absent
    assert {s for _, _, s, _ in _queue(engine)} == {"sent"}
    with session_factory(engine)() as session:
        sent = session.execute(select(AuditEvent.patient_code, AuditEvent.detail)
                               .where(AuditEvent.action == "send_notification")).all()
    assert len(sent) == 2 and {c for c, _ in sent} == {"PQK"}
    assert all("14" not in d and "recipient" in d and "risk_item" in d for _, d in sent)
    # a second pass sends nothing more
    assert send_due(engine, settings=settings, base_url=BASE, now=LATER).sent == 0
    assert len(inbox.messages) == 2


def test_a_risk_item_typed_in_the_weekly_entry_is_queued_with_it(engine: Engine, tmp_path: Path, smtp) -> None:  # type: ignore[no-untyped-def]
    from db.entry import save_entry

    inbox, settings = smtp
    people = _people(engine)
    # week 1: total 13, item 9 answered 0 (week 2's 14 is then no reliable deterioration)
    _import(engine, tmp_path, "PQK,ther.a,1,PHQ-9,13," + ",".join(["1"] * 4 + ["2"] * 3 + ["3", "0"]))
    assert _queue(engine) == []
    with transaction(engine) as session:
        save_entry(session, actor=people["ther.a"], code="PQK", instrument="PHQ-9", week=2,
                   items=[1, 1, 1, 1, 2, 2, 2, 2, 2])
    assert _queue(engine) == [("sup.north", "risk_item", "pending", 0), ("ther.a", "risk_item", "pending", 0)]
    # an edit that keeps the risk item raised owes nothing new
    with transaction(engine) as session:
        save_entry(session, actor=people["ther.a"], code="PQK", instrument="PHQ-9", week=2,
                   items=[0, 1, 1, 1, 2, 2, 2, 2, 2], read_version=1, reason="typing error")
    assert len(_queue(engine)) == 2
    # a write that fails (a stale edit) rolls its queue rows back with it
    with pytest.raises(RuntimeError), transaction(engine) as session:
        save_entry(session, actor=people["ther.a"], code="PQK", instrument="PHQ-9", week=3,
                   items=[1, 1, 1, 1, 2, 2, 2, 2, 3])
        raise RuntimeError("the write fails after the flags were stored")
    assert len(_queue(engine)) == 2
    assert send_due(engine, settings=settings, base_url=BASE, now=LATER).sent == 2
    assert sorted(r[0] for r, _ in inbox.messages) == ["anna@clinic.test", "sara@clinic.test"]


def test_reimporting_the_same_file_queues_nothing_new(engine: Engine, tmp_path: Path, smtp) -> None:  # type: ignore[no-untyped-def]
    inbox, settings = smtp
    _people(engine)
    _import(engine, tmp_path, RISK_ROW)
    send_due(engine, settings=settings, base_url=BASE, now=LATER)
    _import(engine, tmp_path, RISK_ROW)
    _import(engine, tmp_path, RISK_ROW, CALM_ROW)  # a new calm week recomputes the risk flag, unchanged
    assert len(_queue(engine)) == 2
    assert send_due(engine, settings=settings, base_url=BASE, now=LATER).sent == 0
    assert len(inbox.messages) == 2


def test_a_file_of_history_tells_of_its_last_weeks_only(engine: Engine, tmp_path: Path, smtp) -> None:  # type: ignore[no-untyped-def]
    """A clinic's first import of a year of history is not a year of e-mails: a risk item in week
    1 of a course now at week 6 is history; one in week 6 is news (core.notifications.recent_events)."""
    _people(engine)
    calm = [CALM_ROW.replace(",2,", f",{w},", 1) for w in range(2, 6)]
    _import(engine, tmp_path, RISK_ROW, *calm, "PQK,ther.a,6,PHQ-9,14," + ",".join(["1"] * 4 + ["2"] * 5))
    with session_factory(engine)() as session:
        weeks = session.scalars(select(Notification.week)).all()
    assert sorted(weeks) == [6, 6]  # therapist and supervisor, for week 6 only


def test_a_failing_server_leaves_the_write_and_the_message_is_retried(engine: Engine, tmp_path: Path,
                                                                     smtp) -> None:  # type: ignore[no-untyped-def]
    inbox, settings = smtp
    _people(engine)
    inbox.refuse = True  # 451 to every message
    _import(engine, tmp_path, RISK_ROW)
    first = send_due(engine, settings=settings, base_url=BASE, now=LATER)
    assert (first.sent, first.failed) == (0, 2) and "451" in (first.last_error or "")
    with session_factory(engine)() as session:
        assert session.scalar(select(func.count()).select_from(Score)) == 1  # the write is intact
        rows = session.scalars(select(Notification)).all()
    assert [(r.status, r.attempts) for r in rows] == [("pending", 1)] * 2
    assert all("451" in (r.last_error or "") for r in rows)
    retry_at = LATER + notifications.backoff(1)
    assert all(r.next_attempt_at.replace(tzinfo=dt.UTC) == retry_at for r in rows)
    # not before the backoff has passed; then the server works again and the next run sends them
    inbox.refuse = False
    assert send_due(engine, settings=settings, base_url=BASE, now=LATER + dt.timedelta(seconds=30)).sent == 0
    again = send_due(engine, settings=settings, base_url=BASE, now=retry_at)
    assert (again.sent, again.failed) == (2, 0)
    assert [(s, a) for _, _, s, a in _queue(engine)] == [("sent", 2)] * 2
    assert len(inbox.messages) == 2


def test_a_refused_connection_counts_an_attempt_and_backs_off(engine: Engine, tmp_path: Path, smtp) -> None:  # type: ignore[no-untyped-def]
    inbox, settings = smtp
    _people(engine)
    _import(engine, tmp_path, RISK_ROW)
    nobody = SmtpSettings(host="127.0.0.1", port=free_port(), sender="monitor@clinic.test")  # nothing listens
    result = send_due(engine, settings=nobody, base_url=BASE, now=LATER)
    assert (result.sent, result.failed) == (0, 2) and "Connection" in (result.last_error or "")
    assert [(s, a) for _, _, s, a in _queue(engine)] == [("pending", 1)] * 2
    later = LATER + notifications.backoff(1)
    assert send_due(engine, settings=settings, base_url=BASE, now=later).sent == 2
    # the backoff doubles, and after MAX_ATTEMPTS a row is given up as failed
    assert [notifications.backoff(n) for n in (1, 2, 3)] == [dt.timedelta(minutes=m) for m in (1, 2, 4)]
    assert notifications.backoff(40) == notifications.MAX_BACKOFF


def test_off_sends_nothing_and_digest_collects_one_message_a_day(engine: Engine, tmp_path: Path, smtp) -> None:  # type: ignore[no-untyped-def]
    inbox, settings = smtp
    people = _people(engine)
    with transaction(engine) as session:
        notifications.set_mode(session, actor=people["sup.north"], mode="off")
        notifications.set_mode(session, actor=people["ther.a"], mode="digest")
        assert notifications.get_mode(session, actor=people["ther.a"]) == ("digest", "anna@clinic.test")
    _import(engine, tmp_path, RISK_ROW, "PZZ,ther.a,1,PHQ-9,14," + ",".join(["1"] * 4 + ["2"] * 5))
    morning = dt.datetime(2030, 1, 1, notifications.digest_hour() - 1, 0, tzinfo=dt.UTC) \
        if notifications.digest_hour() > 0 else None
    if morning is not None:  # before the digest hour: the supervisor's rows go "off", the digest waits
        assert send_due(engine, settings=settings, base_url=BASE, now=morning).sent == 0
    assert send_due(engine, settings=settings, base_url=BASE, now=LATER).sent == 1
    (rcpt, message), = inbox.messages
    assert rcpt == ["anna@clinic.test"]
    text = text_of(message)
    assert "PQK: Risk item" in text and "PZZ: Risk item" in text and "2 alerts" in message["Subject"]
    statuses = {(name, status) for name, _, status, _ in _queue(engine)}
    assert statuses == {("sup.north", "off"), ("ther.a", "sent")}
    # a new alert the same day waits for tomorrow's digest
    _import(engine, tmp_path, "PYY,ther.a,1,PHQ-9,14," + ",".join(["1"] * 4 + ["2"] * 5))
    assert send_due(engine, settings=settings, base_url=BASE, now=LATER + dt.timedelta(hours=2)).sent == 0
    assert send_due(engine, settings=settings, base_url=BASE, now=LATER + dt.timedelta(days=1)).sent == 1
    assert len(inbox.messages) == 2


def test_an_account_without_e_mail_is_marked_undeliverable(engine: Engine, tmp_path: Path, smtp) -> None:  # type: ignore[no-untyped-def]
    inbox, settings = smtp
    _people(engine, therapist_email=None)
    _import(engine, tmp_path, RISK_ROW)
    assert _queue(engine) == [("sup.north", "risk_item", "pending", 0), ("ther.a", "risk_item", "undeliverable", 0)]
    with session_factory(engine)() as session:
        counts = notifications.queue_counts(session, actor=SYSTEM)
        problems = notifications.problem_rows(session, actor=SYSTEM)
    assert counts["undeliverable"] == 1 and counts["pending"] == 1
    assert problems["account"].tolist() == ["ther.a"] and "no e-mail address" in problems["last_error"].iloc[0]
    assert send_due(engine, settings=settings, base_url=BASE, now=LATER).sent == 1


def test_the_queue_is_for_admins_and_a_mode_for_its_own_account(engine: Engine) -> None:
    people = _people(engine)
    with transaction(engine) as session:
        for call in (lambda: notifications.queue_counts(session, actor=people["ther.a"]),
                     lambda: notifications.claim_due(session, actor=people["sup.north"]),
                     lambda: notifications.get_mode(session, actor=SYSTEM)):
            with pytest.raises(PermissionDenied):
                call()
        with pytest.raises(ValueError, match="not a choice"):
            notifications.set_mode(session, actor=people["ther.a"], mode="hourly")


def test_without_smtp_settings_nothing_is_sent_and_the_worker_says_so(engine: Engine, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ALLIANCE_SMTP_HOST", "ALLIANCE_SMTP_FROM"):
        monkeypatch.delenv(name, raising=False)
    _people(engine)
    _import(engine, tmp_path, RISK_ROW)
    url = engine.url.render_as_string(hide_password=False)
    result = runner.invoke(app, ["send-notifications", "--once", "--db", url])
    assert result.exit_code == 1
    assert "no SMTP server is configured" in result.stderr and "ALLIANCE_SMTP_HOST" in result.stderr
    assert {s for _, _, s, _ in _queue(engine)} == {"pending"}  # kept for when it is configured
    assert smtp_settings({}) is None
    with pytest.raises(ValueError, match="ALLIANCE_SMTP_FROM"):
        smtp_settings({"ALLIANCE_SMTP_HOST": "mail.clinic.test"})


def test_the_command_sends_through_the_configured_server(engine: Engine, tmp_path: Path, smtp,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    inbox, settings = smtp
    _people(engine)
    _import(engine, tmp_path, RISK_ROW)
    monkeypatch.setenv("ALLIANCE_SMTP_HOST", settings.host)
    monkeypatch.setenv("ALLIANCE_SMTP_PORT", str(settings.port))
    monkeypatch.setenv("ALLIANCE_SMTP_FROM", settings.sender)
    monkeypatch.setenv("ALLIANCE_PUBLIC_URL", BASE + "/")
    url = engine.url.render_as_string(hide_password=False)
    result = runner.invoke(app, ["send-notifications", "--once", "--db", url])
    assert result.exit_code == 0, result.output + result.stderr
    assert "Sent 2 alert e-mail(s)" in result.output
    assert all(f"{BASE}/patient?patient=PQK" in text_of(m) for _, m in inbox.messages)
    again = runner.invoke(app, ["send-notifications", "--once", "--db", url])
    assert again.output.strip() == "No alert e-mail was due."


def test_a_message_names_only_what_it_is_given() -> None:
    message = alert_message(sender="m@clinic.test", to="t@clinic.test", items=[("P00042", "unrepaired_rupture")],
                            base_url=BASE)
    assert message["Subject"] == "Alliance Monitor: Unrepaired rupture for P00042"
    assert f"{BASE}/patient?patient=P00042" in message.get_content()
