"""Issue 18, the audit trail: concurrent writers never fork it, tampering around the triggers is
caught by ``manage.py audit --verify``, and restore refuses bad backups and audits itself.

Tampering goes around the append-only triggers the way someone with write access to the
database would: SQLite drops the triggers, PostgreSQL sets ``session_replication_role =
replica``. Forged digests are computed here, independently of ``db.audit``, from the payload
docs/security.md gives: ``prev_hash | at | actor | action | patient_code | detail`` joined by
U+001F, ``at`` as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` in UTC.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import Connection, Engine, select
from sqlalchemy.exc import IntegrityError
from typer.testing import CliRunner

from db import audit
from db.engine import make_engine, transaction, upgrade
from manage import app
from tests.db.helpers import build_clinic

PROJECT = Path(__file__).resolve().parents[2]
runner = CliRunner()
GENESIS = "0" * 64
ATTACKER_KEY = b"not the clinic's key, but one the attacker made up"
#: The columns every schema revision has (0001 on): what an older app version or an attacker
#: writes without naming ``scheme``.
TRAIL = sa.table("audit_events", sa.column("id", sa.Integer), sa.column("at", sa.DateTime(timezone=True)),
                 sa.column("actor", sa.String), sa.column("action", sa.String), sa.column("patient_code", sa.String),
                 sa.column("detail", sa.Text), sa.column("prev_hash", sa.String), sa.column("hash", sa.String))
CHECKPOINTS = sa.table("audit_checkpoints", sa.column("id", sa.Integer))


def _payload(prev: str, at: dt.datetime, actor: str, action: str, code: str | None, detail: str) -> bytes:
    at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
    stamp = at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return "\x1f".join([prev, stamp, actor, action, code or "", detail]).encode("utf-8")


def unkeyed(prev: str, at: dt.datetime, actor: str, action: str, code: str | None, detail: str) -> str:
    """The plain SHA-256 anyone can compute (the only digest before the fix)."""
    return hashlib.sha256(_payload(prev, at, actor, action, code, detail)).hexdigest()


def with_key(key: bytes) -> Callable[..., str]:
    return lambda *fields: hmac.new(key, _payload(*fields), hashlib.sha256).hexdigest()


def verify(url: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, ["audit", "--verify", "--db", url])


def trail(engine: Engine) -> list[sa.Row]:
    with engine.connect() as conn:
        return list(conn.execute(select(TRAIL).order_by(TRAIL.c.id)))


@contextmanager
def around_the_triggers(engine: Engine) -> Iterator[Connection]:
    """A transaction in which the append-only triggers do not fire (as for an attacker)."""
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            for name in ("audit_events_no_update", "audit_events_no_delete", "audit_checkpoints_no_update",
                         "audit_checkpoints_no_delete"):
                conn.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
        else:
            conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        yield conn


# --- 1. Concurrent writers: threads and processes ------------------------------------------------

def _assert_one_chain(engine: Engine, url: str, expected_rows: int) -> None:
    rows = trail(engine)
    assert len(rows) == expected_rows
    assert len({r.prev_hash for r in rows}) == len(rows), "two rows follow the same row: the chain forked"
    result = verify(url)
    assert result.exit_code == 0, result.output
    assert f"intact: {expected_rows} rows" in result.stdout


@pytest.mark.parametrize("writers", [4, 8])
def test_concurrent_threads_leave_one_chain_that_verifies(engine: Engine, db_url: str, writers: int) -> None:
    each = 15
    start = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(w: int) -> None:
        start.wait()
        try:
            for i in range(each):
                with transaction(engine) as session:  # a patient view: no other write in the transaction
                    audit.record(session, actor=f"ther.{w}", action="view_patient", patient_code=f"P{i:03d}")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    _assert_one_chain(engine, db_url, writers * each)


WRITER = """
import os, sys, time
from pathlib import Path
from db import audit
from db.engine import make_engine, transaction
url, name, n, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
engine = make_engine(url)
(folder / f"ready-{name}").touch()
while not (folder / "go").exists():
    time.sleep(0.002)
