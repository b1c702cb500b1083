"""Benchmark: the whole ``flags`` computation beside merely reading the scores it needs.

    python bench/flags.py [--db URL] [--patients 10000] [--weeks 52] [--repeat 3]

PRODUCT.md target: for 10,000 patients x 52 weeks (~1M scores) the flags computation costs
at most 1.5x the time of reading those scores from the database. Prints, best of
``--repeat`` runs each:

* read: ``db.queries.read_scores`` (the query and the DataFrame in the core contract);
* compute: ``core.flags.compute_flags`` on that frame (plus the patients' current weeks);
* ratio = compute / read (the target), and the end-to-end ``db.flags.read_flags`` time.
"""

from __future__ import annotations

import argparse
import datetime as dt

from common import best, clinic_database, machine

from core.caseload import current_weeks
from core.flags import compute_flags
from db.access import SYSTEM
from db.engine import session_factory
from db.flags import read_flags
from db.queries import list_patients, read_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="sqlite:////tmp/alliance-bench.db")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    engine = clinic_database(args.db, patients=args.patients, weeks=args.weeks)
    today = dt.date(2026, 11, 23)
    with session_factory(engine)() as session:
        t_read, scores = best(lambda: read_scores(session, actor=SYSTEM), args.repeat)
        patients = list_patients(session, actor=SYSTEM)
        t_compute, flags = best(lambda: compute_flags(
            scores, current_week=current_weeks(patients, today=today)), args.repeat)
        t_total, _ = best(lambda: read_flags(session, actor=SYSTEM, today=today), 1)
    print(f"machine: {machine()}; database: {engine.dialect.name}")
    print(f"scores: {len(scores):,} ({args.patients:,} patients x {args.weeks} weeks); flags raised: {len(flags):,}")
    print(f"read scores from the database: {t_read:6.2f} s")
    print(f"compute every flag:            {t_compute:6.2f} s")
    print(f"ratio compute/read:            {t_compute / t_read:6.2f}  (target <= 1.5)")
    print(f"reading the stored flags (db.flags.read_flags: stored rows + calendar + notes): {t_total:.2f} s")


if __name__ == "__main__":
    main()
