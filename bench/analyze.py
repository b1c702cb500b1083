"""Time ``core.models.fit_within_between`` (the ``analyze`` models); prints figures, asserts nothing.

Run: ``python bench/analyze.py`` (add ``--statsmodels-large`` to also time the statsmodels
engine at 20,000 × 20, which takes minutes).

Sizes: the published study (182 patients × 11 weeks, target < 2 s) and a large service
(20,000 patients × 20 weeks, target < 20 s), on simulated cohorts
(``core.models.simulate_cohort``: planted within −0.06 and between +0.12 as in the study,
SPIN falling 1.6 points a week on average with a patient-specific slope, 7% of rows
missing). For each size it
prints the time of ``engine="auto"`` (what ``analyze`` and the clinic page use), of each
engine forced, and of ``prepare_pairs`` alone, plus which engine/optimiser ``auto`` chose.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.models import fit_within_between, prepare_pairs, simulate_cohort

SIZES = ((182, 11, 2.0), (20_000, 20, 20.0))


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--statsmodels-large", action="store_true", help="also time engine='statsmodels' at 20,000 x 20 (slow)"
    )
    args = ap.parse_args()
    print(f"{'size':>14} {'rows':>8} {'pairs':>7} {'what':<30} {'seconds':>8}  note")
    for n_patients, n_weeks, target in SIZES:
        cohort = simulate_cohort(
            n_patients,
            n_weeks,
            within=-0.06,
            between=0.12,
            seed=7,
            missing=0.07,
            symptom_trend=-1.6,
            symptom_trend_sd=1.0,
        )
        size = f"{n_patients:,} x {n_weeks}"
        t_pairs, pairs = timed(lambda c=cohort: prepare_pairs(c), repeat=3)
        n_pairs = int(pairs[["symptom_t", "alliance_t", "symptom_next"]].notna().all(axis=1).sum())
        print(f"{size:>14} {len(cohort):>8,} {n_pairs:>7,} {'prepare_pairs':<30} {t_pairs:>8.3f}")
        t_auto, res = timed(lambda c=cohort: fit_within_between(c), repeat=3 if n_patients < 1000 else 1)
        chosen = ", ".join(f"{m.name}: {m.engine}/{m.optimizer}" for m in res.models.values())
        verdict = "meets" if t_auto < target else "MISSES"
        print(
            f"{size:>14} {len(cohort):>8,} {n_pairs:>7,} {'fit_within_between (auto)':<30} "
            f"{t_auto:>8.3f}  {verdict} target < {target:g} s; {chosen}"
        )
        t_prof, _ = timed(lambda c=cohort: fit_within_between(c, engine="profiled"))
        print(f"{size:>14} {len(cohort):>8,} {n_pairs:>7,} {'engine=profiled':<30} {t_prof:>8.3f}")
        if n_patients < 1000 or args.statsmodels_large:
            t_sm, res_sm = timed(lambda c=cohort: fit_within_between(c, engine="statsmodels"))
            chosen = ", ".join(
                f"{m.name}: {m.optimizer} converged={m.converged}" for m in (res_sm.total, res_sm.within)
            )
            print(f"{size:>14} {len(cohort):>8,} {n_pairs:>7,} {'engine=statsmodels':<30} {t_sm:>8.3f}  {chosen}")
        within = res.within.term("alliance_within_t")
        between = res.between.term("alliance_between")
        print(
            f"{'':>14} planted within -0.06, between 0.12 -> estimated "
            f"{within.estimate:+.3f} (SE {within.se:.3f}), {between.estimate:+.3f} (SE {between.se:.3f})"
        )


if __name__ == "__main__":
    main()
