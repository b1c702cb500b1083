"""The seeded generator of the synthetic demo clinic and of large benchmark clinics.

Every number this module writes is synthetic: no row describes a real person. The demo clinic
(``generate_demo``) is committed as ``sample_data/demo_*.csv``; ``python -m sample_data.generate``
rewrites those files byte for byte. ``generate_clinic`` makes clinics of any size for ``bench/``.

The model
---------
Each patient ``i`` in week ``t`` has a latent total per instrument:

* WAI-SR (therapist alliance): ``W = W1 + u_w + g_w * (m_w(t) - W1) + e_w - drop``, where ``m_w``
  are the trial's week means (Shalom et al., 2025, Table 1; CLINICAL.md), ``u_w`` the patient's
  level, ``g_w`` how much of the average rise the patient shows, ``e_w`` week noise and ``drop``
  a planted rupture (points, spread over the items of one subscale for 75% of its size).
* WAI-P (program alliance): the same shape around its own course, level correlated with ``u_w``.
* SPIN: ``S = S1 + u_s + g_s * (m_s(t) - S1) + BETA_WITHIN * dW(t-1) + e_s`` with
  ``dW = e_w - drop`` the week's alliance deviation from the patient's own course, so a week of
  above-average alliance is followed by lower social anxiety (within effect negative), and
  ``u_s = BETA_BETWEEN * u_w + ...`` so patients with higher average alliance have slightly
  higher average anxiety (between effect positive), the pattern CLINICAL.md reports.
* PHQ-9 and GAD-7 follow the SPIN course (scaled) and the same within-person link. PHQ-9 item 9
  (thoughts of self-harm) is 0 except where a risk week is planted.

Items are ``latent / n_items + item offset (+ patient subscale offset) + noise``, rounded and
clipped to the instrument's item range; a total is always the sum of its items. With
``items=False`` (benchmarks) a total is the rounded latent plus noise of the same size as the
item noise would give, clipped to the total range.

Everything is drawn from one ``numpy.random.default_rng(seed)`` in a fixed order with fixed
shapes, so a seed always gives the same clinic.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from core.instruments import Instrument, get

SEED = 20261124
OUT_DIR = Path(__file__).parent
#: The demo clinic's "today": the Monday on which the latest weeks are administered.
DEMO_TODAY = dt.date(2026, 11, 23)
DEMO_PASSWORD = "demo-password-2026"
INSTRUMENTS = ("GAD-7", "PHQ-9", "SPIN", "WAI-P", "WAI-SR")
N_ITEM_COLUMNS = 17

#: Week means of Shalom et al. (2025), Table 1 (CLINICAL.md), weeks 1-11.
TRIAL_SPIN = (44.79, 43.55, 42.35, 40.50, 38.91, 37.31, 35.25, 34.21, 31.36, 29.66, 28.72)
TRIAL_WAI = (36.19, 41.05, 42.49, 43.76, 44.69, 46.53, 46.12, 46.26, 46.79, 47.11, 46.86)

#: Generating values of the two links (points of SPIN per point of WAI-SR). Stronger than the
#: trial's estimates so that a 60-patient demo shows them; their signs are the trial's.
BETA_WITHIN = -0.35
BETA_BETWEEN = 0.6

# --- the demo clinic -----------------------------------------------------------------------

THERAPISTS = (
    ("therapist.anna", "North", "Anna"),
    ("therapist.ben", "North", "Ben"),
    ("therapist.carla", "North", "Carla"),
    ("therapist.david", "South", "David"),
    ("therapist.eva", "South", "Eva"),
)
ACCOUNTS = (
    *((name, "therapist", team, display) for name, team, display in THERAPISTS),
    ("supervisor.sara", "supervisor", "North", "Sara"),
    ("admin", "admin", "", "Administrator"),
)
N_DEMO_PATIENTS = 60


@dataclass(frozen=True)
class PlantedRupture:
    """A planted WAI-SR rupture: a fall of ``drop`` points in week ``week``.

    ``repair_weeks`` is 1 or 2 for a rupture that is repaired (back to the pre-rupture level
    within that many weeks) and ``None`` for one that stays down to the last observed week.
    ``subscale`` carries 75% of the fall.
    """

    patient: str
    subscale: str
    week: int
    drop: float
    repair_weeks: int | None


@dataclass(frozen=True)
class PlantedCourse:
    """Fixed status and length of a planted patient (``n_obs`` = last observed week)."""

    patient: str
    status: str
    planned_weeks: int
    n_obs: int


RUPTURES = (
    # unrepaired: down from `week` to the last observed week (3+ weeks)
    PlantedRupture("P00001", "bond", 9, 12.0, None),
    PlantedRupture("P00014", "task", 8, 11.0, None),
    PlantedRupture("P00027", "bond", 7, 12.0, None),
    PlantedRupture("P00043", "goal", 9, 11.0, None),
    # repaired within 1 or 2 weeks
    PlantedRupture("P00003", "bond", 6, 11.0, 1),
    PlantedRupture("P00012", "task", 7, 12.0, 2),
    PlantedRupture("P00020", "bond", 8, 12.0, 1),
    PlantedRupture("P00034", "goal", 6, 10.0, 2),
    PlantedRupture("P00046", "bond", 5, 11.0, 1),
)
#: PHQ-9 item 9 (thoughts of self-harm) > 0: patient -> {week: item 9 value}.
RISK_WEEKS = {
    "P00004": {5: 1},
    "P00017": {7: 1, 8: 2},
    "P00025": {3: 1},
    "P00038": {11: 1},
}
#: One patient per therapist with no flag of any kind (no missing week either).
QUIET = ("P00006", "P00007", "P00008", "P00009", "P00010")
#: WAI-SR below 30 (the low-alliance cut-off) in their first weeks; no other patient goes below 30.
LOW_ALLIANCE = ("P00019", "P00031")
DROPOUTS = ("P00016", "P00022", "P00033", "P00039", "P00045", "P00051", "P00057", "P00060")
COURSES = (
    PlantedCourse("P00001", "active", 14, 12),
    PlantedCourse("P00014", "completed", 12, 12),
    PlantedCourse("P00027", "active", 15, 11),
    PlantedCourse("P00043", "active", 16, 13),
    PlantedCourse("P00003", "completed", 13, 13),
    PlantedCourse("P00012", "active", 14, 11),
    PlantedCourse("P00020", "active", 16, 12),
    PlantedCourse("P00034", "completed", 11, 11),
    PlantedCourse("P00046", "active", 15, 10),
    PlantedCourse("P00004", "active", 13, 9),
    PlantedCourse("P00017", "completed", 12, 12),
    PlantedCourse("P00025", "active", 14, 8),
    PlantedCourse("P00038", "active", 15, 11),
    PlantedCourse("P00006", "active", 14, 12),
    PlantedCourse("P00007", "active", 13, 11),
    PlantedCourse("P00008", "active", 16, 13),
    PlantedCourse("P00009", "active", 12, 10),
    PlantedCourse("P00010", "active", 14, 12),
)
#: Patients whose every week is kept (no missing instrument or week).
COMPLETE = ("P00001", *QUIET)
N_COMPLETED_OTHERS = 12
MISSING_CELL_SHARE = 0.07


# --- the latent model ----------------------------------------------------------------------

def _course(trial: Sequence[float], n_weeks: int, *, tail: float) -> np.ndarray:
    """Trial week means for weeks 1-11, then a smooth approach of ``trial[-1] + tail``."""
    t = np.arange(1, n_weeks + 1, dtype="float64")
    base = np.asarray(trial, dtype="float64")
    after = base[-1] + tail * (1.0 - np.exp(-(t - len(base)) / 4.0))
    return np.where(t <= len(base), base[np.minimum(t, len(base)).astype(int) - 1], after)


def _week_means(n_weeks: int) -> dict[str, np.ndarray]:
    """Target week means of each instrument (weeks 1..n_weeks)."""
    spin = _course(TRIAL_SPIN, n_weeks, tail=-3.0)
    wai = _course(TRIAL_WAI, n_weeks, tail=0.5)
    progress = (spin[0] - spin) / (spin[0] - TRIAL_SPIN[-1])  # 0 at week 1, 1 at week 11
    t = np.arange(n_weeks, dtype="float64")
    return {
        "WAI-SR": wai,
        "WAI-P": 39.0 + 5.5 * (1.0 - np.exp(-t / 3.0)),
        "SPIN": spin,
        "PHQ-9": 12.5 - 5.0 * progress,
        "GAD-7": 11.5 - 4.5 * progress,
    }


#: Week-noise SD of each latent total (points) and item-noise SD (item points).
WEEK_SD = {"WAI-SR": 1.2, "WAI-P": 1.2, "SPIN": 2.4, "PHQ-9": 1.2, "GAD-7": 1.0}
ITEM_SD = {"WAI-SR": 0.3, "WAI-P": 0.3, "SPIN": 0.4, "PHQ-9": 0.35, "GAD-7": 0.35}
#: Within-person link of the depression and anxiety scales (points per WAI-SR point).
LINK = {"SPIN": BETA_WITHIN, "PHQ-9": -0.12, "GAD-7": -0.10}
#: Lowest latent WAI-SR / WAI-P level of a patient not planted as low alliance.
ALLIANCE_FLOOR = 34.5


@dataclass
class _Draws:
    """All random numbers of a clinic, drawn in one fixed order (see ``_draw``)."""

    person: dict[str, np.ndarray]
    week: dict[str, np.ndarray]
    item: dict[str, np.ndarray]
    item_offset: dict[str, np.ndarray]
    sub_offset: dict[str, np.ndarray]


def _draw(rng: np.random.Generator, n_patients: int, n_weeks: int,
          instruments: Sequence[str], *, items: bool) -> _Draws:
    p, t = n_patients, n_weeks
    z = rng.standard_normal((9, p))
    person = {
        "u_w": 6.0 * z[0],
        "g_w": np.clip(1.0 + 0.35 * z[1], 0.2, 1.8),
        "u_p": 3.0 * z[0] + 4.5 * z[2],
        "u_s": BETA_BETWEEN * 6.0 * z[0] + 8.0 * z[3],
        "g_s": np.clip(1.0 + 0.45 * z[4], -0.2, 2.0),
        "u_d": 0.2 * 8.0 * z[3] + 3.0 * z[5],
        "g_d": np.clip(1.0 + 0.3 * z[4] + 0.3 * z[6], -0.2, 2.0),
        "u_g": 0.15 * 8.0 * z[3] + 2.5 * z[7],
        "start": z[8],
    }
    week, item, item_offset, sub_offset = {}, {}, {}, {}
    for code in instruments:  # one block per instrument, always in the same order
        inst = get(code)
        week[code] = rng.standard_normal((p, t))
        if items:
            item[code] = rng.standard_normal((p, t, inst.n_items)).astype("float32")
            off = rng.normal(0.0, 0.2, inst.n_items)
            item_offset[code] = off - off.mean()
            sub = rng.normal(0.0, 0.2, (p, 3))
            sub_offset[code] = sub - sub.mean(axis=1, keepdims=True)
        else:
            item[code] = rng.standard_normal((p, t)).astype("float32")
    return _Draws(person, week, item, item_offset, sub_offset)


def _latent(draws: _Draws, instruments: Sequence[str], n_weeks: int, *,
            week_scale: dict[str, np.ndarray], drop: np.ndarray, floor: np.ndarray,
            shift: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Latent totals (patients x weeks) of each instrument; see the module docstring.

    ``shift`` (points, patients x weeks, per instrument) moves patients' courses before the
    alliance floor is applied; the demo uses it to calibrate its week means.
    """
    shift = shift or {}
    means = _week_means(n_weeks)
    pe = draws.person
    col = slice(None), None  # broadcast a per-patient vector over weeks

    def noise(code: str) -> np.ndarray:
        return WEEK_SD[code] * week_scale[code][col] * draws.week[code]

    out: dict[str, np.ndarray] = {}
    e_w = noise("WAI-SR") if "WAI-SR" in draws.week else np.zeros_like(drop)
    m = means["WAI-SR"]
    w_base = m[0] + pe["u_w"][col] + pe["g_w"][col] * (m - m[0]) + shift.get("WAI-SR", 0.0)
    w_base = np.maximum(w_base, floor[col])
    out["WAI-SR"] = w_base + e_w - drop
    # deviation of the week's alliance from the patient's own course, seen by next week
    dw = np.zeros_like(drop)
    dw[:, 1:] = (e_w - drop)[:, :-1]
    m = means["WAI-P"]
    out["WAI-P"] = np.maximum(m[None, :] + pe["u_p"][col], floor[col])
    if "WAI-P" in draws.week:
        out["WAI-P"] = out["WAI-P"] + noise("WAI-P")
    for code, u, g in (("SPIN", "u_s", "g_s"), ("PHQ-9", "u_d", "g_d"), ("GAD-7", "u_g", "g_d")):
        m = means[code]
        base = m[0] + pe[u][col] + pe[g][col] * (m - m[0]) + LINK[code] * dw + shift.get(code, 0.0)
        out[code] = base + (noise(code) if code in draws.week else 0.0)
    return {code: out[code] for code in instruments}


