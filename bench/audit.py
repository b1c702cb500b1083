"""Benchmark: audit rows per second with concurrent writers (issue 18).

    python bench/audit.py [--writers 8] [--rows 250] [--sqlite PATH] [--pg URL] [--skip-pg]

Each writer appends ``--rows`` audit rows, one transaction each (``db.audit.record`` of a patient
view: take the chain lock, read the head, sign with the key, insert; a checkpoint every 100
rows), all writers starting together; first as separate processes (two app servers and the
command line), then as threads of one process (one app server's sessions). Prints rows per
second over the wall time from the start signal until the last writer is done, checks that the
chain verifies (no fork: as many distinct previous hashes as rows) and how long that check takes.

SQLite: a fresh database file (``--sqlite``, default a temporary folder). PostgreSQL: a fresh
database created beside ``--pg`` (default the test server) and dropped afterwards.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from common import machine
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from db import audit
from db.engine import make_engine, session_factory, transaction, upgrade
from db.models import AuditEvent

PROJECT = Path(__file__).resolve().parent.parent

WRITER = """
import sys, time
from pathlib import Path
from db import audit
from db.engine import make_engine, transaction
url, name, n, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
engine = make_engine(url)
with engine.connect():  # connected and warm before the start signal
    pass
(folder / f"ready-{name}").touch()
while not (folder / "go").exists():
    time.sleep(0.001)
for i in range(n):
    with transaction(engine) as session:
        audit.record(session, actor=name, action="view_patient", patient_code=f"P{i:05d}")
"""


def with_processes(url: str, writers: int, rows: int) -> float:
    """Seconds from the start signal until every writer process has written its rows."""
    folder = Path(tempfile.mkdtemp(prefix="bench-audit-"))
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, f"w{w}", str(rows), str(folder)], cwd=PROJECT)
             for w in range(writers)]
    while len(list(folder.glob("ready-*"))) < writers:
        time.sleep(0.01)
    began = time.perf_counter()
    (folder / "go").touch()
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"A writer process failed (exit {p.returncode}).")
    return time.perf_counter() - began


def with_threads(url: str, writers: int, rows: int) -> float:
    """Seconds for ``writers`` threads of this process sharing one engine."""
    engine = make_engine(url)
    start = threading.Barrier(writers + 1)
    failures: list[BaseException] = []

    def write(name: str) -> None:
        start.wait()
        try:
            for i in range(rows):
                with transaction(engine) as session:
                    audit.record(session, actor=name, action="view_patient", patient_code=f"P{i:05d}")
        except BaseException as exc:  # reported after the join
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(f"t{w}",)) for w in range(writers)]
    for t in threads:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    engine.dispose()
    if failures:
        raise SystemExit(f"A writer thread failed: {failures[0]!r}")
    return elapsed


def check(url: str) -> str:
    engine = make_engine(url)
    began = time.perf_counter()
    with session_factory(engine)() as session:
        ok, message = audit.verify_chain(session)
        rows = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
        distinct = session.scalar(select(func.count(AuditEvent.prev_hash.distinct()))) or 0
    took = time.perf_counter() - began
    engine.dispose()
    if not ok or rows != distinct:
        raise SystemExit(f"The chain does not verify after the run: {message}")
    return f"chain of {rows} rows verifies, no fork (verify took {took:.2f} s)"


def run(label: str, url: str, writers: int, rows: int) -> None:
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    total = writers * rows
    seconds = with_processes(url, writers, rows)
    print(f"{label}: {writers} writer processes x {rows} rows: {total / seconds:,.0f} rows/s ({seconds:.2f} s)")
    seconds = with_threads(url, writers, rows)
    print(f"{label}: {writers} writer threads   x {rows} rows: {total / seconds:,.0f} rows/s ({seconds:.2f} s)")
    print(f"{label}: {check(url)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--rows", type=int, default=250, help="rows per writer")
    parser.add_argument("--sqlite", type=Path, default=None, help="database file (default: a temporary one)")
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                        help="a PostgreSQL URL; a fresh database is created beside it")
    parser.add_argument("--skip-pg", action="store_true")
    args = parser.parse_args()
    print(f"Machine: {machine()}; key from {audit.key_source()}")
    path = args.sqlite or Path(tempfile.mkdtemp(prefix="bench-audit-")) / "audit.db"
    run("SQLite", f"sqlite:///{path}", args.writers, args.rows)
    if args.skip_pg:
        return
    name = f"am_bench_audit_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        run("PostgreSQL", make_url(args.pg).set(database=name).render_as_string(hide_password=False),
            args.writers, args.rows)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
