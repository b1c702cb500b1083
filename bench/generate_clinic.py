"""Write a large synthetic clinic in the weekly-scores format (CONTRACT.md) for the benchmarks.

    python bench/generate_clinic.py --patients 10000 --weeks 52 --out /tmp/clinic.csv

Totals only by default (``--items`` adds item responses); prints how long generating and writing
took. All data are synthetic (see sample_data/CATALOG.md). Not part of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sample_data.generate import generate_clinic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a synthetic clinic CSV for benchmarks.")
    parser.add_argument("--patients", type=int, default=10_000)
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--out", type=Path, required=True, help="CSV file to write")
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--instruments", default="WAI-SR,SPIN", help="comma-separated registry codes")
    parser.add_argument("--items", action="store_true", help="also write item responses")
    args = parser.parse_args(argv)
    instruments = tuple(c.strip() for c in args.instruments.split(",") if c.strip())

    begin = time.perf_counter()
    try:
        frame = generate_clinic(args.patients, args.weeks, seed=args.seed, instruments=instruments,
                                items=args.items)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    generated = time.perf_counter()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False, encoding="utf-8", lineterminator="\n")
    written = time.perf_counter()
    print(f"{len(frame):,} rows ({args.patients:,} patients x {args.weeks} weeks, {', '.join(instruments)}) "
          f"-> {args.out}: generated in {generated - begin:.2f} s, written in {written - generated:.2f} s, "
          f"total {written - begin:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