for i in range(n):
    with transaction(engine) as session:
        audit.record(session, actor=name, action="view_patient", patient_code=f"P{i:03d}")
"""


def run_together(commands: list[list[str]], folder: Path, *, ready: int) -> list[subprocess.CompletedProcess]:
    """Start ``commands``; once ``ready`` of them have touched ``folder/ready-*``, touch ``folder/go``."""
    procs = [subprocess.Popen(c, cwd=PROJECT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in commands]
    deadline = time.monotonic() + 180
    while len(list(folder.glob("ready-*"))) < ready and time.monotonic() < deadline:
        time.sleep(0.01)
    (folder / "go").touch()
    done = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(p.args, p.returncode, out, err))
    return done


@pytest.mark.parametrize("writers", [4, 8])
def test_concurrent_processes_leave_one_chain_that_verifies(engine: Engine, db_url: str, tmp_path: Path,
                                                            writers: int) -> None:
    each = 12
    done = run_together([[sys.executable, "-c", WRITER, db_url, f"ther.{w}", str(each), str(tmp_path)]
                         for w in range(writers)], tmp_path, ready=writers)
    assert all(d.returncode == 0 for d in done), [d.stderr[-2000:] for d in done]
    _assert_one_chain(engine, db_url, writers * each)


def test_simultaneous_unchanged_imports_leave_one_chain(db_url: str, tmp_path: Path) -> None:
    """The issue's other fork: four "all unchanged" command-line imports of one file at once."""
    scores = tmp_path / "scores.csv"
    scores.write_text("patient_id,therapist_id,week,instrument,score\n"
                      + "".join(f"P{p},ther.x,{w},WAI-SR,{40 + w}\n" for p in range(5) for w in range(1, 4)),
                      encoding="utf-8")
    assert runner.invoke(app, ["import-scores", str(scores), "--db", db_url]).exit_code == 0
    done = run_together([[sys.executable, "manage.py", "import-scores", str(scores), "--db", db_url]] * 4,
                        tmp_path, ready=0)
    assert all(d.returncode == 0 for d in done), [d.stderr[-2000:] for d in done]
    assert all("15 unchanged" in d.stdout for d in done)
    engine = make_engine(db_url)
    _assert_one_chain(engine, db_url, len(trail(engine)))
    engine.dispose()


def test_the_schema_refuses_a_second_row_after_the_same_row(engine: Engine) -> None:
    with transaction(engine) as session:
        first = audit.record(session, actor="ther.a", action="view_patient", patient_code="P1")
        audit.record(session, actor="ther.a", action="view_patient", patient_code="P2")
    fork = {"at": first.at, "actor": "ther.b", "action": "view_patient", "patient_code": "P3", "detail": "{}",
            "prev_hash": first.prev_hash, "hash": "f" * 64, "scheme": "hmac-sha256"}
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(sa.insert(audit.AuditEvent.__table__).values(**fork))


# --- 2. Tampering around the triggers is caught by audit --verify -----------------------------------

@pytest.fixture
def clinic(engine: Engine, db_url: str) -> list[sa.Row]:
    """A clinic with patients and a trail of some 20 rows, verified once (which signs a checkpoint)."""
    build_clinic(engine)
    with transaction(engine) as session:
        for code in ("PA1", "PA2", "PB1", "PC1") * 3:
            audit.record(session, actor="ther.a", action="view_patient", patient_code=code)
    first = verify(db_url)
    assert first.exit_code == 0, first.output
    return trail(engine)


def _append(conn: Connection, rows: list[sa.Row], digest: Callable[..., str], **scheme: str) -> int:
    at, prev = dt.datetime.now(dt.UTC), rows[-1].hash if rows else GENESIS
    detail = json.dumps({"rows": 1})
    values = {"at": at, "actor": "admin", "action": "export", "patient_code": None, "detail": detail,
              "prev_hash": prev, "hash": digest(prev, at, "admin", "export", None, detail)}
    table = audit.AuditEvent.__table__ if scheme else TRAIL
    return int(conn.execute(sa.insert(table).values(**values, **scheme).returning(table.c.id)).scalar_one())