def _item_weights(inst: Instrument, focus: np.ndarray) -> np.ndarray:
    """Share of a rupture's drop carried by each item (patients x items); rows sum to 1.

    ``focus`` holds a subscale index (0 task, 1 bond, 2 goal) per patient, or -1 for an even
    spread. The focused subscale's items carry 75% of the drop.
    """
    n = inst.n_items
    weights = np.full((focus.size, n), 1.0 / n)
    names = list(inst.subscales)
    for k, name in enumerate(names):
        members = np.zeros(n, dtype=bool)
        members[np.asarray(inst.subscales[name]) - 1] = True
        rows = focus == k
        weights[np.ix_(rows, members)] = 0.75 / members.sum()
        weights[np.ix_(rows, ~members)] = 0.25 / (~members).sum()
    return weights


def _subscale_of_items(inst: Instrument) -> np.ndarray:
    """Index (0, 1, 2 in definition order) of each item's subscale; 0 when none."""
    idx = np.zeros(inst.n_items, dtype=int)
    for k, numbers in enumerate(inst.subscales.values()):
        idx[np.asarray(numbers) - 1] = k
    return idx


def _items(code: str, latent: np.ndarray, draws: _Draws, *, item_scale: np.ndarray,
           drop: np.ndarray | None = None, focus: np.ndarray | None = None,
           zero_items: Sequence[int] = ()) -> np.ndarray:
    """Integer item responses (patients x weeks x items) around a latent total."""
    inst = get(code)
    n = inst.n_items
    carriers = np.ones(n, dtype=bool)
    carriers[[i - 1 for i in zero_items]] = False
    base = latent if drop is None else latent + drop  # the drop is spread by weight below
    per_item = base / carriers.sum()
    x = per_item[:, :, None] + draws.item_offset[code][None, None, :]
    if inst.subscales:
        x = x + draws.sub_offset[code][:, None, _subscale_of_items(inst)]
    x = x + ITEM_SD[code] * item_scale[:, None, None] * draws.item[code]
    if drop is not None and focus is not None:
        x = x - drop[:, :, None] * _item_weights(inst, focus)[:, None, :]
    x = np.clip(np.rint(x), inst.item_min, inst.item_max)
    x[:, :, ~carriers] = inst.item_min
    return x.astype("int8")


