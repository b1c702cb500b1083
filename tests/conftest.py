"""Shared fixtures: a fresh, migrated database on SQLite and on PostgreSQL.

Database tests take the ``engine`` fixture and so run on both backends. PostgreSQL is the
server at ``ALLIANCE_TEST_PG_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``);
each test gets its own freshly created database there.

The clinic's day (``core.clock``) is the demo clinic's, 2026-11-23 (``sample_data/CATALOG.md``),
for every test and every server a test starts, unless ``ALLIANCE_TODAY`` is already set: what
the demo's flags are (repair windows, missed questionnaires) must not change with the calendar.

With ``CI=true`` nothing may be skipped: a skip is turned into a failure, so a missing
server or browser cannot pass unnoticed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from db.engine import make_engine, upgrade

PG_URL = os.environ.get("ALLIANCE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() == "true"
PROJECT = Path(__file__).resolve().parent.parent
#: The demo clinic's "today"; inherited by the app servers and commands the tests start.
os.environ.setdefault("ALLIANCE_TODAY", "2026-11-23")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """Under CI=true a skipped test is a failed test."""
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.longrepr = f"Skipped under CI=true, which counts as a failure: {reason}"


def _pg_admin_engine() -> Engine:
    return create_engine(PG_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


@pytest.fixture(scope="session")
def pg_available() -> bool:
    try:
        with _pg_admin_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


@pytest.fixture
def pg_url(pg_available: bool) -> Iterator[str]:
    """The URL of a brand-new, empty PostgreSQL database (dropped afterwards)."""
    if not pg_available:
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}; start it (see README) or set ALLIANCE_TEST_PG_URL.")
    name = f"am_test_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'alliance.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated, empty database on each backend."""
    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()


def _seed_demo(url: str) -> None:
    from typer.testing import CliRunner

    from manage import app

    result = CliRunner().invoke(app, ["seed-demo", "--db", url])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def demo_db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database holding the demo clinic, made once per test run on each backend.

    Every test that uses it (the AppTests above all) runs on SQLite and on PostgreSQL.
    """
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}"
        _seed_demo(url)
        yield url
        return
    if not request.getfixturevalue("pg_available"):
        pytest.skip(f"PostgreSQL is not reachable at {PG_URL}; start it (see README) or set ALLIANCE_TEST_PG_URL.")
    with fresh_pg_demo(PG_URL, "am_demo") as url:
        yield url


@contextmanager
def fresh_pg_demo(base_url: str, prefix: str) -> Iterator[str]:
    """A brand-new PostgreSQL database holding the demo clinic, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = _pg_admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base_url).set(database=name).render_as_string(hide_password=False)
    try:
        _seed_demo(url)
        yield url
    finally:
        import streamlit as st

        st.cache_resource.clear()  # the app's cached engines hold pooled connections to it
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def writable_copy(demo_db: str, folder: Path) -> Iterator[str]:
    """A private, writable demo clinic on the backend of ``demo_db`` (which stays untouched):
    a copy of the SQLite file (backup API, consistent), or a freshly seeded PostgreSQL database."""
    if demo_db.startswith("sqlite"):
        import sqlite3

        target = folder / f"demo-copy-{uuid.uuid4().hex[:8]}.db"
        source = sqlite3.connect(demo_db.removeprefix("sqlite:///"))
        with sqlite3.connect(target) as copy:
            source.backup(copy)
        source.close()
        yield f"sqlite:///{target}"
        return
    with fresh_pg_demo(demo_db, "am_copy") as url:
        yield url


@pytest.fixture
def writable_demo(demo_db: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private copy of the demo clinic for a test that writes; the app is pointed at it."""
    with writable_copy(demo_db, tmp_path) as url:
        monkeypatch.setenv("ALLIANCE_DB_URL", url)
        yield url
