"""Whole commands against a plain driver fetch of the scores table (issue 19's "as whole processes").

    python bench/processes.py [--db URL] [--runs 3]
    python bench/processes.py --db postgresql+psycopg://postgres@127.0.0.1/alliance_bench

Each figure is the wall time of a fresh ``python`` process (imports, connecting, the work,
writing the output), median of ``--runs``. The reference is the same kind of process doing the
least a program can do to get the rows: ``SELECT * FROM scores`` and ``fetchall()`` with the
plain driver (sqlite3 or psycopg). Targets: ``manage.py export`` of the whole clinic (CSV to a
file) <= 2.5 x the reference, ``manage.py refresh-flags`` <= 3 x, ``manage.py --help`` <= 0.5 s.
Builds or reuses the clinic of bench/common.py (10,000 x 52); not part of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy.engine import make_url

from bench.common import clinic_database, machine, vacuum
from bench.flagstore import ensure_pg_database, loadavg
from db import flagstore

ROOT = Path(__file__).resolve().parent.parent

PLAIN_SQLITE = """
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
rows = con.execute("SELECT * FROM scores").fetchall()
print(len(rows))
"""
PLAIN_PG = """
import psycopg, sys
with psycopg.connect(sys.argv[1]) as con:
    rows = con.execute("SELECT * FROM scores").fetchall()
print(len(rows))
"""


def plain_command(url: str) -> list[str]:
    """The reference process: the plain driver's fetch of every score."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return [sys.executable, "-c", PLAIN_SQLITE, str(parsed.database)]
    dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
    return [sys.executable, "-c", PLAIN_PG, dsn]


def timed(command: list[str], runs: int, *, out: Path | None = None,
          setup: Callable[[], None] | None = None) -> tuple[float, list[float], str]:
    """Median, all times and the last stdout tail of ``runs`` runs of ``command`` (``setup``
    before each, untimed)."""
    times, tail = [], ""
    for _ in range(runs):
        if setup is not None:
            setup()
        began = time.perf_counter()
        if out is not None:
            with out.open("wb") as sink:
                done = subprocess.run(command, cwd=ROOT, stdout=sink, stderr=subprocess.PIPE)
            tail = f"{out.stat().st_size / 1e6:.1f} MB"
        else:
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            tail = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
        times.append(time.perf_counter() - began)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command[:4])} failed ({done.returncode}): {done.stderr!s:.2000}")
    return statistics.median(times), times, tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite:////tmp/alliance-bench.db")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ensure_pg_database(args.db)
    engine = clinic_database(args.db)
    flagstore.ensure_current(engine)
    engine.dispose()
    print(f"machine: {machine()}; database: {make_url(args.db).get_backend_name()}; load before: {loadavg()}",
          flush=True)
    manage = [sys.executable, "manage.py"]
    out = Path(tempfile.mkdtemp(prefix="bench-processes-")) / "export.csv"
    t_plain, all_plain, n = timed(plain_command(args.db), args.runs)
    print(f"plain driver fetch of every score ({n} rows): median {t_plain:.2f} s {fmt(all_plain)}", flush=True)
    t_export, all_export, size = timed(manage + ["export", "--db", args.db], args.runs, out=out)
    print(f"manage.py export (whole clinic, {size}): median {t_export:.2f} s {fmt(all_export)}: "
          f"{ratio(t_export, t_plain, 2.5)}", flush=True)
    t_refresh, all_refresh, said = timed(manage + ["refresh-flags", "--db", args.db], args.runs,
                                         setup=lambda: vacuum(engine))
    print(f"manage.py refresh-flags ({said}): median {t_refresh:.2f} s {fmt(all_refresh)}: "
          f"{ratio(t_refresh, t_plain, 3.0)}", flush=True)
    t_help, all_help, _ = timed(manage + ["--help"], max(args.runs, 5))
    print(f"manage.py --help: median {t_help:.2f} s {fmt(all_help)} (target <= 0.5 s) "
          f"{'PASS' if t_help <= 0.5 else 'MISS'}", flush=True)
    print(f"load after: {loadavg()}")


def fmt(times: list[float]) -> str:
    return "(" + ", ".join(f"{t:.2f}" for t in times) + ")"


def ratio(value: float, reference: float, target: float) -> str:
    r = value / reference
    return f"{r:.2f} x the plain fetch (target <= {target} x) {'PASS' if r <= target else 'MISS'}"


if __name__ == "__main__":
    main()