def _rechain(conn: Connection, rows: list[sa.Row], start: int, digest: Callable[..., str], **scheme: str) -> None:
    """Edit row ``start`` (0-based) and recompute every hash and link from it on."""
    table = audit.AuditEvent.__table__ if scheme else TRAIL
    prev = rows[start - 1].hash
    for n, r in enumerate(rows[start:]):
        detail = json.dumps({"rows": 999}) if n == 0 else r.detail
        new = digest(prev, r.at, r.actor, r.action, r.patient_code, detail)
        conn.execute(sa.update(table).where(table.c.id == r.id).values(detail=detail, prev_hash=prev, hash=new,
                                                                       **scheme))
        prev = new


def _delete_newest(conn: Connection, rows: list[sa.Row], n: int) -> None:
    conn.execute(sa.delete(TRAIL).where(TRAIL.c.id.in_([r.id for r in rows[-n:]])))


def test_deleting_the_newest_rows_is_a_missing_tail(engine: Engine, db_url: str, clinic: list[sa.Row]) -> None:
    with around_the_triggers(engine) as conn:
        _delete_newest(conn, clinic, 3)
    result = verify(db_url)
    assert result.exit_code == 1
    assert re.search(rf"Missing tail: the trail ends at row {clinic[-4].id} but the checkpoint of "
                     rf"\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC says {len(clinic)} rows", result.stderr), result.stderr


def test_deleting_every_row_is_caught_with_or_without_the_checkpoints(engine: Engine, db_url: str,
                                                                       clinic: list[sa.Row]) -> None:
    with around_the_triggers(engine) as conn:
        conn.execute(sa.delete(TRAIL))
    result = verify(db_url)
    assert result.exit_code == 1
    assert "Missing tail: the trail is empty but the checkpoint of" in result.stderr
    assert f"says {len(clinic)} rows" in result.stderr
    with around_the_triggers(engine) as conn:
        conn.execute(sa.delete(CHECKPOINTS))
    result = verify(db_url)
    assert result.exit_code == 1
    assert "The audit trail is empty, but the database holds 4 patients" in result.stderr


def test_deleting_the_checkpoints_with_the_tail_is_caught(engine: Engine, db_url: str, clinic: list[sa.Row]) -> None:
    with around_the_triggers(engine) as conn:
        _delete_newest(conn, clinic, 3)
        conn.execute(sa.delete(CHECKPOINTS))
    result = verify(db_url)
    assert result.exit_code == 1 and "no checkpoint" in result.stderr and "deleted" in result.stderr


def test_a_forged_row_with_a_correct_unkeyed_hash_is_named(engine: Engine, db_url: str, clinic: list[sa.Row]) -> None:
    with engine.begin() as conn:  # appending needs no trigger bypass: INSERT is allowed
        forged = _append(conn, clinic, unkeyed)
    result = verify(db_url)
    assert result.exit_code == 1
    assert f"Audit row {forged} " in result.stderr and "forged" in result.stderr


def test_a_forged_row_signed_with_another_key_is_named(engine: Engine, db_url: str, clinic: list[sa.Row]) -> None:
    with engine.begin() as conn:
        forged = _append(conn, clinic, with_key(ATTACKER_KEY), scheme="hmac-sha256")
    result = verify(db_url)
    assert result.exit_code == 1
    assert f"Audit row {forged} was changed after it was written, or forged" in result.stderr


@pytest.mark.parametrize("how", ["unkeyed", "attacker-key", "unkeyed-scheme"])
def test_an_edit_rechained_to_the_end_names_the_edited_row(engine: Engine, db_url: str, clinic: list[sa.Row],
                                                           how: str) -> None:
    start = len(clinic) // 2
    with around_the_triggers(engine) as conn:
        if how == "unkeyed":
            _rechain(conn, clinic, start, unkeyed)
        elif how == "attacker-key":
            _rechain(conn, clinic, start, with_key(ATTACKER_KEY))
        else:
            _rechain(conn, clinic, start, unkeyed, scheme="sha256")
    result = verify(db_url)
    assert result.exit_code == 1
    assert f"Audit row {clinic[start].id} " in result.stderr, result.stderr


