"""A seeded clinic simulator with planted ruptures, and the calibration of the rupture rules.

Each simulated patient has weekly WAI-SR answers (12 items, 1-5, and their total) and a
weekly SPIN total. A share of patients gets one planted rupture of known week and size;
the others none. ``evaluate_ruptures`` then counts how many planted ruptures the flags find
(recall) and how many flags fall outside any planted rupture (false alerts per 100
patient-weeks), and how many patients are alerted at all.

Model (per patient i, week t = 1 … T; every number a simulation choice, documented in
docs/calibration.md)::

    level_it   = b_i + g_i * (1 - exp(-(t - 1) / 2.5))      b ~ N(37, 7), g ~ N(9, 4)
    e_it       = 0.5 * e_i,t-1 + N(0, 2)                     true week-to-week wobble (AR 1)
    rupture_it = -d_i in weeks w_i … w_i + L_i - 1 (then back; unrepaired: half back)
    item_ijt   = clip(round((level + e + rupture_j) / 12 + u_ij + N(0, 0.45)), 1, 5)
    WAI-SR     = sum of the 12 items                          (floor 12, ceiling 60)
    SPIN_it    = clip(round(a_i - s_i * t + 0.25 * rupture_i,t-1 + N(0, 3)), 0, 68)

with ``u_ij ~ N(0, 0.3)`` a stable item offset, a rupture concentrated on one subscale
(two thirds of the fall on the bond, goal or task items), and each week missing (no
questionnaire at all) with probability 0.073 (the 7.3% of Shalom et al., 2025).
Vectorised numpy over a (patients x weeks) grid; no loop over patients.

Run ``python -m core.simulation --patients 2000 --seed 1`` to print the calibration table.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from core import instruments as reg

SUBSCALE_ORDER = ("task", "bond", "goal")


@dataclass(frozen=True)
class Simulation:
    """Simulated scores (core frame contract) and the truth about planted ruptures.

    ``truth`` has one row per patient: ``patient_id, rupture_week`` (<NA> = none),
    ``rupture_size`` (points of the true total), ``rupture_length`` (weeks),
    ``repaired`` (the planted rupture returns fully) and ``subscale`` (where it fell).
    """

    scores: pd.DataFrame
    truth: pd.DataFrame


def simulate_clinic(
    *,
    n_patients: int = 2000,
    n_weeks: int = 12,
    seed: int = 1,
    rupture_share: float = 0.25,
    rupture_size: tuple[float, float] = (8.0, 16.0),
    missing_rate: float = 0.073,
    wobble_sd: float = 2.0,
    item_noise_sd: float = 0.45,
) -> Simulation:
    """Simulate a clinic (see the module docstring for the model).

    Parameters
    ----------
    n_patients, n_weeks, seed
        Size and seed (the same seed gives the same clinic).
    rupture_share
        Share of patients with one planted rupture (Larsson et al., 2018: 10.7% rupture
        without repair + 14.7% with repair = 25.4%).
    rupture_size
        Uniform range of the planted fall of the true total, in WAI-SR points.
    missing_rate
        Probability that a week has no questionnaire (both instruments missing).
    wobble_sd, item_noise_sd
        True week-to-week fluctuation (points) and item answer noise (item units).
    """
    if n_patients < 1 or n_weeks < 4:
        raise ValueError("Simulate at least one patient and four weeks.")
    rng = np.random.default_rng(seed)
    P, T = n_patients, n_weeks
    t = np.arange(1, T + 1)
    b = rng.normal(37, 7, P)
    g = rng.normal(9, 4, P)
    level = b[:, None] + g[:, None] * (1 - np.exp(-(t[None, :] - 1) / 2.5))
    e = np.zeros((P, T))
    shocks = rng.normal(0, wobble_sd, (P, T))
    e[:, 0] = shocks[:, 0] / np.sqrt(1 - 0.25)
    for k in range(1, T):  # loop over weeks (columns), vectorised over patients
        e[:, k] = 0.5 * e[:, k - 1] + shocks[:, k]

    has = rng.random(P) < rupture_share
    r_week = rng.integers(4, T + 1, P)  # at least 3 weeks before a planted rupture
    r_size = rng.uniform(*rupture_size, P)
    repaired = rng.random(P) < (14.7 / 25.4)
    r_len = np.where(repaired, rng.integers(1, 3, P), rng.integers(3, 7, P))
    r_sub = rng.integers(0, 3, P)
    in_r = has[:, None] & (t[None, :] >= r_week[:, None]) & (t[None, :] < (r_week + r_len)[:, None])
    after = has[:, None] & (t[None, :] >= (r_week + r_len)[:, None]) & ~repaired[:, None]
    fall = np.where(in_r, r_size[:, None], np.where(after, r_size[:, None] / 2, 0.0))

    inst = reg.get("WAI-SR")
    sub_of_item = np.zeros(12, dtype=int)
    for s_i, name in enumerate(SUBSCALE_ORDER):
        for item in inst.subscales[name]:
            sub_of_item[item - 1] = s_i
    # two thirds of the fall on the rupture's subscale (4 items), one third on the other 8
    on_sub = sub_of_item[None, :] == r_sub[:, None]  # (P, 12)
    share = np.where(on_sub, (2 / 3) / 4, (1 / 3) / 8)  # per item, sums to 1
    true_total = level + e
    item_mean = true_total[:, :, None] / 12 - fall[:, :, None] * share[:, None, :]
    offsets = rng.normal(0, 0.3, (P, 1, 12))
    offsets -= offsets.mean(axis=2, keepdims=True)
    items = np.clip(np.rint(item_mean + offsets + rng.normal(0, item_noise_sd, (P, T, 12))), 1, 5)
    wai = items.sum(axis=2)

    a = rng.normal(44, 10, P)
    slope = rng.normal(1.4, 0.8, P)
    lag_fall = np.concatenate([np.zeros((P, 1)), fall[:, :-1]], axis=1)
    spin = np.clip(np.rint(a[:, None] - slope[:, None] * (t[None, :] - 1) + 0.25 * lag_fall
                           + rng.normal(0, 3, (P, T))), 0, 68)

    observed = rng.random((P, T)) >= missing_rate
    pid = np.array([f"S{i:05d}" for i in range(P)], dtype=object)
    ther = np.array([f"T{i % 25:02d}" for i in range(P)], dtype=object)
    pp, tt = np.nonzero(observed)
    n = len(pp)
    wai_frame = pd.DataFrame({
        "patient_id": pd.array(pid[pp], dtype="string"),
        "therapist_id": pd.array(ther[pp], dtype="string"),
        "week": (tt + 1).astype("int64"),
        "instrument": pd.array(["WAI-SR"] * n, dtype="string"),
        "score": wai[pp, tt],
    })
    for j in range(12):
        wai_frame[f"item_{j + 1}"] = items[pp, tt, j]
    spin_frame = wai_frame[["patient_id", "therapist_id", "week"]].copy()
    spin_frame["instrument"] = pd.array(["SPIN"] * n, dtype="string")
    spin_frame["score"] = spin[pp, tt]
    for j in range(12):
        spin_frame[f"item_{j + 1}"] = np.nan
    scores = pd.concat([wai_frame, spin_frame], ignore_index=True)
    scores = scores.sort_values(["patient_id", "instrument", "week"], kind="stable").reset_index(drop=True)
    truth = pd.DataFrame({
        "patient_id": pd.array(pid, dtype="string"),
        "rupture_week": pd.array(np.where(has, r_week, 0), dtype="Int64"),
        "rupture_size": np.where(has, r_size, np.nan),
        "rupture_length": pd.array(np.where(has, r_len, 0), dtype="Int64"),
        "repaired": pd.array(np.where(has, repaired, False), dtype="boolean"),
        "subscale": pd.array(np.where(has, np.array(SUBSCALE_ORDER, dtype=object)[r_sub], None), dtype="string"),
    })
    truth.loc[~has, ["rupture_week", "rupture_length", "repaired", "subscale"]] = pd.NA
    return Simulation(scores=scores, truth=truth)


def evaluate_ruptures(flags: pd.DataFrame, sim: Simulation, *, instrument: str = "WAI-SR",
                      tolerance: int = 1) -> dict[str, float]:
    """Recall and false alerts of the ``rupture`` flags against the planted ruptures.

    A planted rupture at week w is *found* when a rupture flag falls in weeks w … w +
    ``tolerance`` (a missed questionnaire at w can delay it by a week). A rupture flag is a
    *false alert* when it lies outside every planted rupture's weeks w … w + length
    (+ ``tolerance``); false alerts are counted per 100 stored patient-weeks of the alliance
    instrument. ``pct_patients_alerted`` counts patients with any rupture flag;
    ``pct_clean_alerted`` patients without a planted rupture who got one.
    """
    f = flags[(flags["kind"] == "rupture") & (flags["instrument"] == instrument)]
    truth = sim.truth.set_index("patient_id")
    rw = truth["rupture_week"].reindex(f["patient_id"]).to_numpy(dtype="float64", na_value=np.nan)
    rl = truth["rupture_length"].reindex(f["patient_id"]).to_numpy(dtype="float64", na_value=np.nan)
    wk = f["week"].to_numpy()
    inside = ~np.isnan(rw) & (wk >= rw) & (wk <= rw + rl - 1 + tolerance)
    found_at = ~np.isnan(rw) & (wk >= rw) & (wk <= rw + tolerance)
    found_patients = set(f["patient_id"][found_at])
    planted = truth.index[truth["rupture_week"].notna()]
    weeks = int((sim.scores["instrument"] == instrument).sum())
    n_pat = len(truth)
    alerted = set(f["patient_id"])
    clean = set(truth.index[truth["rupture_week"].isna()])
    return {
        "planted": float(len(planted)),
        "recall": len(found_patients & set(planted)) / max(len(planted), 1),
        "false_per_100_weeks": 100.0 * float((~inside).sum()) / max(weeks, 1),
        "flags_per_100_weeks": 100.0 * len(f) / max(weeks, 1),
        "pct_patients_alerted": 100.0 * len(alerted) / n_pat,
        "pct_clean_alerted": 100.0 * len(alerted & clean) / max(len(clean), 1),
        "precision": float(inside.sum()) / max(len(f), 1),
    }


def candidate_configs() -> dict[str, object]:
    """The rule sets compared in docs/calibration.md (the default first)."""
    from core.flags import DEFAULT_CONFIG, BelowOwnLevelRule, ReliableDropRule

    d = DEFAULT_CONFIG
    B, R = BelowOwnLevelRule, ReliableDropRule
    return {
        "default: reliable_drop (1.5 RC) OR below_own_level (k 1.5, >= 1 RC, m 3, floor 3)": d,
        "reliable_drop at 1 RC alone (literal Jacobson-Truax)": replace(d, below_own_level=None,
                                                                        reliable_drop=R(rc_multiple=1.0)),
        "reliable_drop at 1.5 RC alone": replace(d, below_own_level=None),
        "below_own_level (k 1.5, >= 1 RC) alone": replace(d, reliable_drop=None),
        "reliable_drop 1 RC OR below_own_level": replace(d, reliable_drop=R(rc_multiple=1.0)),
        "OR, below_own_level k 2 (Strauss et al. 2006)": replace(d, below_own_level=B(k_sd=2.0)),
        "OR, below_own_level k 1 (Stiles et al. 2004)": replace(d, below_own_level=B(k_sd=1.0)),
        "OR, below_own_level without the 1 RC criterion": replace(d, below_own_level=B(rc_multiple=None)),
        "OR, below_own_level m 2 prior weeks": replace(d, below_own_level=B(min_prior_weeks=2)),
        "AND of reliable_drop 1 RC and below_own_level k 2, no RC criterion": replace(
            d, rupture_requires="all", reliable_drop=R(rc_multiple=1.0), below_own_level=B(k_sd=2.0, rc_multiple=None)),
    }


def calibration_table(*, n_patients: int = 2000, seed: int = 1, n_weeks: int = 12) -> pd.DataFrame:
    """Recall and false alerts of each candidate rule set on one simulated clinic."""
    from core.flags import compute_flags

    sim = simulate_clinic(n_patients=n_patients, n_weeks=n_weeks, seed=seed)
    rows = []
    for name, cfg in candidate_configs().items():
        res = evaluate_ruptures(compute_flags(sim.scores, config=cfg), sim)
        rows.append({"rule set": name, **res})
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame) -> str:
    cols = ["rule set", "recall", "false_per_100_weeks", "flags_per_100_weeks", "pct_patients_alerted",
            "pct_clean_alerted", "precision"]
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    lines = []
    for _, r in table.iterrows():
        lines.append(f"| {r['rule set']} | {r['recall']:.1%} | {r['false_per_100_weeks']:.2f} | "
                     f"{r['flags_per_100_weeks']:.2f} | {r['pct_patients_alerted']:.1f}% | "
                     f"{r['pct_clean_alerted']:.1f}% | {r['precision']:.1%} |")
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m core.simulation",
                                 description="Calibrate the rupture rules on a simulated clinic.")
    ap.add_argument("--patients", type=int, default=2000)
    ap.add_argument("--weeks", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)
    table = calibration_table(n_patients=args.patients, seed=args.seed, n_weeks=args.weeks)
    print(f"{args.patients} simulated patients x {args.weeks} weeks, seed {args.seed} "
          f"(25% with one planted rupture of 8-16 points)\n")
    print(_markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
