"""Where the database is, how to connect to it, and how to bring its schema up to date.

``ALLIANCE_DB_URL`` (or ``--db`` on the command line, which wins) is any SQLAlchemy URL;
the default is the SQLite file ``data/alliance.db`` in the project folder, created and
migrated on first start. PostgreSQL: ``postgresql+psycopg://user@host/db``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, inspect, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import ORMExecuteState, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

if TYPE_CHECKING:
    from alembic.config import Config

PROJECT_DIR = Path(__file__).resolve().parent.parent
DEFAULT_SQLITE = PROJECT_DIR / "data" / "alliance.db"
URL_ENV = "ALLIANCE_DB_URL"


def database_url(explicit: str | None = None) -> str:
    """The URL to use: ``explicit`` (``--db``), else ``$ALLIANCE_DB_URL``, else the SQLite default."""
    url = explicit or os.environ.get(URL_ENV) or f"sqlite:///{DEFAULT_SQLITE}"
    try:
        make_url(url)
    except ArgumentError as exc:
        raise ValueError(
            f"The database URL {url!r} is not a SQLAlchemy URL; use e.g. sqlite:///path/to/file.db "
            f"or postgresql+psycopg://user@host/db."
        ) from exc
    return url


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str | None = None) -> Engine:
    """An engine for ``url`` (see :func:`database_url`); SQLite gets WAL and foreign keys."""
    url = database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


#: The newest migration in db/migrations/versions. :func:`is_current` compares the database with
#: it without importing Alembic (0.13 s of every command's start, issue 19); a new migration
#: changes it too (tests/db/test_migrations.py checks it against Alembic's own head).
SCHEMA_HEAD = "0011_patient_summaries"


def alembic_config(engine: Engine | None = None) -> Config:
    """Alembic configuration pointing at ``db/migrations`` (and at ``engine`` when given)."""
    from alembic.config import Config

    # stdout as it is now: Config's default is sys.stdout as it was when alembic.config was first
    # imported, which (imported lazily) can be a stream already closed, e.g. a CLI test runner's
    cfg = Config(str(PROJECT_DIR / "alembic.ini"), stdout=sys.stdout)
    cfg.set_main_option("script_location", str(PROJECT_DIR / "db" / "migrations"))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


#: The PostgreSQL advisory-lock key that serialises migrations (any fixed 64-bit number; this one
#: spells "AllMigra" in ASCII). Every process that upgrades the same database takes this lock.
MIGRATION_LOCK_KEY = 0x416C6C4D69677261


def migration_lock_path(engine: Engine) -> Path | None:
    """The lock file of a SQLite database (``<database file>.migrate.lock`` beside it), or ``None``
    for another backend or an in-memory database."""
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query.get("mode") == "memory":
        return None
    return Path(database).with_name(Path(database).name + ".migrate.lock")


@contextmanager
def migration_lock(engine: Engine) -> Iterator[None]:
    """Hold the database's migration lock (blocking until it is free) for the ``with`` block.

    PostgreSQL: a session-level ``pg_advisory_lock(MIGRATION_LOCK_KEY)`` on a connection of its
    own, kept open (in autocommit, so it is never idle in a transaction) while the block runs.
    SQLite: an exclusive ``flock`` on :func:`migration_lock_path`. Either is released when the
    block ends, and by the operating system or the server if the process dies holding it.
    Other backends: no lock.
    """
    backend = engine.url.get_backend_name()
    if backend == "postgresql":
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql(f"SELECT pg_advisory_lock({MIGRATION_LOCK_KEY})")
            try:
                yield
            finally:
                try:
                    conn.exec_driver_sql(f"SELECT pg_advisory_unlock({MIGRATION_LOCK_KEY})")
                except Exception:
                    conn.invalidate()  # never hand a connection that may hold the lock back to the pool
                    raise
        return
    path = migration_lock_path(engine)
    if path is None:
        yield
        return
    import fcntl  # POSIX; the app is deployed on Linux

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema to ``revision`` (default: the newest migration).

    Runs under :func:`migration_lock`, so app servers and ``manage.py`` commands starting together
    on one database migrate it once: whoever gets the lock first migrates; the others wait, find
    the database current and do nothing. (Alembic itself would also find nothing left to do, but
    only after the lock; without it two processes would both create the same tables.)
    """
    with migration_lock(engine):
        if revision in ("head", "heads") and is_current(engine):
            return
        from alembic import command

        command.upgrade(alembic_config(engine), revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Downgrade the schema to ``revision`` (``base`` removes every table)."""
    from alembic import command

    command.downgrade(alembic_config(engine), revision)


def is_current(engine: Engine) -> bool:
    """True when the database is at the newest migration (:data:`SCHEMA_HEAD`)."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return False
        return list(conn.execute(text("SELECT version_num FROM alembic_version")).scalars()) == [SCHEMA_HEAD]


#: Tables whose changes alter what a page shows; a write to any of them bumps ``data_revision``.
WATCHED_TABLES = frozenset({"scores", "patients", "flag_notes", "accounts", "flags", "rule_sets"})


def bump_revision(session: Session) -> None:
    """Move the ``data_revision`` counter on (in the session's transaction).

    Called by the session events below; a write that goes around the ORM (a raw ``COPY`` or a
    driver-level ``executemany``) must call it itself.
    """
    from db.models import DataRevision

    session.connection().execute(update(DataRevision).where(DataRevision.id == 1)
                                 .values(n=DataRevision.n + 1))


def _before_flush(session: Session, _context: object, _instances: object) -> None:
    # Before the flush, so that every write path locks the counter row *first* (a fixed lock
    # order: no deadlock between an ORM insert and a bulk statement on PostgreSQL).
    changed = chain(session.new, session.dirty, session.deleted)
    if any(getattr(obj, "__tablename__", None) in WATCHED_TABLES for obj in changed):
        bump_revision(session)


def _do_orm_execute(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(state.statement, "table", None)
        if getattr(table, "name", None) in WATCHED_TABLES:
            bump_revision(state.session)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine``; callers own the transaction.

    Every write to a watched table (ORM objects or bulk ``insert``/``update``/``delete``
    statements) bumps the one-row ``data_revision`` counter in the same transaction, which
    ``db.queries.data_version`` reads.
    """
    factory = sessionmaker(engine, expire_on_commit=False)
    event.listen(factory, "before_flush", _before_flush)
    event.listen(factory, "do_orm_execute", _do_orm_execute)
    return factory


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any error."""
    with session_factory(engine).begin() as session:
        yield session
