"""Backup while another thread writes, restore, and refusing damaged copies."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import insert, select
from typer.testing import CliRunner

from db.backup import backup_database, restore_database
from db.engine import make_engine, transaction, upgrade
from db.models import Patient, Score, utcnow
from manage import app
from tests.db.test_import_bad_files import BASELINE, dump_store

runner = CliRunner()


def _scores(path: Path) -> list[tuple]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute("SELECT * FROM scores ORDER BY id").fetchall()
    finally:
        con.close()


@pytest.fixture
def db_file(tmp_path: Path) -> Path:
    path = tmp_path / "live.db"
    base = tmp_path / "baseline.csv"
    base.write_text(BASELINE, encoding="utf-8")
    assert runner.invoke(app, ["import-scores", str(base), "--db", f"sqlite:///{path}"]).exit_code == 0
    return path


def test_backup_while_writing_is_consistent_and_restores_byte_for_byte(db_file: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{db_file}"
    writer_engine = make_engine(url)
    with transaction(writer_engine) as s:
        pid = s.scalar(select(Patient.id))
    stop = threading.Event()
    written = [0]

    def write() -> None:  # pairs of scores, one transaction each: a copy must never hold half a pair
        week = 100
        while not stop.is_set():
            with transaction(writer_engine) as s:
                s.execute(insert(Score), [{"patient_id": pid, "instrument": code, "week": week, "total": 30.0,
                                           "source": "entry", "entered_at": utcnow(), "version": 1}
                                          for code in ("SPIN", "WAI-P")])
            written[0] += 1
            week += 1
            if week > 500:
                week = 100
                with transaction(writer_engine) as s:
                    s.query(Score).filter(Score.week >= 100).delete()
            time.sleep(0.001)

    thread = threading.Thread(target=write)
    thread.start()
    try:
        time.sleep(0.3)
        copy = tmp_path / "copy.db"
        message = backup_database(make_engine(url), copy)
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
        writer_engine.dispose()
    assert written[0] > 10 and "intact" in message
    copied = _scores(copy)
    assert len(copied) % 2 == 0  # never half a transaction
    assert {r[3] for r in copied if r[2] == "WAI-SR"} == {1, 2}
    # restore into the live database (which moved on) and into a fresh one: the same bytes
    before_restore = _scores(db_file)
    assert before_restore != copied
    assert "Restored" in restore_database(make_engine(url), copy)
    assert _scores(db_file) == copied
    fresh = tmp_path / "fresh.db"
    upgrade(make_engine(f"sqlite:///{fresh}"))
    restore_database(make_engine(f"sqlite:///{fresh}"), copy)
    assert _scores(fresh) == copied
    # the same store, except that each restored trail ends with its own row recording the restore
    restored, live = dump_store(f"sqlite:///{fresh}"), dump_store(url)
    for store in (restored, live):
        assert store["audit_events"][-1][3] == "restore"
        for table in ("audit_events", "audit_checkpoints", "audit_head"):
            store.pop(table)
    assert restored == live


def test_cli_backup_refuses_to_overwrite_and_restore_round_trips(db_file: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{db_file}"
    copy = tmp_path / "b.db"
    first = runner.invoke(app, ["backup", str(copy), "--db", url])
    assert first.exit_code == 0, first.output
    assert runner.invoke(app, ["backup", str(copy), "--db", url]).exit_code == 2
    before = dump_store(url)
    extra = tmp_path / "extra.csv"
    extra.write_text("patient_id,therapist_id,week,instrument,score\nP9,ther.x,1,SPIN,3\n", encoding="utf-8")
    assert runner.invoke(app, ["import-scores", str(extra), "--db", url]).exit_code == 0
    done = runner.invoke(app, ["restore", str(copy), "--db", url])
    assert done.exit_code == 0, done.output
    after = dump_store(url)
    # restore recomputes the stored flags of the restored scores (the same ones), which moves the
    # data-revision counter on: every cached page result is recomputed after a restore
    assert after.pop("data_revision") != before.pop("data_revision")
    # the restored trail is the copied one (the live "backup" row came after the copy) plus the row
    # recording the restore, which also seals a checkpoint
    trail, was = after.pop("audit_events"), before.pop("audit_events")
    assert was[-1][3] == "backup" and trail[-1][3] == "restore"
    assert trail[:-1] == was[:-1]
    for table in ("audit_checkpoints", "audit_head"):
        after.pop(table), before.pop(table)
    assert after == before
    assert runner.invoke(app, ["refresh-flags", "--check", "--db", url]).exit_code == 0


def _corrupt_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    page = 4096
    middle = (len(data) // page // 2) * page
    data[middle + 8: middle + page] = b"\xa5" * (page - 8)
    path.write_bytes(bytes(data))


def _corrupt_used_page_without_checksum(path: Path) -> None:
    Path(f"{path}.sha256").unlink()
    data = bytearray(path.read_bytes())
    con = sqlite3.connect(path)
    root = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'scores'").fetchone()[0]
    con.close()
    start = (root - 1) * 4096
    data[start: start + 4096] = b"\xa5" * 4096
    path.write_bytes(bytes(data))


def _tamper_audit(path: Path) -> None:
    Path(f"{path}.sha256").unlink()
    con = sqlite3.connect(path)
    con.execute("DROP TRIGGER audit_events_no_update")
    con.execute("UPDATE audit_events SET detail = '{}' WHERE id = 1")
    con.commit()
    con.close()


def _foreign(path: Path) -> None:
    path.unlink()
    Path(f"{path}.sha256").unlink()
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE t (x)")
    con.commit()
    con.close()


@pytest.mark.parametrize(("damage", "message"), [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), "damaged|not a readable"),
    (lambda p: p.write_bytes(b"garbage" + p.read_bytes()[7:]), "damaged"),
    (lambda p: (Path(f"{p}.sha256").unlink(), p.write_bytes(b"garbage" + p.read_bytes()[7:])), "not a readable"),
    (_corrupt_middle, "its bytes no longer match the checksum"),
    (_corrupt_used_page_without_checksum, "damaged|not a readable"),
    (lambda p: p.write_bytes(b""), "damaged"),
    (lambda p: (Path(f"{p}.sha256").unlink(), p.write_bytes(b"")), "not an Alliance Monitor backup|not a readable"),
    (_tamper_audit, "tampered"),
    (_foreign, "not an Alliance Monitor backup"),
], ids=["truncated", "bad-header", "bad-header-no-checksum", "corrupted-page", "corrupted-used-page-no-checksum",
         "empty", "empty-no-checksum", "audit-edited", "other-database"])
def test_restore_refuses_a_damaged_file_and_changes_nothing(db_file: Path, tmp_path: Path, damage, message) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{db_file}"
    copy = tmp_path / "b.db"
    assert runner.invoke(app, ["backup", str(copy), "--db", url]).exit_code == 0
    for suffix in ("-wal", "-shm"):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
    damage(copy)
    before = dump_store(url)
    result = runner.invoke(app, ["restore", str(copy), "--db", url])
    assert result.exit_code == 2, result.output
    assert "cannot be restored" in result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert dump_store(url) == before


def test_postgresql_points_to_pg_dump(pg_url: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["backup", str(tmp_path / "x.db"), "--db", pg_url])
    assert result.exit_code == 2 and "pg_dump" in result.stderr
    result = runner.invoke(app, ["restore", str(tmp_path / "x.db"), "--db", pg_url])
    assert result.exit_code == 2 and "pg_restore" in result.stderr
