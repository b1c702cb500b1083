"""Migrations run once under a lock (db.engine.upgrade): app servers and ``manage.py init-db``
starting together on one fresh database, on SQLite and on PostgreSQL.

Every process here is a real ``python3`` process running ``manage.py init-db`` (the same
``is_current``/``upgrade`` path app.py takes through ``ui.session.get_engine``). A process is
released by a file the test creates, so several can be started at the same moment, and one can
be held in the middle of its migration (after its first table, before the rest) until the test
lets it go. No assertion depends on timing.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from db.engine import MIGRATION_LOCK_KEY, is_current, make_engine, migration_lock_path, upgrade

ROOT = Path(__file__).resolve().parent.parent.parent
WAIT = 60.0  # seconds before a step that never happens counts as a failure

#: One migrating process: heavy imports first, then "<name>.ready"; waits for "<name>.go" (or
#: "all.go"), then runs `manage.py init-db --db URL`. With "pause" it stops after the first table
#: of the migration, writes "<name>.paused" and waits for "resume".
CHILD = r"""
import sys, time
from pathlib import Path

folder, name, url, mode = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]

def wait_for(*paths):
    deadline = time.monotonic() + 120
    while not any(p.exists() for p in paths):
        if time.monotonic() > deadline:
            sys.exit(f"{name}: gave up waiting for {paths}")
        time.sleep(0.01)

import manage
from sqlalchemy import Engine, event

if mode == "pause":
    paused = []

    @event.listens_for(Engine, "after_cursor_execute")
    def _hold(conn, cursor, statement, parameters, context, executemany):
        sql = statement.lstrip().upper()
        if not paused and sql.startswith("CREATE TABLE") and "ALEMBIC_VERSION" not in sql:
            paused.append(True)
            (folder / f"{name}.paused").touch()
            wait_for(folder / "resume")

(folder / f"{name}.ready").touch()
wait_for(folder / f"{name}.go", folder / "all.go")
manage.app(["init-db", "--db", url], prog_name="manage.py")
"""


def _wait_until(condition: Callable[[], bool], what: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}\n" + _outputs(procs))
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            pytest.fail(f"a process ended while waiting for {what}\n" + _outputs(procs))
        time.sleep(0.02)


def _outputs(procs: list[subprocess.Popen]) -> str:
    out = []
    for p in procs:
        if p.poll() is None:
            out.append(f"pid {p.pid}: still running")
        else:
            out.append(f"pid {p.pid}: exit {p.returncode}\n{p.stdout.read() if p.stdout else ''}")
    return "\n".join(out)


@contextmanager
def migrators(folder: Path, url: str, modes: list[str]) -> Iterator[list[subprocess.Popen]]:
    """Start one child per mode, wait until each is ready; kill whatever is left at the end."""
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(folder), f"p{i}", url, mode], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i, mode in enumerate(modes)]
    try:
        _wait_until(lambda: all((folder / f"p{i}.ready").exists() for i in range(len(procs))),
                    "every process has started", procs)
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=30)


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    results = []
    for p in procs:
        try:
            output, _ = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            output, _ = p.communicate()
        results.append((p.returncode, output))
    return results


def _reference_tables(tmp_path: Path) -> set[str]:
    """The tables the migrations make, from one undisturbed upgrade of a scratch database."""
    engine = make_engine(f"sqlite:///{tmp_path / 'reference.db'}")
    upgrade(engine)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    return tables


def _assert_migrated_once(url: str, tmp_path: Path) -> None:
    engine = make_engine(url)
    try:
        assert is_current(engine)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
        assert set(inspect(engine).get_table_names()) == _reference_tables(tmp_path)
    finally:
        engine.dispose()


def test_four_processes_starting_at_once_migrate_a_fresh_database_once(db_url: str, tmp_path: Path) -> None:
    with migrators(tmp_path, db_url, ["plain"] * 4) as procs:
        (tmp_path / "all.go").touch()
        results = _finish(procs)
    assert [code for code, _ in results] == [0] * 4, results
    assert all("is at the newest schema" in out for _, out in results), results
    _assert_migrated_once(db_url, tmp_path)


def _lock_is_held(url: str) -> bool:
    """Whether someone holds the migration lock of ``url`` (tried without waiting)."""
    engine = make_engine(url)
    try:
        path = migration_lock_path(engine)
        if path is not None:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            finally:
                os.close(fd)  # closing also drops the lock if we got it
            return False
        with engine.connect() as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY}).scalar_one()
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
            return not got
    finally:
        engine.dispose()


def _waits_for_the_lock(url: str, pid: int) -> bool:
    """Whether process ``pid`` (or, on PostgreSQL, any session of this database) is queued on the
    migration lock: /proc/locks for the SQLite lock file, pg_locks for the advisory lock."""
    engine = make_engine(url)
    try:
        path = migration_lock_path(engine)
        if path is not None:
            inode = os.stat(path).st_ino
            for line in Path("/proc/locks").read_text().splitlines():
                fields = line.split()
                if "->" in fields and len(fields) >= 7:
                    blocked = fields[fields.index("->") + 1:]  # FLOCK ADVISORY WRITE pid maj:min:inode ...
                    if blocked[0] == "FLOCK" and blocked[3] == str(pid) and blocked[4].endswith(f":{inode}"):
                        return True
            return False
        with engine.connect() as conn:
            return bool(conn.execute(text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND classid::bigint = :hi AND objid::bigint = :lo AND objsubid = 1"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
                {"hi": MIGRATION_LOCK_KEY >> 32, "lo": MIGRATION_LOCK_KEY & 0xFFFFFFFF}).scalar_one())
    finally:
        engine.dispose()


def test_a_second_process_waits_for_a_migration_in_progress_then_finds_it_done(db_url: str, tmp_path: Path) -> None:
    """Fails without the lock: the first process is held half-way through the migration, and the
    lock must be held then, and the second process must be queued on it (without the lock it would
    run the same migration itself and fail on the tables the first one is creating)."""
    if db_url.startswith("sqlite") and not Path("/proc/locks").exists():
        pytest.skip("needs Linux's /proc/locks to see a process queued on the SQLite lock file")
    with migrators(tmp_path, db_url, ["pause", "plain"]) as (first, second):
        (tmp_path / "p0.go").touch()
        _wait_until(lambda: (tmp_path / "p0.paused").exists(), "the first process is half-way", [first, second])
        assert _lock_is_held(db_url), "the migration lock is not held during the migration"
        (tmp_path / "p1.go").touch()
        _wait_until(lambda: _waits_for_the_lock(db_url, second.pid), "the second process waits for the lock",
                    [first, second])
        (tmp_path / "resume").touch()
        results = _finish([first, second])
    assert [code for code, _ in results] == [0, 0], results
    assert not _lock_is_held(db_url)
    _assert_migrated_once(db_url, tmp_path)
