"""Backup and restore of the whole database, audit trail and accounts included.

SQLite: the online backup API (``sqlite3.Connection.backup``) copies a consistent snapshot
even while the app is writing, and a checksum file ``FILE.sha256`` is written beside the
copy. A restore first checks the copy (the checksum when the ``.sha256`` file is there, which
catches any changed byte; ``PRAGMA integrity_check``; an Alliance Monitor schema at a revision
this version knows; an intact audit trail, verified with this installation's audit key, and not
emptied while patients remain) and refuses a bad file, leaving the database as it was. After the
copy it brings an older schema up to date and only then writes to the restored database.

Both are audited in the live database: ``backup`` (file, rows and head of the trail copied; the
row seals a checkpoint) after the copy is checked, and ``restore`` after the copy is in place,
recording the head hash and row count of the trail it replaced, so that rows written after the
backup are not lost from the record without a trace.

PostgreSQL: use the server's own tools (``pg_dump --format=custom`` / ``pg_restore``), as
docs/operations.md describes; this module says so instead of pretending.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine

from db import audit
from db.access import SYSTEM, Actor
from db.engine import alembic_config, transaction, upgrade

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


def _check_copy(path: Path) -> tuple[str, audit.ChainReport]:
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
            revisions = ([r[0] for r in con.execute("SELECT version_num FROM alembic_version")]
                         if "alembic_version" in tables else [])
        finally:
            con.close()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"{path} is not a readable SQLite database ({exc}); it cannot be restored.") from exc
    if status != "ok":
        raise ValueError(f"{path} is damaged (integrity check: {status}); it cannot be restored.")
    if not {"alembic_version", "scores", "audit_events", "accounts"} <= tables:
        raise ValueError(f"{path} is not an Alliance Monitor backup (tables are missing); it cannot be restored.")
    _check_revision(path, revisions)
    report = _check_trail(path)
    return checked + report.message, report


def _check_revision(path: Path, revisions: list[str]) -> None:
    """Refuse a copy whose schema revision this version's migrations do not know (a newer version's
    backup, or a damaged one): restoring it would leave every later command failing."""
    known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    unknown = [r for r in revisions if r not in known]
    if len(revisions) != 1 or unknown:
        found = ", ".join(revisions) or "none"
        raise ValueError(f"{path} has schema revision {found}, which this version of Alliance Monitor does not know "
                         f"(it knows {', '.join(sorted(known))}): the backup was made by a newer version or was "
                         f"altered, so it cannot be restored. Restore it with the version that made it, or use "
                         f"another backup.")


def _check_trail(path: Path) -> audit.ChainReport:
    """Verify the copy's audit trail with this installation's key (``None`` if there is none yet)."""
    check = create_engine(f"sqlite:///file:{path}?mode=ro&uri=true")
    try:
        with check.connect() as conn:
            report = audit.check_chain(conn, key=audit.load_key())
    finally:
        check.dispose()
    if not report.ok and report.message == audit.missing_key_message():
        raise ValueError(f"{path}: {report.message} Until then the copy cannot be checked, so it cannot be restored.")
    if not report.ok:
        raise ValueError(f"{path}: {report.message} The copy was tampered with or damaged; it cannot be restored.")
    return report


def backup_database(engine: Engine, target: Path, *, actor: Actor = SYSTEM) -> str:
    """Write a consistent copy of the database to ``target``, check it, and audit it."""
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
    message, report = _check_copy(target)
    with transaction(engine) as session:  # the backup row seals a checkpoint of the live trail
        audit.record(session, actor=actor, action="backup", file=str(target), rows=report.rows,
                     head_id=report.head_id, head_hash=report.head_hash)
    return f"Backed up to {target} ({target.stat().st_size / 1e6:.1f} MB). {message}"


def restore_database(engine: Engine, source: Path, *, actor: Actor = SYSTEM) -> str:
    """Replace the database with the copy at ``source`` after checking it; bring an older schema up
    to date; then audit the restore in the restored database, with the trail it replaced."""
    target = _sqlite_path(engine)
    message, report = _check_copy(Path(source))
    try:
        with engine.connect() as conn:
            replaced_rows, replaced_id, replaced_hash = audit.trail_head(conn)
    except Exception:  # a live database too damaged to read: the restore is what repairs it
        replaced_rows, replaced_id, replaced_hash = 0, 0, "unreadable"
    engine.dispose()
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(target)
    try:
        with dst:
            src.backup(dst)
    finally:
        dst.close()
        src.close()
    upgrade(engine)  # a backup of an older version: its schema is brought up to date before any write
    with transaction(engine) as session:
        audit.record(session, actor=actor, action="restore", file=str(source), restored_rows=report.rows,
                     restored_head_hash=report.head_hash, replaced_rows=replaced_rows,
                     replaced_head_id=replaced_id, replaced_head_hash=replaced_hash)
    lost = replaced_rows - report.rows
    note = (f" The trail it replaced had {replaced_rows} rows (head {replaced_hash[:16]}); that is recorded in the "
            f"restored trail" + (f", {lost} more than the backup holds." if lost > 0 else "."))
    return f"Restored the database from {source}. {message}{note}"
