"""No health data in application logs.

A sentinel score (an unusual WAI-SR value) is planted in a fresh database; then the command line
(import, a bad import, flags, export, analyze, audit), the pages in AppTest and a real server
driven by a real browser all run. Their standard error and every log record are searched for
the sentinel: it must not be there. (Standard output of ``flags``/``export`` is the requested
data itself, so it is not searched.)
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from ui import cache as ui_cache

ROOT = Path(__file__).resolve().parent.parent
SENTINEL = "41.73919"
SENTINEL_PATIENT = "P77001"
PASSWORD = "sentinel test passphrase"
#: The sentinel as it might be printed: 41.73919, 41.7392, 41.739…
PATTERN = re.compile(r"41\.739")


def _cli(*args: str, db: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "manage.py", *args, "--db", db], cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def sentinel_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[str]]]:
    """(database URL, standard errors of the CLI runs that built and read it)."""
    folder = tmp_path_factory.mktemp("logs")
    db = f"sqlite:///{folder / 'sentinel.db'}"
    rows = [f"{SENTINEL_PATIENT},therapist.zed,{w},WAI-SR,{s}" for w, s in
            [(1, 44), (2, 45), (3, 46), (4, 44), (5, 42), (6, 30)]]  # week 6: a rupture
    rows += [f"{SENTINEL_PATIENT},therapist.zed,{w},SPIN,{40 - w}" for w in range(1, 7)]
    good = folder / "good.csv"
    good.write_text("patient_id,therapist_id,week,instrument,score\n" + "\n".join(rows) + "\n", encoding="utf-8")
    bad = folder / "bad.csv"  # the sentinel in an invalid row: the error names row and column only
    bad.write_text("patient_id,therapist_id,week,instrument,score\n"
                   f"{SENTINEL_PATIENT},therapist.zed,0,WAI-SR,{SENTINEL}\n"
                   f"{SENTINEL_PATIENT},therapist.zed,8,PHQ-9,{SENTINEL}\n", encoding="utf-8")
    stderrs = []
    result = _cli("import-scores", str(good), db=db)
    assert result.returncode == 0, result.stderr
    stderrs.append(result.stderr)
    _plant_sentinel(db)
    for args, stdin, code in [
        (("refresh-flags",), None, 0),
        (("import-scores", str(bad)), None, 2),
        (("create-user", "therapist.zed", "--role", "therapist", "--password-stdin"), PASSWORD + "\n", 0),
        (("flags",), None, 0), (("flags", "--format", "json"), None, 0),
        (("export", "--patient", SENTINEL_PATIENT), None, 0), (("analyze",), None, None),
        (("audit",), None, 0), (("audit", "--verify"), None, 0),
    ]:
        result = _cli(*args, db=db, stdin=stdin)
        if code is not None:
            assert result.returncode == code, (args, result.stderr)
        stderrs.append(result.stderr)
    export = _cli("export", "--patient", SENTINEL_PATIENT, db=db)
    assert PATTERN.search(export.stdout)  # the sentinel really is stored and readable
    yield db, stderrs


def _plant_sentinel(db: str) -> None:
    """Week 5's total becomes the sentinel. The validator refuses a total that is not a whole number
    (every registry instrument's total is a sum of whole items, issue 18), so it is written here
    directly, as a score from before that rule would be stored; everything after reads it."""
    from sqlalchemy import update

    from db.engine import make_engine, transaction
    from db.models import Patient, Score

    engine = make_engine(db)
    with transaction(engine) as session:
        pid = session.query(Patient.id).filter(Patient.code == SENTINEL_PATIENT).scalar_subquery()
        session.execute(update(Score).where(Score.patient_id == pid, Score.instrument == "WAI-SR", Score.week == 5)
                        .values(total=float(SENTINEL)))
    engine.dispose()


def test_command_line_stderr_holds_no_health_data(sentinel_db) -> None:  # type: ignore[no-untyped-def]
    _db, stderrs = sentinel_db
    assert any("row 3, column score" in e for e in stderrs), stderrs  # the bad import did complain
    for err in stderrs:
        assert not PATTERN.search(err), err


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record) + (f" {record.args!r}" if record.args else ""))


def test_app_pages_log_no_health_data(sentinel_db, monkeypatch: pytest.MonkeyPatch, capfd) -> None:  # type: ignore[no-untyped-def]
    db, _ = sentinel_db
    monkeypatch.setenv("ALLIANCE_DB_URL", db)
    handler = _Collect()
    loggers = [logging.getLogger(n) for n in ("", "streamlit", "sqlalchemy", "alembic", "db", "core", "ui")]
    for lg in loggers:  # the levels stay what the app sets: this is what a clinic's log would hold
        lg.addHandler(handler)
    try:
        st.cache_data.clear()
        ui_cache.clear()
        import ui.session
        from tests.app.conftest import TEST_COOKIE, actor_for, log_in

        monkeypatch.setattr(ui.session, "request_token", lambda: st.session_state.get(TEST_COOKIE))
        pages = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "pages").glob("*.py"))
        titles = []
        for actor in (actor_for(db, "therapist.zed"), _admin(db)):
            for page in pages:
                at = AppTest.from_file(str(ROOT / page), default_timeout=60)
                log_in(at, db, actor.name)
                at.query_params["patient"] = SENTINEL_PATIENT
                at.run()
                titles += [t.value for t in at.title]
        assert f"Patient {SENTINEL_PATIENT}" in titles  # the sentinel's page really was drawn
    finally:
        for lg in loggers:
            lg.removeHandler(handler)
        st.cache_data.clear()
        ui_cache.clear()
    out, err = capfd.readouterr()
    for line in handler.lines:
        assert not PATTERN.search(line), line
    assert not PATTERN.search(err), err


def _admin(db: str):  # type: ignore[no-untyped-def]
    """An admin actor for the sentinel database (created on first use)."""
    from sqlalchemy import select

    from db.access import SYSTEM, Actor
    from db.engine import make_engine, session_factory, transaction
    from db.models import Account
    from db.writes import create_account

    engine = make_engine(db)
    with session_factory(engine)() as session:
        account = session.scalar(select(Account).where(Account.name == "admin.logs"))
        actor = Actor.from_account(account) if account is not None else None
    if actor is None:
        with transaction(engine) as session:
            actor = Actor.from_account(create_account(session, actor=SYSTEM, name="admin.logs", role="admin",
                                                      password=PASSWORD))
    engine.dispose()
    return actor