def test_a_changed_or_forged_checkpoint_is_named(engine: Engine, db_url: str, clinic: list[sa.Row]) -> None:
    table = audit.AuditCheckpoint.__table__
    with around_the_triggers(engine) as conn:  # hide a cut-off tail by lowering the checkpoint's count
        _delete_newest(conn, clinic, 3)
        latest = conn.execute(select(table.c.id).order_by(table.c.id.desc()).limit(1)).scalar_one()
        conn.execute(sa.update(table).where(table.c.id == latest)
                     .values(rows=len(clinic) - 3, head_id=clinic[-4].id, head_hash=clinic[-4].hash))
    result = verify(db_url)
    assert result.exit_code == 1
    assert f"Audit checkpoint {latest} of " in result.stderr and "changed or forged" in result.stderr


def test_the_intact_trail_verifies_and_names_its_checkpoints(db_url: str, clinic: list[sa.Row]) -> None:
    result = verify(db_url)
    assert result.exit_code == 0
    assert f"intact: {len(clinic)} rows" in result.stdout and "signed checkpoints" in result.stdout
    assert f"Head: row {clinic[-1].id}, hash {clinic[-1].hash[:16]}" in result.stdout


# --- Rows written before the keyed scheme ----------------------------------------------------------

def _old_trail(engine: Engine, *, then_upgrade: bool = True) -> list[dict]:
    """Five rows as the old code wrote them at revision 0003, with the fork concurrent SQLite
    writers left: rows 4 and 5 both follow row 3 (row 4 is a leaf; later rows follow row 5)."""
    upgrade(engine, "0003")
    at = dt.datetime(2026, 11, 30, 9, 0, tzinfo=dt.UTC)
    rows, hashes = [], {0: GENESIS}
    for n, parent in [(1, 0), (2, 1), (3, 2), (4, 3), (5, 3)]:
        stamp = at + dt.timedelta(seconds=n)
        row = {"at": stamp, "actor": "ther.a", "action": "view_patient", "patient_code": f"P{n}", "detail": "{}",
               "prev_hash": hashes[parent]}
        row["hash"] = hashes[n] = unkeyed(row["prev_hash"], stamp, "ther.a", "view_patient", f"P{n}", "{}")
        rows.append(row)
    with engine.begin() as conn:
        for row in rows:  # one by one, so that the ids follow this order
            conn.execute(sa.insert(TRAIL).values(**row))
    if then_upgrade:
        upgrade(engine)
    return rows


def test_rows_from_before_the_keyed_scheme_keep_verifying_forks_included(db_url: str) -> None:
    engine = make_engine(db_url)
    _old_trail(engine)
    result = verify(db_url)
    assert result.exit_code == 0, result.output
    assert "intact: 5 rows" in result.stdout
    assert "The first 5 rows were written before the keyed scheme" in result.stdout
    assert "1 of them branch off an earlier row" in result.stdout
    with transaction(engine) as session:  # new rows are keyed and follow the newest old row
        event = audit.record(session, actor="ther.a", action="view_patient", patient_code="P6")
        assert event.scheme == "hmac-sha256" and event.prev_hash == trail(engine)[4].hash
    assert verify(db_url).exit_code == 0
    engine.dispose()


def test_old_rows_are_sealed_by_the_first_checkpoint(db_url: str) -> None:
    engine = make_engine(db_url)
    old = _old_trail(engine)
    with transaction(engine) as session:
        audit.record(session, actor="ther.a", action="view_patient", patient_code="P6")
    with around_the_triggers(engine) as conn:  # rewrite the leaf row 4: no later row links to it
        leaf = dict(old[3], patient_code="P9")
        conn.execute(sa.update(TRAIL).where(TRAIL.c.id == 4).values(
            patient_code="P9", hash=unkeyed(leaf["prev_hash"], leaf["at"], "ther.a", "view_patient", "P9", "{}")))
    result = verify(db_url)
    assert result.exit_code == 1
    assert "The 5 rows written before the keyed scheme were changed or removed after the checkpoint" in result.stderr
    engine.dispose()