def _totals(code: str, latent: np.ndarray, draws: _Draws) -> np.ndarray:
    """Integer totals without items: the latent plus the noise items would have added."""
    inst = get(code)
    sd = math.sqrt(inst.n_items * (ITEM_SD[code] ** 2 + 1.0 / 12.0))
    x = np.rint(latent + sd * draws.item[code])
    return np.clip(x, inst.total_min, inst.total_max).astype("int16")


def _frame(values: dict[str, np.ndarray], present: dict[str, np.ndarray], *, patient_ids: np.ndarray,
           therapist_ids: np.ndarray, start: np.ndarray, items: bool) -> pd.DataFrame:
    """Long CONTRACT frame from per-instrument arrays and presence masks (patients x weeks)."""
    parts = []
    start = np.asarray(start).astype("datetime64[D]")
    width = max(get(c).n_items for c in values) if items else 0
    for code, arr in values.items():
        mask = present[code]
        pi, wi = np.nonzero(mask)
        part = {
            "patient_id": patient_ids[pi],
            "therapist_id": therapist_ids[pi],
            "week": (wi + 1).astype("int64"),
            "instrument": np.full(pi.size, code, dtype=object),
        }
        if items:
            block = arr[pi, wi, :].astype("int64")
            part["score"] = block.sum(axis=1)
            n = block.shape[1]
            for j in range(width):
                if j < n:
                    part[f"item_{j + 1}"] = pd.arrays.IntegerArray(block[:, j], np.zeros(pi.size, dtype=bool))
                else:
                    part[f"item_{j + 1}"] = pd.arrays.IntegerArray(np.zeros(pi.size, dtype="int64"),
                                                                   np.ones(pi.size, dtype=bool))
        else:
            part["score"] = arr[pi, wi].astype("int64")
        part["administered_on"] = (start[pi] + 7 * wi.astype("timedelta64[D]")).astype(str)
        parts.append(pd.DataFrame(part))
    frame = pd.concat(parts, ignore_index=True)
    order = ["patient_id", "therapist_id", "week", "instrument", "score", "administered_on"]
    frame = frame[order + [c for c in frame.columns if c.startswith("item_")]]
    return frame.sort_values(["patient_id", "week", "instrument"], kind="stable").reset_index(drop=True)


