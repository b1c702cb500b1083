"""Time importing a bench-size clinic (~1M scores) into a fresh SQLite database.

    python bench/generate_clinic.py --patients 10000 --weeks 52 --out /tmp/clinic.csv
    python bench/import.py /tmp/clinic.csv [--db sqlite:////tmp/bench_import.db]

Prints the time of each phase in-process (read, validate, plan, write + commit), then the
wall time of the command a data manager runs (``manage.py import-scores``) on a fresh
database and once more on the same file (everything unchanged). Target: < 60 s on SQLite.
Not part of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.validation import read_scores_file, validate_scores  # noqa: E402
from db.access import SYSTEM  # noqa: E402
from db.engine import make_engine, transaction, upgrade  # noqa: E402
from db.writes import apply_import, plan_import  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--db", help="SQLAlchemy URL of an EMPTY database (default: a temporary SQLite file)")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bench_import_"))
    url = args.db or f"sqlite:///{tmp / 'inprocess.db'}"

    data = args.file.read_bytes()
    t0 = time.perf_counter()
    raw = read_scores_file(data, name=args.file.name, max_bytes=10**9)
    t1 = time.perf_counter()
    result = validate_scores(raw)
    t2 = time.perf_counter()
    if not result.ok:
        print(f"{len(result.errors)} problems, first: {result.errors[0]}", file=sys.stderr)
        return 2
    engine = make_engine(url)
    upgrade(engine)
    t3 = time.perf_counter()
    with transaction(engine) as session:
        plan = plan_import(session, actor=SYSTEM, scores=result.scores)
        t4 = time.perf_counter()
        apply_import(session, actor=SYSTEM, plan=plan, filename=args.file.name)
    t5 = time.perf_counter()
    engine.dispose()
    rows = len(result.scores)
    print(f"{rows:,} rows, {len(data) / 1e6:.1f} MB, {engine.dialect.name}")
    print(f"  read      {t1 - t0:6.2f} s")
    print(f"  validate  {t2 - t1:6.2f} s")
    print(f"  plan      {t4 - t3:6.2f} s")
    print(f"  write     {t5 - t4:6.2f} s  (insert in batches + commit)")
    print(f"  total     {t5 - t0 - (t3 - t2):6.2f} s  ({rows / (t5 - t0 - (t3 - t2)):,.0f} rows/s)")

    if args.db is None:
        cli_url = f"sqlite:///{tmp / 'cli.db'}"
        for label in ("manage.py import-scores, fresh database", "manage.py import-scores again (all unchanged)"):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, str(ROOT / "manage.py"), "import-scores", str(args.file),
                                   "--db", cli_url], capture_output=True, text=True)
            took = time.perf_counter() - start
            print(f"{label}: {took:.1f} s (exit {done.returncode}) {done.stdout.strip() or done.stderr[:200]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