def test_an_unkeyed_row_after_keyed_ones_is_forged(db_url: str) -> None:
    engine = make_engine(db_url)
    _old_trail(engine)
    with transaction(engine) as session:
        audit.record(session, actor="ther.a", action="view_patient", patient_code="P6")
    with engine.begin() as conn:  # what an app version from before the fix, or an attacker, writes
        forged = _append(conn, trail(engine), unkeyed)
    result = verify(db_url)
    assert result.exit_code == 1 and f"Audit row {forged} carries the unkeyed hash" in result.stderr
    engine.dispose()


# --- The key ------------------------------------------------------------------------------------------

@pytest.fixture
def own_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys" / "audit.key"
    monkeypatch.delenv(audit.KEY_ENV, raising=False)
    monkeypatch.setenv(audit.KEY_FILE_ENV, str(path))
    return path


def test_the_key_file_is_made_on_first_use_readable_by_its_owner_only(engine: Engine, own_key: Path) -> None:
    assert not own_key.exists()
    with transaction(engine) as session:
        audit.record(session, actor="ther.a", action="login")
    assert stat.S_IMODE(own_key.stat().st_mode) == 0o600
    assert len(own_key.read_text().strip()) == 64


def test_a_missing_key_is_never_replaced_silently(engine: Engine, db_url: str, own_key: Path) -> None:
    with transaction(engine) as session:
        audit.record(session, actor="ther.a", action="login")
    kept = own_key.with_name("kept")
    own_key.rename(kept)
    missing = "The audit key is missing .* Restore the key from its separate backup"
    with pytest.raises(ValueError, match=missing), transaction(engine) as session:
        audit.record(session, actor="ther.a", action="login")
    assert not own_key.exists()
    result = verify(db_url)
    assert result.exit_code == 1 and "The audit key is missing" in result.stderr
    kept.rename(own_key)
    assert verify(db_url).exit_code == 0