# --- public API ----------------------------------------------------------------------------

def generate_clinic(n_patients: int, n_weeks: int, *, seed: int,
                    instruments: Sequence[str] = ("WAI-SR", "SPIN"), items: bool = False) -> pd.DataFrame:
    """A synthetic clinic of any size in the weekly-scores format (CONTRACT.md), for benchmarks.

    Parameters
    ----------
    n_patients, n_weeks
        Size of the clinic. About 25 patients per therapist (``therapist.t0001`` …).
    seed
        Seed of ``numpy.random.default_rng``; the same seed gives the same frame.
    instruments
        Registry codes to generate (any of WAI-SR, WAI-P, SPIN, PHQ-9, GAD-7).
    items
        With ``True`` the frame carries ``item_1 … item_N`` and each score is their sum; by
        default only totals (fast: 10,000 x 52 takes about a second to generate).

    Returns
    -------
    pandas.DataFrame
        ``patient_id, therapist_id, week, instrument, score, administered_on`` (+ items), sorted
        by patient, week and instrument. About 7% of patient-weeks are missing (no row for any
        instrument) and about 15% of patients stop early; week 1 is always present.
    """
    if n_patients < 1 or n_weeks < 1:
        raise ValueError("A clinic needs at least one patient and one week.")
    unknown = [c for c in instruments if c not in INSTRUMENTS]
    if unknown:
        raise ValueError(f"The generator knows {', '.join(INSTRUMENTS)}; it cannot make {', '.join(unknown)}.")
    codes = [c for c in INSTRUMENTS if c in instruments]  # fixed draw order
    rng = np.random.default_rng(seed)
    draws = _draw(rng, n_patients, n_weeks, codes, items=items)
    ones = np.ones(n_patients)
    drop = np.zeros((n_patients, n_weeks))
    latent = _latent(draws, codes, n_weeks, week_scale={c: ones for c in codes}, drop=drop,
                     floor=np.full(n_patients, ALLIANCE_FLOOR - 6.0))
    values = {}
    for code in codes:
        zero = get(code).risk_items if code == "PHQ-9" else ()
        values[code] = (_items(code, latent[code], draws, item_scale=ones, zero_items=zero)
                        if items else _totals(code, latent[code], draws))
    stops = rng.random(n_patients) < 0.15
    n_obs = np.where(stops, rng.integers(min(3, n_weeks), n_weeks + 1, n_patients), n_weeks)
    week_no = np.arange(1, n_weeks + 1)[None, :]
    missing = rng.random((n_patients, n_weeks)) < MISSING_CELL_SHARE
    missing[:, 0] = False
    present = (week_no <= n_obs[:, None]) & ~missing
    first_monday = np.datetime64("2026-01-05")
    start = first_monday + 7 * rng.integers(0, 40, n_patients).astype("timedelta64[D]")
    width = len(str(n_patients))
    patient_ids = np.array([f"P{i:0{max(5, width)}d}" for i in range(1, n_patients + 1)], dtype=object)
    n_therapists = max(1, math.ceil(n_patients / 25))
    therapists = np.array([f"therapist.t{i:04d}" for i in range(1, n_therapists + 1)], dtype=object)
    therapist_ids = therapists[np.arange(n_patients) % n_therapists]
    return _frame(values, {c: present for c in codes}, patient_ids=patient_ids,
                  therapist_ids=therapist_ids, start=start, items=items)


