"""Shared set-up for the benchmarks: a generated clinic stored in a database, built once.

``clinic_database(url, patients=10_000, weeks=52)`` fills an empty database (SQLite file or
PostgreSQL) with ``sample_data.generate.generate_clinic`` data (WAI-SR and SPIN totals,
~1M scores for 10,000 x 52) through bulk inserts, and reuses it when it already holds that
clinic. Not part of the pass/fail suite.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pandas as pd
from sqlalchemy import Engine, func, insert, select

from db.engine import make_engine, transaction, upgrade
from db.models import Account, Patient, Score, Setting, utcnow
from sample_data.generate import generate_clinic

BATCH = 50_000
#: Every bench therapist's password (synthetic accounts on a throw-away database).
BENCH_PASSWORD = "bench-password-2026"


def best(fn, repeat: int, setup=None) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    """The fastest of ``repeat`` runs of ``fn`` (seconds) and the last result (``setup()`` before
    each run, untimed)."""
    times, result = [], None
    for _ in range(repeat):
        if setup is not None:
            setup()
        began = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - began)
    return min(times), result


def machine() -> str:
    import os
    import platform

    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def vacuum(engine: Engine) -> None:
    """PostgreSQL: ``VACUUM ANALYZE`` the tables every recompute rewrites, as autovacuum does on
    a real server. The test machine's cluster runs with ``autovacuum = off``: after a day of
    benchmark runs ``flags`` held 47k live and 1.2M dead rows (410 MB), and every later figure
    of the flags read or rewrite measured the bloat, not the code."""
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("flags", "patient_summaries", "patients", "scores"):
            conn.exec_driver_sql(f"VACUUM ANALYZE {table}")


def clinic_database(url: str, *, patients: int = 10_000, weeks: int = 52, seed: int = 1,
                    therapists: int = 200) -> Engine:
    """An engine on a database holding the generated clinic (built on first use)."""
    engine = make_engine(url)
    upgrade(engine)
    tag = f"bench:{patients}x{weeks}:{seed}"
    with transaction(engine) as session:
        # the bench accounts log in with a password alone: a throw-away database requires no
        # second step of anyone (db.mfa; a real clinic's default is admins)
        if session.scalar(select(Setting.value).where(Setting.key == "mfa_required_roles")) is None:
            session.add(Setting(key="mfa_required_roles", value=""))
            session.flush()
        reused = session.scalar(select(Setting.value).where(Setting.key == "bench")) == tag
    if reused:
        vacuum(engine)
        return engine
    with transaction(engine) as session:
        if session.scalar(select(func.count()).select_from(Patient)):
            raise SystemExit(f"{url} holds another clinic; point the benchmark at an empty database.")
    began = time.perf_counter()
    frame = generate_clinic(patients, weeks, seed=seed)
    with transaction(engine) as session:
        from db.auth import hash_password

        names = [f"bench.t{i:04d}" for i in range(therapists)]
        hashed = hash_password(BENCH_PASSWORD)
        session.execute(insert(Account), [{"name": n, "role": "therapist", "team": f"T{i % 20:02d}",
                                           "password_hash": hashed, "active": True, "session_epoch": 0,
                                           "created_at": utcnow()} for i, n in enumerate(names)]
                        + [{"name": "bench.admin", "role": "admin", "password_hash": hashed, "active": True,
                            "session_epoch": 0, "created_at": utcnow()}])
        ids = dict(session.execute(select(Account.name, Account.id)).all())
        codes = pd.unique(frame["patient_id"])
        today = dt.date(2026, 11, 23)
        session.execute(insert(Patient), [
            {"code": c, "therapist_id": ids[names[i % therapists]], "status": "active",
             "start_date": today - dt.timedelta(weeks=weeks - 1), "planned_weeks": weeks, "created_at": utcnow()}
            for i, c in enumerate(codes)])
        pids = dict(session.execute(select(Patient.code, Patient.id)).all())
        frame = frame.assign(pid=frame["patient_id"].map(pids))
        now = utcnow()
        cols = zip(frame["pid"].tolist(), frame["instrument"].tolist(), frame["week"].tolist(),
                   frame["score"].astype(float).tolist(), strict=True)
        rows = [{"patient_id": p, "instrument": i, "week": w, "total": s, "source": "import",
                 "entered_at": now, "version": 1} for p, i, w, s in cols]
        for start in range(0, len(rows), BATCH):
            session.execute(insert(Score), rows[start:start + BATCH])
        session.add(Setting(key="bench", value=tag))
    print(f"built {tag} in {url.split('@')[-1]}: {len(frame):,} scores in {time.perf_counter() - began:.1f} s",
          flush=True)
    return engine