def test_another_key_fails_verification_and_says_so(engine: Engine, db_url: str, own_key: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    with transaction(engine) as session:
        audit.record(session, actor="ther.a", action="login")
    monkeypatch.setenv(audit.KEY_ENV, "x" * 40)  # the variable wins over the file
    result = verify(db_url)
    assert result.exit_code == 1 and "$ALLIANCE_AUDIT_KEY" in result.stderr
    monkeypatch.setenv(audit.KEY_ENV, "too short")
    with pytest.raises(ValueError, match="needs at least 32"):
        audit.load_key()


# --- 3. Restore: bad backups refused, older ones upgraded, both audited (SQLite) ----------------------

@pytest.fixture
def live(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'live.db'}"
    scores = tmp_path / "scores.csv"
    scores.write_text("patient_id,therapist_id,week,instrument,score\nP0,ther.x,1,WAI-SR,40\nP0,ther.x,2,WAI-SR,44\n",
                      encoding="utf-8")
    assert runner.invoke(app, ["import-scores", str(scores), "--db", url]).exit_code == 0
    return url


def _backup(url: str, copy: Path) -> None:
    result = runner.invoke(app, ["backup", str(copy), "--db", url])
    assert result.exit_code == 0, result.output
    Path(f"{copy}.sha256").unlink()  # the damage below is made on purpose; only the contents are checked


def _store(url: str) -> dict[str, list[tuple]]:
    from tests.db.test_import_bad_files import dump_store

    return dump_store(url)


def _in_copy(copy: Path, *sql: str) -> None:
    con = sqlite3.connect(copy)
    for name in ("audit_events_no_update", "audit_events_no_delete", "audit_checkpoints_no_update",
                 "audit_checkpoints_no_delete"):
        con.execute(f"DROP TRIGGER IF EXISTS {name}")
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for statement in sql:
        if "audit_checkpoints" not in statement or "audit_checkpoints" in tables:
            con.execute(statement)
    con.commit()
    con.close()


def _refused(url: str, copy: Path, pattern: str) -> None:
    before = _store(url)
    result = runner.invoke(app, ["restore", str(copy), "--db", url])
    assert result.exit_code == 2, result.output
    assert "cannot be restored" in result.stderr and re.search(pattern, result.stderr), result.stderr
    assert _store(url) == before


@pytest.mark.parametrize("checkpoints_too", [False, True])
def test_restore_refuses_a_backup_whose_trail_was_emptied(live: str, tmp_path: Path, checkpoints_too: bool) -> None:
    copy = tmp_path / "copy.db"
    _backup(live, copy)
    _in_copy(copy, "DELETE FROM audit_events", *(["DELETE FROM audit_checkpoints"] if checkpoints_too else []))
    _refused(live, copy, "The audit trail is empty, but the database holds 1 patients" if checkpoints_too
             else "Missing tail: the trail is empty")


def test_restore_refuses_a_backup_with_a_forged_row(live: str, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    _backup(live, copy)
    engine = make_engine(f"sqlite:///{copy}")
    with engine.begin() as conn:
        forged = _append(conn, trail(engine), unkeyed)
    engine.dispose()
    _refused(live, copy, f"Audit row {forged} .*forged")


def test_restore_refuses_an_unknown_schema_revision(live: str, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    _backup(live, copy)
    _in_copy(copy, "UPDATE alembic_version SET version_num = '9999'")
    _refused(live, copy, r"schema revision 9999, which this version of Alliance Monitor does not know")


def test_restore_upgrades_an_older_backup_and_audits_it(live: str, tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    engine = make_engine(f"sqlite:///{old}")
    _old_trail(engine, then_upgrade=False)  # what an older version left: revision 0003, unkeyed rows
    engine.dispose()
    result = runner.invoke(app, ["restore", str(old), "--db", live])
    assert result.exit_code == 0, result.output
    engine = make_engine(live)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalar() == _head()
    rows = trail(engine)
    assert [r.action for r in rows] == ["view_patient"] * 5 + ["restore"]
    assert verify(live).exit_code == 0
    engine.dispose()


def test_backup_and_restore_are_audited_with_the_replaced_trail(live: str, tmp_path: Path) -> None:
    copy = tmp_path / "copy.db"
    assert runner.invoke(app, ["backup", str(copy), "--db", live]).exit_code == 0
    engine = make_engine(live)
    rows = trail(engine)
    backup_row = json.loads(rows[-1].detail)
    assert rows[-1].action == "backup" and backup_row["file"] == str(copy)
    assert backup_row["rows"] == len(rows) - 1 and backup_row["head_hash"] == rows[-2].hash
    more = tmp_path / "more.csv"  # rows written after the backup, which the restore will replace
    more.write_text("patient_id,therapist_id,week,instrument,score\nP9,ther.x,1,SPIN,3\n", encoding="utf-8")
    assert runner.invoke(app, ["import-scores", str(more), "--db", live]).exit_code == 0
    replaced = trail(engine)
    engine.dispose()
    result = runner.invoke(app, ["restore", str(copy), "--db", live])
    assert result.exit_code == 0, result.output
    assert f"The trail it replaced had {len(replaced)} rows" in result.stdout
    engine = make_engine(live)
    restored = trail(engine)
    engine.dispose()
    assert restored[:-1] == rows[:-1]  # the copy's trail, then the row recording the restore
    last = json.loads(restored[-1].detail)
    assert restored[-1].action == "restore" and last["file"] == str(copy)
    assert last["replaced_rows"] == len(replaced) and last["replaced_head_hash"] == replaced[-1].hash
    assert last["replaced_head_id"] == replaced[-1].id and last["restored_rows"] == len(rows) - 1
    result = verify(live)
    assert result.exit_code == 0, result.output


def _head() -> str:
    """The newest schema revision (what a restore upgrades an older backup to)."""
    from alembic.script import ScriptDirectory

    from db.engine import alembic_config

    return str(ScriptDirectory.from_config(alembic_config()).get_current_head())