def _demo_courses(rng: np.random.Generator, ids: list[str]) -> pd.DataFrame:
    """Status, planned weeks and last observed week of each demo patient."""
    n = len(ids)
    planned = rng.integers(11, 17, n)
    frac = rng.random(n)
    end_back = rng.integers(0, 9, n)  # completed: weeks between the last week and today
    drop_back = rng.integers(2, 13, n)  # dropped out: weeks since the last week
    drop_at = rng.integers(3, 8, n)
    status = np.full(n, "active", dtype=object)
    fixed = {c.patient: c for c in COURSES}
    free = np.array([i not in fixed and i not in DROPOUTS for i in ids])
    completed = rng.choice(np.flatnonzero(free), N_COMPLETED_OTHERS, replace=False)
    status[completed] = "completed"
    status[np.isin(ids, DROPOUTS)] = "dropped_out"
    n_obs = np.where(status == "completed", planned,
                     np.where(status == "dropped_out", drop_at,
                              np.maximum(6, np.floor(6 + frac * (planned - 6)).astype(int))))
    n_obs = np.minimum(n_obs, np.where(status == "active", planned - 1, planned))
    back = np.where(status == "completed", end_back, np.where(status == "dropped_out", drop_back, 0))
    for c in COURSES:  # a handful of planted patients, not a loop over patient-weeks
        k = ids.index(c.patient)
        status[k], planned[k], n_obs[k] = c.status, c.planned_weeks, c.n_obs
        back[k] = 0 if c.status == "active" else int(end_back[k] % 3)
    today = np.datetime64(DEMO_TODAY.isoformat())
    start = today - (7 * (back + n_obs - 1)).astype("timedelta64[D]")
    return pd.DataFrame({"patient_id": ids, "status": status, "planned_weeks": planned,
                         "n_obs": n_obs, "start": start})


