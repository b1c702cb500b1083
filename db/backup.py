"""Backup and restore of the whole database, audit trail and accounts included.

SQLite: the online backup API (``sqlite3.Connection.backup``) copies a consistent snapshot
even while the app is writing, and a checksum file ``FILE.sha256`` is written beside the
copy. A restore first checks the copy (the checksum when the ``.sha256`` file is there, which
catches any changed byte; ``PRAGMA integrity_check``; an Alliance Monitor schema; an intact
audit chain) and refuses a damaged file, leaving the database as it was.

PostgreSQL: use the server's own tools (``pg_dump --format=custom`` / ``pg_restore``), as
docs/operations.md describes; this module says so instead of pretending.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session

from db import audit

PG_MESSAGE = ("backup and restore here handle the embedded SQLite database; for PostgreSQL use "
              "pg_dump --format=custom and pg_restore as docs/operations.md describes.")


def _sqlite_path(engine: Engine) -> str:
    if engine.dialect.name != "sqlite" or not engine.url.database:
        raise ValueError(f"This database is {engine.dialect.name}: {PG_MESSAGE}")
    return engine.url.database


def checksum_path(path: Path) -> Path:
    """Where the checksum of backup ``path`` is kept (``FILE.sha256``, sha256sum format)."""
    return Path(f"{path}.sha256")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_copy(path: Path) -> str:
    if not path.is_file():
        raise ValueError(f"{path}: no such file; check the path.")
    sums = checksum_path(path)
    if sums.is_file():
        expected = sums.read_text(encoding="utf-8").split()[0] if sums.read_text(encoding="utf-8").split() else ""
        if _sha256(path) != expected:
            raise ValueError(f"{path} is damaged: its bytes no longer match the checksum in {sums.name} written "
                             f"when the backup was made; it cannot be restored. Use another backup.")
        checked = "The checksum matches. "
    else:
        checked = f"No {sums.name} beside the copy, so only its structure was checked. "
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            status = con.execute("PRAGMA integrity_check").fetchone()[0]
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path} is not a readable SQLite database ({exc}); it cannot be restored.") from exc
    if status != "ok":
        raise ValueError(f"{path} is damaged (integrity check: {status}); it cannot be restored.")
    if not {"alembic_version", "scores", "audit_events", "accounts"} <= tables:
        raise ValueError(f"{path} is not an Alliance Monitor backup (tables are missing); it cannot be restored.")
    check = create_engine(f"sqlite:///{path}")
    try:
        with Session(check) as session:
            ok, message = audit.verify_chain(session)
    finally:
        check.dispose()
    if not ok:
        raise ValueError(f"{path}: {message} The copy was tampered with; it cannot be restored.")
    return checked + message


def backup_database(engine: Engine, target: Path) -> str:
    """Write a consistent copy of the database to ``target`` and check it."""
    source = _sqlite_path(engine)
    target = Path(target)
    if target.exists():
        raise ValueError(f"{target} exists already; name a new file so no backup is overwritten.")
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    try:
        with dst:
            src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    finally:
        dst.close()
        src.close()
    checksum_path(target).write_text(f"{_sha256(target)}  {target.name}\n", encoding="utf-8")
    message = _check_copy(target)
    return f"Backed up to {target} ({target.stat().st_size / 1e6:.1f} MB). {message}"


def restore_database(engine: Engine, source: Path) -> str:
    """Replace the database with the copy at ``source`` after checking it."""
    target = _sqlite_path(engine)
    message = _check_copy(Path(source))
    engine.dispose()
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        with dst:
            src.backup(dst)
    finally:
        dst.close()
        src.close()
    return f"Restored the database from {source}. {message}"
