"""A seeded clinic simulator with planted ruptures, and the calibration of the rupture rules.

One simulator for the calibration (docs/calibration.md) and the tests. Each simulated patient
has weekly WAI-SR answers (12 items, 1-5, and their total) and a weekly SPIN total. A share of
patients gets one planted rupture of known week, size, length and recovery; the others none.
``evaluate_ruptures`` counts how many planted ruptures the flags find (recall) and how many
flags fall outside any planted rupture (false alerts per 100 patient-weeks), overall and by
stratum (``strata_table``). (The demo clinic of ``sample_data/generate.py`` is a separate,
hand-shaped story for the screens and is not used for calibration.)

Model (per patient i, week t = 1 ... T; every number a simulation choice, documented in
docs/calibration.md)::

    course(t)  = (m_t - m_1) / (m_11 - m_1)   m = the WAI-SR week means of Shalom et al. (2025)
    level_it   = b_i + g_i * course(t)        b ~ N(36, 6), g ~ N(10, 4); near the ceiling (15%):
                                              b ~ N(53, 2), g ~ N(3, 1.5)
    e_it       = 0.5 * e_i,t-1 + N(0, w_i)    true week-to-week wobble (AR 1)
    rupture_it = -d_i in weeks r_i ... r_i + L_i - 1, then 0 (full recovery), -d_i / 2
                 (partial) or -d_i (none)
    item_ijt   = clip(round((level + e + rupture_j) / 12 + u_ij + N(0, a_i)), 1, 5)
    WAI-SR     = sum of the 12 items          (floor 12, ceiling 60)
    SPIN_it    = clip(round(a_i - s_i * (t - 1) + 0.25 * rupture_i,t-1 + N(0, 3)), 0, 68)

Steadiness strata (share; true wobble w, item noise a): steady (25%; 0.4, 0.12), typical (50%;
2.0, 0.45), noisy (25%; 4.5, 0.9), giving week-to-week SDs around the own course of about 1, 3
and 6 points. ``u_ij ~ N(0, 0.3)`` is a stable item offset; a rupture is concentrated on one
subscale (two thirds of the fall on the bond, goal or task items); 25% of patients have one
rupture (Larsson et al., 2018: 10.7% + 14.7%) in week 4 ... T of 5-15 points lasting 1-3 weeks,
with full (50%), partial (25%) or no (25%) recovery; each week is missing (no questionnaire at
all) with probability 0.073 (the 7.3% of Shalom et al., 2025). Vectorised numpy over a
(patients x weeks) grid; loops run over weeks, never over patients.

Run ``python -m core.simulation --patients 4000 --seed 1`` to print the calibration tables.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from core import instruments as reg

if TYPE_CHECKING:
    from core.flags import FlagConfig

#: Responders' SPIN improvement (points a week): mean, SD, least. With 20% non-responders the
#: simulated clinic's mean course matches the seed trial's SPIN week means (CLINICAL.md).
RESPONDER_RATE = (2.0, 0.5, 0.8)
SUBSCALE_ORDER = ("task", "bond", "goal")
#: Steadiness strata: name -> (share, true wobble SD in points, item answer noise SD).
STEADINESS = {"steady": (0.25, 0.4, 0.12), "typical": (0.60, 1.5, 0.45), "noisy": (0.15, 4.5, 0.9)}
RECOVERY = {"full": 0.50, "partial": 0.25, "none": 0.25}


@dataclass(frozen=True)
class Simulation:
    """Simulated scores (core frame contract) and the truth about each patient.

    ``truth`` has one row per patient: ``patient_id, steadiness, near_ceiling, responder`` (SPIN
    improves as expected),
    rupture_week`` (<NA> = none), ``rupture_size`` (points of the true total),
    ``rupture_length`` (weeks), ``recovery`` (full / partial / none) and ``subscale``.
    """

    scores: pd.DataFrame
    truth: pd.DataFrame


def _course(n_weeks: int) -> np.ndarray:
    means = np.asarray(reg.get("WAI-SR").week_means, dtype="float64")
    shape = (means - means[0]) / (means[-1] - means[0])
    t = np.arange(n_weeks)
    return shape[np.minimum(t, len(shape) - 1)]


def simulate_clinic(
    *,
    n_patients: int = 2000,
    n_weeks: int = 12,
    seed: int = 1,
    rupture_share: float = 0.25,
    rupture_size: tuple[float, float] = (5.0, 15.0),
    rupture_length: tuple[int, int] = (1, 3),
    missing_rate: float = 0.073,
    ceiling_share: float = 0.15,
    early_rise: bool = True,
    nonresponder_share: float = 0.0,
) -> Simulation:
    """Simulate a clinic (see the module docstring for the model).

    Parameters
    ----------
    n_patients, n_weeks, seed
        Size and seed (the same seed gives the same clinic).
    rupture_share
        Share of patients with one planted rupture.
    rupture_size, rupture_length
        Uniform ranges of the planted fall of the true total (points) and of its length (weeks).
    missing_rate
        Probability that a week has no questionnaire (both instruments missing).
    ceiling_share
        Share of patients whose alliance starts near the ceiling of 60.
    early_rise
        ``False``: no rise over the first weeks (each patient's level stays flat).
    nonresponder_share
        Share of patients whose SPIN does not improve (slope U(-0.5, 0) points a week: flat or
        worsening); the others then improve by ``RESPONDER_RATE`` (N(2.0, 0.5) points a week, at
        least 0.8; with a share of 0.2 the clinic's mean course is the seed trial's). 0 (the
        default) keeps the rupture calibration's SPIN (slope N(1.4, 0.8)). Drawn after everything
        else, so the alliance is the same clinic whatever the share.
    """
    if n_patients < 1 or n_weeks < 4:
        raise ValueError("Simulate at least one patient and four weeks.")
    rng = np.random.default_rng(seed)
    P, T = n_patients, n_weeks
    t = np.arange(1, T + 1)
    names = np.array(list(STEADINESS))
    stratum = rng.choice(len(names), P, p=[v[0] for v in STEADINESS.values()])
    wobble = np.array([v[1] for v in STEADINESS.values()])[stratum]
    noise = np.array([v[2] for v in STEADINESS.values()])[stratum]
    ceiling = rng.random(P) < ceiling_share
    b = np.where(ceiling, rng.normal(53, 2, P), rng.normal(36, 6, P))
    g = np.where(ceiling, rng.normal(3, 1.5, P), rng.normal(10, 4, P)) * (1.0 if early_rise else 0.0)
    level = b[:, None] + g[:, None] * _course(T)[None, :]
    e = np.zeros((P, T))
    shocks = rng.normal(0, 1, (P, T)) * wobble[:, None]
    e[:, 0] = shocks[:, 0] / np.sqrt(1 - 0.25)
    for k in range(1, T):  # loop over weeks (columns), vectorised over patients
        e[:, k] = 0.5 * e[:, k - 1] + shocks[:, k]

    has = rng.random(P) < rupture_share
    r_week = rng.integers(4, T + 1, P)  # at least 3 weeks before a planted rupture
    r_size = rng.uniform(*rupture_size, P)
    r_len = rng.integers(rupture_length[0], rupture_length[1] + 1, P)
    rec_names = np.array(list(RECOVERY))
    recovery = rng.choice(len(rec_names), P, p=list(RECOVERY.values()))
    r_sub = rng.integers(0, 3, P)
    in_r = has[:, None] & (t[None, :] >= r_week[:, None]) & (t[None, :] < (r_week + r_len)[:, None])
    after = has[:, None] & (t[None, :] >= (r_week + r_len)[:, None])
    left = np.array([0.0, 0.5, 1.0])[recovery]  # share of the fall that stays after the rupture weeks
    fall = np.where(in_r, r_size[:, None], np.where(after, (r_size * left)[:, None], 0.0))

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
    answer_noise = rng.normal(0, 1, (P, T, 12)) * noise[:, None, None]
    items = np.clip(np.rint(item_mean + offsets + answer_noise), 1, 5)
    wai = items.sum(axis=2)

    a = rng.normal(44, 10, P)
    slope = rng.normal(1.4, 0.8, P)
    lag_fall = np.concatenate([np.zeros((P, 1)), fall[:, :-1]], axis=1)
    spin_noise = rng.normal(0, 3, (P, T))
    spin = np.clip(np.rint(a[:, None] - slope[:, None] * (t[None, :] - 1) + 0.25 * lag_fall + spin_noise), 0, 68)

    observed = rng.random((P, T)) >= missing_rate
    responder = np.ones(P, dtype=bool)
    if nonresponder_share > 0:
        responder = rng.random(P) >= nonresponder_share
        mean, sd, least = RESPONDER_RATE
        slope = np.where(responder, np.maximum(rng.normal(mean, sd, P), least), rng.uniform(-0.5, 0.0, P))
        spin = np.clip(np.rint(a[:, None] - slope[:, None] * (t[None, :] - 1) + 0.25 * lag_fall + spin_noise), 0, 68)
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
        "steadiness": pd.array(names[stratum], dtype="string"),
        "near_ceiling": ceiling,
        "responder": responder,
        "rupture_week": pd.array(np.where(has, r_week, 0), dtype="Int64"),
        "rupture_size": np.where(has, r_size, np.nan),
        "rupture_length": pd.array(np.where(has, r_len, 0), dtype="Int64"),
        "recovery": pd.Series(rec_names[recovery], dtype="string").where(has),
        "subscale": pd.Series(np.array(SUBSCALE_ORDER)[r_sub], dtype="string").where(has),
    })
    truth.loc[~has, ["rupture_week", "rupture_length", "recovery", "subscale"]] = pd.NA
    return Simulation(scores=scores, truth=truth)


def rupture_outcomes(flags: pd.DataFrame, sim: Simulation, *, instrument: str = "WAI-SR",
                     tolerance: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per planted rupture whether it was found, and per rupture flag whether it was false.

    A planted rupture at week r is *found* when a rupture flag falls in weeks r ... r +
    ``tolerance`` (a missed questionnaire at r can delay it by a week). A rupture flag is a
    *false alert* when it lies outside every planted rupture: before r, or after r + length - 1
    + ``tolerance`` of a fully recovered one (after a partial or no recovery the alliance stays
    lower, so a later flag is not false).

    Returns
    -------
    (planted, flagged)
        ``planted``: the truth rows with a rupture plus ``found``; ``flagged``: the rupture
        flags (patient_id, week) plus ``false`` and the patient's truth columns.
    """
    f = flags[(flags["kind"] == "rupture") & (flags["instrument"] == instrument)][["patient_id", "week"]]
    truth = sim.truth.set_index("patient_id")
    t = truth.reindex(f["patient_id"])
    rw = t["rupture_week"].to_numpy(dtype="float64", na_value=np.nan)
    rl = t["rupture_length"].to_numpy(dtype="float64", na_value=np.nan)
    full = (t["recovery"] == "full").fillna(False).to_numpy(dtype=bool)
    wk = f["week"].to_numpy()
    end = np.where(full, rw + rl - 1 + tolerance, np.inf)
    inside = ~np.isnan(rw) & (wk >= rw) & (wk <= end)
    found_at = ~np.isnan(rw) & (wk >= rw) & (wk <= rw + tolerance)
    flagged = f.reset_index(drop=True).assign(false=~inside)
    flagged = flagged.join(t.reset_index(drop=True)[["steadiness", "near_ceiling"]])
    planted = sim.truth[sim.truth["rupture_week"].notna()].copy()
    planted["found"] = planted["patient_id"].isin(set(f["patient_id"][found_at]))
    return planted.reset_index(drop=True), flagged


def evaluate_ruptures(flags: pd.DataFrame, sim: Simulation, *, instrument: str = "WAI-SR", tolerance: int = 1,
                      sizes: tuple[float, float] = (8.0, 15.0)) -> dict[str, float]:
    """Recall (planted ruptures of ``sizes`` points) and false alerts per 100 patient-weeks.

    See :func:`rupture_outcomes` for what counts as found and as false. ``pct_patients_alerted``
    counts patients with any rupture flag; ``pct_clean_alerted`` patients without a planted
    rupture who got one; ``recall_all`` counts every planted size.
    """
    planted, flagged = rupture_outcomes(flags, sim, instrument=instrument, tolerance=tolerance)
    in_size = planted["rupture_size"].between(*sizes)
    weeks = int((sim.scores["instrument"] == instrument).sum())
    truth = sim.truth
    clean = set(truth["patient_id"][truth["rupture_week"].isna()])
    alerted = set(flagged["patient_id"])
    return {
        "planted": float(in_size.sum()),
        "recall": float(planted["found"][in_size].mean()) if in_size.any() else float("nan"),
        "recall_all": float(planted["found"].mean()) if len(planted) else float("nan"),
        "false_per_100_weeks": 100.0 * float(flagged["false"].sum()) / max(weeks, 1),
        "flags_per_100_weeks": 100.0 * len(flagged) / max(weeks, 1),
        "pct_patients_alerted": 100.0 * len(alerted) / len(truth),
        "pct_clean_alerted": 100.0 * len(alerted & clean) / max(len(clean), 1),
        "precision": float((~flagged["false"]).mean()) if len(flagged) else float("nan"),
    }


def evaluate_not_on_track(flags: pd.DataFrame, sim: Simulation, *, instrument: str = "SPIN",
                          by_week: int = 6) -> dict[str, float]:
    """Share of non-responders with a ``not_on_track`` flag by ``by_week``, and of responders ever."""
    f = flags[(flags["kind"] == "not_on_track") & (flags["instrument"] == instrument)]
    truth = sim.truth.set_index("patient_id")
    non = truth.index[~truth["responder"].astype(bool)]
    resp = truth.index[truth["responder"].astype(bool)]
    early = set(f["patient_id"][f["week"] <= by_week])
    ever = set(f["patient_id"])
    weeks = int((sim.scores["instrument"] == instrument).sum())
    return {"nonresponders": float(len(non)), "responders": float(len(resp)),
            "nonresponders_flagged_by_week": len(early & set(non)) / max(len(non), 1),
            "responders_ever_flagged": len(ever & set(resp)) / max(len(resp), 1),
            "flags_per_100_weeks": 100.0 * len(f) / max(weeks, 1)}


def strata_table(flags: pd.DataFrame, sim: Simulation, *, instrument: str = "WAI-SR",
                 tolerance: int = 1) -> pd.DataFrame:
    """Recall and false alerts per 100 patient-weeks by stratum.

    Strata: drop size (5-8, 8-12, 12-15 points), steadiness (steady / typical / noisy), near the
    ceiling or not, and early (weeks 4-6) or late (week 7 on) ruptures. Recall by size counts
    every planted rupture of that size; the other strata's recall counts 8-15-point ruptures.
    False alerts are per 100 stored patient-weeks of the stratum's patients (for the size and
    week strata: not defined, NaN).
    """
    planted, flagged = rupture_outcomes(flags, sim, instrument=instrument, tolerance=tolerance)
    weeks = sim.scores[sim.scores["instrument"] == instrument][["patient_id", "week"]]
    truth = sim.truth.set_index("patient_id")
    wk_truth = truth.reindex(weeks["patient_id"])
    big = planted["rupture_size"].between(8.0, 15.0)
    rows = []

    def add(stratum, value, recall_mask, fa_patients=None):
        n = int(recall_mask.sum())
        rec = float(planted["found"][recall_mask].mean()) if n else float("nan")
        fa = float("nan")
        if fa_patients is not None:
            pw = int(fa_patients(wk_truth).sum())
            fl = flagged[fa_patients(flagged)]
            fa = 100.0 * float(fl["false"].sum()) / max(pw, 1)
        rows.append({"stratum": stratum, "value": value, "ruptures": n, "recall": rec, "false_per_100_weeks": fa})

    for lo, hi in ((5, 8), (8, 12), (12, 15)):
        add("drop size", f"{lo}-{hi} points", planted["rupture_size"].between(lo, hi, inclusive="left")
            if hi < 15 else planted["rupture_size"].between(lo, hi))
    for name in STEADINESS:
        add("steadiness", name, big & (planted["steadiness"] == name),
            lambda fr, name=name: (fr["steadiness"] == name).fillna(False).to_numpy(dtype=bool))
    for flag, label in ((True, "near the ceiling"), (False, "not near the ceiling")):
        add("ceiling", label, big & (planted["near_ceiling"] == flag),
            lambda fr, flag=flag: (fr["near_ceiling"] == flag).fillna(False).to_numpy(dtype=bool))
    rweek = planted["rupture_week"].astype("float64")
    add("weeks", "early (4-6)", big & (rweek <= 6))
    add("weeks", "late (7 on)", big & (rweek >= 7))
    return pd.DataFrame(rows)


#: Marks a candidate rule set that keeps the literature course (a new clinic) instead of the
#: simulated clinic's own frozen one.
LITERATURE = "literature course"


def candidate_configs() -> dict[str, FlagConfig]:
    """The rule sets compared in docs/calibration.md (the default first).

    Every ``below_expected`` candidate runs with the simulated clinic's own frozen course (as
    ``manage.py freeze-parameters --course`` would store it), except the one named with
    ``LITERATURE``.
    """
    from core.flags import DEFAULT_CONFIG, RULES_0_3, BelowExpectedRule, ReliableDropRule

    d = DEFAULT_CONFIG
    e = d.below_expected
    if e is None:
        raise ValueError("The default rule set has no below_expected rule for the candidates to vary.")
    return {
        "default: below_expected (total k 3.2, subscales k 2.3, two weeks k 3.0; clinic's own course)": d,
        f"default, {LITERATURE} (a new clinic before freezing its own)": d,
        "old default (0.1-0.3): reliable_drop 1.5 RC OR below_own_level": RULES_0_3,
        "below_expected without the expected course (flat own level)": replace(d, below_expected=replace(
            e, use_course=False)),
        "below_expected with the own SD alone (no shrinkage)": replace(d, below_expected=replace(e, prior_weeks=0.0)),
        "below_expected without the subscale test (total only, k 2.6)": replace(d, below_expected=replace(
            e, subscale_k_sd=None, k_sd=2.6)),
        "below_expected without the two-week test": replace(d, below_expected=replace(e, two_week_k_sd=None)),
        "below_expected, subscales k 2.1 (more sensitive)": replace(d, below_expected=replace(e, subscale_k_sd=2.1)),
        "below_expected, subscales k 2.5 (quieter)": replace(d, below_expected=replace(e, subscale_k_sd=2.5)),
        "below_expected OR reliable_drop 1.5 RC": replace(d, reliable_drop=ReliableDropRule()),
        f"below_expected total only (k 2.6), {LITERATURE}": replace(
            d, below_expected=BelowExpectedRule(k_sd=2.6, subscale_k_sd=None)),
    }


def calibration_table(*, n_patients: int = 4000, seed: int = 1, n_weeks: int = 12,
                      configs: dict[str, FlagConfig] | None = None) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Recall and false alerts of each candidate rule set on one simulated clinic, and strata.

    The clinic's own course is estimated once (``core.course.estimate_alliance_course``) and
    frozen into every candidate that uses ``below_expected``, except those named ``LITERATURE``.
    """
    from core.course import as_config, estimate_alliance_course
    from core.flags import compute_flags

    sim = simulate_clinic(n_patients=n_patients, n_weeks=n_weeks, seed=seed)
    own = as_config(estimate_alliance_course(sim.scores, "WAI-SR"))
    rows, strata = [], {}
    for name, cfg in (configs or candidate_configs()).items():
        if cfg.below_expected is not None and LITERATURE not in name:
            cfg = replace(cfg, alliance_course=own)
        flags = compute_flags(sim.scores, config=cfg)
        rows.append({"rule set": name, **evaluate_ruptures(flags, sim)})
        strata[name] = strata_table(flags, sim)
    return pd.DataFrame(rows), strata


def seed_summary(seeds: range, *, n_patients: int = 4000, n_weeks: int = 12) -> pd.DataFrame:
    """The default rule set (with each clinic's own frozen course) on several simulated clinics:
    recall of 8-15-point ruptures, false alerts per 100 patient-weeks, steady patients' recall and
    noisy patients' false alerts, one row per seed."""
    from core.course import as_config, estimate_alliance_course
    from core.flags import DEFAULT_CONFIG, compute_flags

    rows = []
    for seed in seeds:
        sim = simulate_clinic(n_patients=n_patients, n_weeks=n_weeks, seed=seed)
        cfg = replace(DEFAULT_CONFIG, alliance_course=as_config(estimate_alliance_course(sim.scores, "WAI-SR")))
        flags = compute_flags(sim.scores, config=cfg)
        res = evaluate_ruptures(flags, sim)
        by = strata_table(flags, sim).set_index("value")
        rows.append({"seed": seed, "recall": res["recall"], "false_per_100_weeks": res["false_per_100_weeks"],
                     "steady_recall": by.loc["steady", "recall"],
                     "noisy_false_per_100_weeks": by.loc["noisy", "false_per_100_weeks"]})
    return pd.DataFrame(rows)


def not_on_track_table(seeds: range, *, n_train: int = 2000, n_test: int = 3000, share: float = 0.2,
                       by_week: int = 6) -> pd.DataFrame:
    """``not_on_track`` on simulated clinics with planted non-responders, one row per seed and course.

    For each seed, the expected SPIN course is estimated on a training clinic of ``n_train``
    completed courses (seed + 100, as ``freeze-parameters --course`` would) and applied to a new
    clinic of ``n_test`` (seed); the literature default is applied to the same clinic.
    """
    from core.course import estimate_symptom_course
    from core.flags import DEFAULT_CONFIG, compute_flags

    rows = []
    for seed in seeds:
        train = simulate_clinic(n_patients=n_train, seed=100 + seed, nonresponder_share=share)
        own = estimate_symptom_course(train.scores, "SPIN")
        test = simulate_clinic(n_patients=n_test, seed=seed, nonresponder_share=share)
        for name, cfg in (("clinic's own course", replace(DEFAULT_CONFIG, symptom_course=(own.as_tuple(),))),
                          ("literature default", DEFAULT_CONFIG)):
            res = evaluate_not_on_track(compute_flags(test.scores, config=cfg), test, by_week=by_week)
            rows.append({"seed": seed, "course": name, **res})
    return pd.DataFrame(rows)


def _letters(n: int) -> list[str]:
    return [chr(ord("A") + i) for i in range(n)]


def _markdown(table: pd.DataFrame) -> str:
    head = ("| | rule set | recall 8-15 pts | recall 5-15 pts | false alerts / 100 pw | % patients alerted | "
            "% without rupture alerted | precision |\n|---|---|---|---|---|---|---|---|\n")
    lines = []
    for letter, (_, r) in zip(_letters(len(table)), table.iterrows(), strict=True):
        lines.append(f"| {letter} | {r['rule set']} | {r['recall']:.1%} | {r['recall_all']:.1%} | "
                     f"{r['false_per_100_weeks']:.2f} | {r['pct_patients_alerted']:.1f}% | "
                     f"{r['pct_clean_alerted']:.1f}% | {r['precision']:.1%} |")
    return head + "\n".join(lines)


def _strata_markdown(strata: dict[str, pd.DataFrame]) -> str:
    names = list(strata)
    first = strata[names[0]]
    letters = _letters(len(names))
    head = "| stratum | ruptures | " + " | ".join(letters) + " |\n"
    head += "|---|---|" + "---|" * len(names) + "\n"
    lines = []
    for i, r in first.iterrows():
        cells = []
        for n in names:
            row = strata[n].iloc[i]
            fa = "" if pd.isna(row["false_per_100_weeks"]) else f" / {row['false_per_100_weeks']:.2f}"
            cells.append(f"{row['recall']:.0%}{fa}")
        lines.append(f"| {r['stratum']}: {r['value']} | {int(r['ruptures'])} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m core.simulation",
                                 description="Calibrate the rupture rules on a simulated clinic.")
    ap.add_argument("--patients", type=int, default=4000)
    ap.add_argument("--weeks", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", type=int, default=None,
                    help="Instead of the tables: the default rule set on the clinics of seeds 1 ... N.")
    ap.add_argument("--not-on-track", action="store_true",
                    help="The not_on_track kind on clinics with 20%% planted non-responders (seeds 1 ... --seeds).")
    args = ap.parse_args(argv)
    if args.not_on_track:
        table = not_on_track_table(range(1, (args.seeds or 3) + 1))
        print("not_on_track: SPIN, 20% non-responders (flat or worsening), 3000 patients x 12 weeks per clinic\n")
        print("| seed | expected course | non-responders flagged by week 6 | responders ever flagged | "
              "flags / 100 pw |")
        print("|---|---|---|---|---|")
        for _, r in table.iterrows():
            print(f"| {int(r['seed'])} | {r['course']} | {r['nonresponders_flagged_by_week']:.1%} | "
                  f"{r['responders_ever_flagged']:.1%} | {r['flags_per_100_weeks']:.2f} |")
        return 0
    if args.seeds:
        summary = seed_summary(range(1, args.seeds + 1), n_patients=args.patients, n_weeks=args.weeks)
        print(f"Default rule set, {args.patients} simulated patients x {args.weeks} weeks, seeds 1-{args.seeds}\n")
        print("| seed | recall 8-15 pts | false alerts / 100 pw | steady: recall | noisy: false alerts / 100 pw |")
        print("|---|---|---|---|---|")
        for _, r in summary.iterrows():
            print(f"| {int(r['seed'])} | {r['recall']:.1%} | {r['false_per_100_weeks']:.2f} | "
                  f"{r['steady_recall']:.1%} | "
                  f"{r['noisy_false_per_100_weeks']:.2f} |")
        m = summary.mean()
        print(f"| mean | {m['recall']:.1%} | {m['false_per_100_weeks']:.2f} | {m['steady_recall']:.1%} | "
              f"{m['noisy_false_per_100_weeks']:.2f} |")
        return 0
    table, strata = calibration_table(n_patients=args.patients, seed=args.seed, n_weeks=args.weeks)
    print(f"{args.patients} simulated patients x {args.weeks} weeks, seed {args.seed} "
          f"(25% with one planted rupture of 5-15 points lasting 1-3 weeks)\n")
    print(_markdown(table))
    print("\nBy stratum: recall (8-15 points unless the stratum is the size) / false alerts per 100 "
          "patient-weeks of the stratum's patients\n")
    print(_strata_markdown(strata))
    return 0


if __name__ == "__main__":
    sys.exit(main())