def generate_demo(seed: int = SEED) -> dict[str, pd.DataFrame]:
    """The synthetic demo clinic: ``{"scores", "accounts", "patients"}`` frames.

    2 teams, 5 therapists, 1 supervisor, 1 admin and 60 patients over 11-16 weeks with item-level
    WAI-SR, WAI-P, SPIN, PHQ-9 and GAD-7. What is planted (ruptures with and without repair,
    risk items, dropouts, quiet patients) is listed in ``sample_data/CATALOG.md`` and in the
    constants of this module; ``tests/test_sample_data.py`` checks both agree with the data.
    """
    rng = np.random.default_rng(seed)
    n_weeks = 16
    ids = [f"P{i:05d}" for i in range(1, N_DEMO_PATIENTS + 1)]
    therapist_ids = np.array([THERAPISTS[i % len(THERAPISTS)][0] for i in range(N_DEMO_PATIENTS)], dtype=object)
    courses = _demo_courses(rng, ids)
    draws = _draw(rng, N_DEMO_PATIENTS, n_weeks, INSTRUMENTS, items=True)
    pos = {pid: k for k, pid in enumerate(ids)}

    def idx(codes: Sequence[str]) -> np.ndarray:
        return np.array([pos[c] for c in codes], dtype=int)

    # person-level overrides of the planted patients
    pe = draws.person
    rup = idx([r.patient for r in RUPTURES])
    # ruptures happen to a steady, fairly high alliance (CLINICAL.md: repair them even when the
    # level is high), so a fall stands out against the patient's own level and SD
    pe["u_w"][rup] = np.clip(pe["u_w"][rup], 8.0, 11.0)
    pe["g_w"][rup] = 0.3
    # quiet patients: good alliance, mild symptoms improving by less than a reliable change and
    # staying clear of every caseness cut-off, so no rule of any kind fires
    quiet = idx(QUIET)
    pe["u_w"][quiet] = np.clip(pe["u_w"][quiet], 3.0, 7.0)
    pe["u_p"][quiet] = np.clip(pe["u_p"][quiet], 0.0, 6.0)
    pe["g_w"][quiet] = 1.0
    pe["u_s"][quiet] = np.clip(pe["u_s"][quiet], -13.0, -8.0)
    pe["u_d"][quiet] = np.clip(pe["u_d"][quiet], -7.5, -6.5)
    pe["u_g"][quiet] = np.clip(pe["u_g"][quiet], -7.5, -6.5)
    pe["g_s"][quiet] = 0.35
    pe["g_d"][quiet] = 0.0
    low = idx(LOW_ALLIANCE)
    pe["u_w"][low] = (-13.0, -15.0)
    pe["g_w"][low] = (1.0, 0.6)
    drops = idx(DROPOUTS)
    pe["u_p"][drops] -= 5.0  # lower alliance with the program (Zalaznik et al., 2024)
    risk = idx(list(RISK_WEEKS))
    pe["u_d"][risk] += 4.0
    floor = np.full(N_DEMO_PATIENTS, ALLIANCE_FLOOR)
    floor[low] = 12.0

    # planted ruptures: a drop matrix (patients x weeks) and the subscale carrying it
    week_no = np.arange(1, n_weeks + 1)
    n_obs = courses["n_obs"].to_numpy()
    r_week = np.array([r.week for r in RUPTURES])
    r_size = np.array([r.drop for r in RUPTURES])
    r_rep = np.array([r.repair_weeks or 0 for r in RUPTURES])
    after = week_no[None, :] - r_week[:, None]  # 0 in the rupture week
    shape = np.where(r_rep[:, None] == 0, (after >= 0).astype(float),
                     np.select([after == 0, (after == 1) & (r_rep[:, None] == 2)], [1.0, 0.85], 0.0))
    drop = np.zeros((N_DEMO_PATIENTS, n_weeks))
    drop[rup] = r_size[:, None] * shape
    names = list(get("WAI-SR").subscales)
    focus = np.full(N_DEMO_PATIENTS, -1)
    focus[rup] = [names.index(r.subscale) for r in RUPTURES]

    scale = np.ones(N_DEMO_PATIENTS)
    calm = scale.copy()
    calm[rup] = 0.4
    calm[quiet] = 0.4
    calm[risk] = 0.4  # planted patients: steady alliance apart from what is planted
    week_scale = {c: calm if c in ("WAI-SR", "WAI-P") else scale.copy() for c in INSTRUMENTS}
    steady = scale.copy()
    steady[rup] = 0.5
    steady[quiet] = 0.25
    for code in ("SPIN", "PHQ-9", "GAD-7"):
        week_scale[code] = steady
    risk_p = np.array([pos[p] for p, weeks in RISK_WEEKS.items() for _ in weeks])
    risk_w = np.array([w for weeks in RISK_WEEKS.values() for w in weeks])
    risk_v = np.array([v for weeks in RISK_WEEKS.values() for v in weeks.values()])

    # which rows exist: observed weeks minus ~7% missing cells
    observed = week_no[None, :] <= n_obs[:, None]
    protected = ~observed | (week_no[None, :] == 1) | (week_no[None, :] == n_obs[:, None])
    protected[idx(COMPLETE)] = True
    near = np.abs(week_no[None, :] - r_week[:, None]) <= 3
    protected[rup] |= near
    protected[risk_p, risk_w - 1] = True
    eligible = np.flatnonzero(~protected.ravel())
    n_cells = int(observed.sum()) * len(INSTRUMENTS)
    target = round(MISSING_CELL_SHARE * n_cells)
    n_partial = round(0.12 * target / 2)  # partial weeks lose 2 instruments on average
    n_full = round((target - 2 * n_partial) / len(INSTRUMENTS))
    chosen = rng.choice(eligible, n_full + n_partial, replace=False)
    patterns = np.array([  # instruments (INSTRUMENTS order) skipped in a partial week
        [1, 1, 0, 0, 0], [0, 0, 0, 1, 0], [1, 1, 1, 0, 0], [0, 0, 0, 1, 1]], dtype=bool)
    pattern_of = rng.integers(0, len(patterns), n_partial)
    present = {c: observed.copy() for c in INSTRUMENTS}
    full_p, full_w = np.unravel_index(chosen[:n_full], observed.shape)
    part_p, part_w = np.unravel_index(chosen[n_full:], observed.shape)
    for j, code in enumerate(INSTRUMENTS):
        present[code][full_p, full_w] = False
        skip = patterns[pattern_of, j]
        present[code][part_p[skip], part_w[skip]] = False

    def simulate(shift: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
        latent = _latent(draws, INSTRUMENTS, n_weeks, week_scale=week_scale, drop=drop, floor=floor,
                         shift=shift)
        # symptoms worsen a little the week after a rupture (on top of the within-person link)
        for code, bump in (("SPIN", 2.5), ("PHQ-9", 1.0), ("GAD-7", 1.0)):
            latent[code][rup] += bump * (after == 1)
        return {code: _items(code, latent[code], draws,
                             item_scale=calm if code in ("WAI-SR", "WAI-P") else steady,
                             drop=drop if code == "WAI-SR" else None, focus=focus if code == "WAI-SR" else None,
                             zero_items=get(code).risk_items if code == "PHQ-9" else ())
                for code in INSTRUMENTS}

    # calibrate: the planted patients pull the week means away from the trial's; shift the
    # other patients' courses so that the clinic's observed week means match the targets
    free = ~np.isin(ids, [r.patient for r in RUPTURES] + list(QUIET) + list(LOW_ALLIANCE))
    first = simulate(None)
    shift = {}
    for code in ("SPIN", "WAI-SR"):
        mask = present[code]
        n_t = mask.sum(axis=0)
        n_free = (mask & free[:, None]).sum(axis=0)
        observed_mean = (first[code].sum(axis=2) * mask).sum(axis=0) / np.maximum(n_t, 1)
        gap = (_week_means(n_weeks)[code] - observed_mean) * n_t / np.maximum(n_free, 1)
        shift[code] = np.where(free[:, None] & (n_free >= 10)[None, :], gap[None, :], 0.0)
    values = simulate(shift)
    values["PHQ-9"][risk_p, risk_w - 1, get("PHQ-9").risk_items[0] - 1] = risk_v

    scores = _frame(values, present, patient_ids=np.array(ids, dtype=object), therapist_ids=therapist_ids,
                    start=courses["start"].to_numpy(), items=True)
    patients = pd.DataFrame({
        "patient_id": ids,
        "therapist_id": therapist_ids,
        "start_date": courses["start"].to_numpy().astype("datetime64[D]").astype(str),
        "status": courses["status"],
        "planned_weeks": courses["planned_weeks"].astype("int64"),
    })
    accounts = pd.DataFrame(ACCOUNTS, columns=["name", "role", "team", "display_name"])
    return {"scores": scores, "accounts": accounts, "patients": patients}


FILES = {"scores": "demo_scores.csv", "accounts": "demo_accounts.csv", "patients": "demo_patients.csv"}


def write_demo(out_dir: Path = OUT_DIR, *, seed: int = SEED) -> list[Path]:
    """Write the demo clinic's CSV files to ``out_dir`` (UTF-8, ``\\n`` line ends)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for key, frame in generate_demo(seed).items():
        path = out_dir / FILES[key]
        frame.to_csv(path, index=False, encoding="utf-8", lineterminator="\n")
        paths.append(path)
    return paths


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rewrite the synthetic demo clinic (sample_data/*.csv).")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="directory to write to")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args(argv)
    for path in write_demo(args.out, seed=args.seed):
        print(path)


if __name__ == "__main__":
    main()
