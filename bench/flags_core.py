"""Time core.flags.compute_flags on 10,000 patients x 52 weeks x 2 instruments (~1M rows).

Run: python bench/flags_core.py [--patients 10000] [--weeks 52]
Prints the time of running_stats and compute_flags; never part of the pass/fail suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.centering import running_stats
from core.flags import compute_flags
from core.simulation import simulate_clinic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--weeks", type=int, default=52)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    t0 = time.perf_counter()
    sim = simulate_clinic(n_patients=args.patients, n_weeks=args.weeks, seed=args.seed)
    scores = sim.scores
    t1 = time.perf_counter()
    print(f"simulated {len(scores):,} rows ({args.patients:,} patients x {args.weeks} weeks x 2 instruments, "
          f"with item columns) in {t1 - t0:.2f} s")
    best = {}
    for name, fn in (("running_stats", lambda: running_stats(scores)),
                     ("compute_flags", lambda: compute_flags(scores)),
                     ("compute_flags(as_of_week=26)", lambda: compute_flags(scores, as_of_week=26))):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            res = fn()
            times.append(time.perf_counter() - t)
        best[name] = min(times)
        print(f"{name:30s} best of 3: {min(times):.2f} s  ({len(res):,} rows out)")


if __name__ == "__main__":
    main()
