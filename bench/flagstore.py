"""Benchmark: flags as the clinic's one stored record (``db.flagstore``).

    python bench/flagstore.py [--db URL] [--patients 10000] [--weeks 52] [--repeat 3]

Builds or reuses the generated clinic (``bench/common.py``), makes sure its flags are stored
(``db.flagstore.ensure_current``), and prints, best of ``--repeat`` unless said otherwise:

1. the raw read of the scores: ``db.queries.read_scores(actor=SYSTEM)`` (no items; the
   reference of every ratio) and a plain driver ``SELECT * FROM scores`` + ``fetchall``;
2. reading the stored flags: ``db.flags.read_flags(actor=SYSTEM)`` (what ``manage.py flags`` and
   an admin's pages read) and ``db.flagstore.read_stored``; target <= 0.5 x (1);
3. ``db.flagstore.refresh_all`` in a transaction that commits; target <= 1.5 x (1);
4. one new weekly score as a whole command, ``manage.py import-scores one.csv --db URL``, with a
   new week of an existing patient against the same command re-importing an unchanged row
   (median of ``--commands``, a new week each time); target <= 1.5 x. In-process:
   ``db.writes.import_retrying`` of one new row against one unchanged row, and
   ``db.entry.save_entry`` of a new week against an ``import_retrying`` of an unchanged row.

Every "new" row is a week after a patient's last stored week (a different patient each time,
so each recompute covers a patient of ~100 scores); the database grows by those rows. On
PostgreSQL the database is created when it does not exist.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from common import best, clinic_database, machine, vacuum
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from core.validation import validate_scores
from db import flagstore
from db.access import SYSTEM
from db.engine import session_factory, transaction
from db.entry import save_entry
from db.flags import read_flags
from db.models import Account, Patient, Score
from db.queries import read_scores
from db.writes import import_retrying

ROOT = Path(__file__).resolve().parent.parent
TODAY = dt.date(2026, 11, 23)  # the generated clinic's "today" (bench/common.py)


def ensure_pg_database(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    from sqlalchemy import create_engine

    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": parsed.database}):
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
            print(f"created database {parsed.database}", flush=True)
    admin.dispose()


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def driver_select_all(engine) -> int:  # type: ignore[no-untyped-def]
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("SELECT * FROM scores")
        n = len(cur.fetchall())
        cur.close()
        raw.rollback()
        return n
    finally:
        raw.close()


def refresh_committed(engine) -> int:  # type: ignore[no-untyped-def]
    with transaction(engine) as session:
        return flagstore.refresh_all(session)


# --------------------------------------------------------------------------- rows to write
class Rows:
    """Candidate patients for new weeks (last stored week <= --weeks) and an unchanged row."""

    def __init__(self, engine, weeks: int, seed: int = 7) -> None:  # type: ignore[no-untyped-def]
        with session_factory(engine)() as session:
            cand = session.execute(
                select(Patient.code, Account.name, Patient.last_week)
                .join(Account, Patient.therapist_id == Account.id)
                .where(Patient.last_week.is_not(None), Patient.last_week <= weeks)).all()
            first = session.execute(
                select(Patient.code, Account.name, Score.instrument, Score.week, Score.total)
                .join(Patient, Score.patient_id == Patient.id).join(Account, Patient.therapist_id == Account.id)
                .where(Patient.code == min(c for c, _, _ in cand), Score.week == 10)
                .order_by(Score.instrument)).first()
        random.Random(seed).shuffle(cand)
        self._new = iter(cand)
        code, therapist, instrument, week, total = first
        self.unchanged = {"patient_id": code, "therapist_id": therapist, "week": str(week),
                          "instrument": instrument, "score": f"{total:g}"}

    def new(self) -> dict[str, str]:
        code, therapist, last = next(self._new)
        return {"patient_id": code, "therapist_id": therapist, "week": str(max(int(last), 52) + 1),
                "instrument": "WAI-SR", "score": str(random.Random(code).randint(30, 55))}


def write_csv(row: dict[str, str], path: Path) -> Path:
    pd.DataFrame([row]).to_csv(path, index=False)
    return path


def validated(row: dict[str, str]) -> pd.DataFrame:
    result = validate_scores(pd.DataFrame([row], dtype="string"))
    assert result.ok, result.errors
    return result.scores


def run_command(csv: Path, url: str, want: str) -> float:
    began = time.perf_counter()
    out = subprocess.run([sys.executable, "manage.py", "import-scores", str(csv), "--db", url], cwd=ROOT,
                         capture_output=True, text=True)
    took = time.perf_counter() - began
    if out.returncode != 0 or want not in out.stdout:
        raise SystemExit(f"import-scores failed ({out.returncode}): {out.stdout} {out.stderr}")
    return took


def fmt_ratio(name: str, value: float, target: float, op: str = "<=") -> str:
    ok = value <= target
    return f"{name:<58} {value:6.2f}  (target {op} {target}) {'PASS' if ok else 'MISS'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite:////tmp/alliance-bench.db")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--commands", type=int, default=5, help="manage.py runs per case (median)")
    parser.add_argument("--build-only", action="store_true", help="build the clinic and its flags, then stop")
    args = parser.parse_args()

    ensure_pg_database(args.db)
    engine = clinic_database(args.db, patients=args.patients, weeks=args.weeks)
    began = time.perf_counter()
    if flagstore.ensure_current(engine):
        print(f"stored every flag once (ensure_current) in {time.perf_counter() - began:.1f} s", flush=True)
    if args.build_only:
        return
    print(f"machine: {machine()}; database: {engine.dialect.name}; load average before: {loadavg()}", flush=True)
    with session_factory(engine)() as session:
        n_scores = session.scalar(select(func.count()).select_from(Score))
        n_flags = flagstore.stored_count(session)
    print(f"clinic: {n_scores:,} scores, {n_flags:,} stored flags", flush=True)

    # 1. raw read of the scores
    with session_factory(engine)() as session:
        t_read, scores = best(lambda: read_scores(session, actor=SYSTEM), args.repeat)
    t_driver, n_rows = best(lambda: driver_select_all(engine), args.repeat)
    # 2. reading the stored flags
    with session_factory(engine)() as session:
        t_flags, flags = best(lambda: read_flags(session, actor=SYSTEM, today=TODAY), args.repeat)
        t_stored, stored = best(lambda: flagstore.read_stored(session, actor=SYSTEM), args.repeat)
    # 3. recompute every stored flag, committed
    t_refresh, n_refreshed = best(lambda: refresh_committed(engine), args.repeat, setup=lambda: vacuum(engine))
    load_reads = loadavg()

    # 4. one new weekly score
    rows = Rows(engine, args.weeks)
    tmp = Path(tempfile.mkdtemp(prefix="flagstore-bench-"))
    same_csv = write_csv(rows.unchanged, tmp / "same.csv")
    new_cmd, same_cmd = [], []
    for k in range(args.commands):  # interleaved, so that a change of machine load hits both alike
        new_cmd.append(run_command(write_csv(rows.new(), tmp / f"new{k}.csv"), args.db, "1 new"))
        same_cmd.append(run_command(same_csv, args.db, "1 unchanged"))
    t_new_cmd, t_same_cmd = statistics.median(new_cmd), statistics.median(same_cmd)

    def import_new() -> None:
        plan = import_retrying(engine, actor=SYSTEM, scores=validated(rows.new()), filename="one.csv")
        assert plan.new == 1, plan

    def import_same() -> None:
        plan = import_retrying(engine, actor=SYSTEM, scores=validated(rows.unchanged), filename="one.csv")
        assert plan.unchanged == 1, plan

    def entry_new() -> None:
        r = rows.new()
        with transaction(engine) as session:
            what, _ = save_entry(session, actor=SYSTEM, code=r["patient_id"], instrument=r["instrument"],
                                 week=int(r["week"]), total=float(r["score"]))
        assert what == "new"

    n = max(args.repeat, 5)
    t_imp_new, _ = best(import_new, n)
    t_imp_same, _ = best(import_same, n)
    t_entry_new, _ = best(entry_new, n)
    load_writes = loadavg()

    print(f"1. read_scores(actor=SYSTEM), no items ({len(scores):,} rows):   {t_read:6.2f} s  (reference)")
    print(f"   driver SELECT * FROM scores + fetchall ({n_rows:,} rows):    {t_driver:6.2f} s")
    print(f"2. read_flags(actor=SYSTEM) ({len(flags):,} flags):              {t_flags:6.2f} s")
    print(f"   flagstore.read_stored(actor=SYSTEM) ({len(stored):,} flags):  {t_stored:6.2f} s")
    print(f"3. refresh_all, committed ({n_refreshed:,} flags):                {t_refresh:6.2f} s")
    print(f"4. manage.py import-scores, one new week (median of {args.commands}):  {t_new_cmd:6.2f} s  "
          f"[{', '.join(f'{t:.2f}' for t in new_cmd)}]")
    print(f"   manage.py import-scores, one unchanged row (median):   {t_same_cmd:6.2f} s  "
          f"[{', '.join(f'{t:.2f}' for t in same_cmd)}]")
    print(f"   import_retrying, one new row (best of {n}):               {t_imp_new * 1000:6.1f} ms")
    print(f"   import_retrying, one unchanged row (best of {n}):         {t_imp_same * 1000:6.1f} ms")
    print(f"   save_entry, one new week (best of {n}):                   {t_entry_new * 1000:6.1f} ms")
    print(fmt_ratio("ratio read_flags / read_scores", t_flags / t_read, 0.5))
    print(f"{'ratio read_stored / read_scores':<58} {t_stored / t_read:6.2f}")
    print(fmt_ratio("ratio refresh_all / read_scores", t_refresh / t_read, 1.5))
    print(fmt_ratio("ratio import-scores new / unchanged (commands)", t_new_cmd / t_same_cmd, 1.5))
    print(f"{'ratio import_retrying new / unchanged (in-process)':<58} {t_imp_new / t_imp_same:6.2f}")
    print(f"{'ratio save_entry new / import_retrying unchanged':<58} {t_entry_new / t_imp_same:6.2f}")
    print(f"load average after 1-3: {load_reads}; after 4: {load_writes}")


if __name__ == "__main__":
    main()
