"""Alliance ruptures: named, configurable rules, each criterion its own nullable column.

An alliance instrument (WAI-SR, WAI-P, ...: higher = better) is one series per patient; the
program alliance is never mixed with the therapist alliance. For week t of a series:

* ``reliable_drop``: the fall from week t-1 (exactly the week before) is at least the
  instrument's reliable-change cut-off (Jacobson & Truax, 1991);
* ``below_own_level``: the score lies at least ``k`` of the patient's own SDs below the
  running mean of the stored weeks before t, with at least ``m`` such weeks and a floor on
  the SD (Stiles et al., 2004: 1 SD; Strauss et al., 2006: 2 SD; Gumz et al., 2012);
* ``sudden_loss`` (confirmation only): the three Tang & DeRubeis (1999) criteria on the
  interval t-1 -> t with the semantics of the R package ``suddengains`` (Wiedemann et al.,
  2020). Criterion 3 needs the weeks after t, so it confirms or refutes an existing flag
  later and never raises one;
* ``low_alliance``: the level is below the instrument's ``low_cutoff`` (a separate kind);
* repair: a rupture is *repaired* when, within ``weeks`` weeks after it, a score returns to
  within one reliable change of the pre-rupture baseline and has won back at least half of the
  fall (``min_recovered``).

``<NA>`` in a criterion column means "not enough data", which is not "no". A missing week is
a gap, never a zero, and a "consecutive" week is exactly week + 1.

References
----------
Jacobson & Truax (1991) J Consult Clin Psychol 59:12, doi:10.1037/0022-006X.59.1.12.
Tang & DeRubeis (1999) J Consult Clin Psychol 67:894, doi:10.1037/0022-006X.67.6.894.
Lutz et al. (2013) Psychother Res 23:14, doi:10.1080/10503307.2012.693837.
Wiedemann, Thew, Stott & Ehlers (2020) PLOS ONE 15:e0230276, doi:10.1371/journal.pone.0230276.
Larsson et al. (2018) Psychother Res 28:123. Gumz et al. (2012) review of rupture measures.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.centering import WeekLookup, check_scores

#: Critical t values Tang & DeRubeis (1999) give for 3+3, 3+2 (or 2+3) and 2+2 values.
T_CRIT_TABLE = {4: 2.776, 3: 3.182, 2: 4.303}


# --------------------------------------------------------------------------- rule settings
@dataclass(frozen=True)
class ReliableDropRule:
    """Fall from the week before (exactly t-1) large enough to be a real change.

    Parameters
    ----------
    rc_multiple : float or None
        The fall must be at least ``rc_multiple`` times the instrument's reliable-change
        cut-off (``Instrument.rc_cutoff()``; 6.8 points for WAI-SR). Default 1.5 (10.2 WAI-SR
        points), chosen by calibration (docs/calibration.md): at 1.0 a third of all patients
        were alerted in a 12-week course. ``None`` = criterion off.
    min_points : float or None
        The fall must also be at least this many points. ``None`` = criterion off.
    """

    rc_multiple: float | None = 1.5
    min_points: float | None = None


@dataclass(frozen=True)
class BelowOwnLevelRule:
    """Score far below the patient's own running average of the weeks before.

    Parameters
    ----------
    k_sd : float or None
        ``running_mean - score >= k_sd * max(running_sd, sd_floor)``. ``None`` = off.
    min_prior_weeks : int
        At least this many stored weeks before t (fewer: ``<NA>``, not enough data).
    sd_floor : float or None
        Lower bound (points) on the patient's SD, so that a very steady patient is not
        flagged for a one-point dip. ``None`` = no floor.
    rc_multiple : float or None
        The score must also lie at least ``rc_multiple`` x the instrument's reliable-change
        cut-off below the running mean (a real change, not only an unusual one for a very
        steady patient). ``None`` = off.
    min_points : float or None
        The score must also lie at least this many points below the running mean. ``None`` = off.
    """

    k_sd: float | None = 1.5
    min_prior_weeks: int = 3
    sd_floor: float | None = 3.0
    rc_multiple: float | None = 1.0
    min_points: float | None = None


@dataclass(frozen=True)
class BelowExpectedRule:
    """Score below what is expected for this patient this week, on this patient's own scale.

    The expected score is the patient's own level so far plus the clinic's typical change by
    treatment week (the *expected course*, so the early rise of the alliance is not read as a
    fall); the scale is the patient's own week-to-week variation around that course, pulled
    toward the clinic's typical variation while the patient has few weeks (empirical Bayes
    shrinkage). Formulas in :func:`below_expected_criteria` and docs/flags.md.

    Parameters
    ----------
    k_sd : float
        One week, the total: ``expected - score >= k_sd * predictive SD`` (as a t quantile, below).
        Default 3.2 (docs/calibration.md): with item answers most ruptures are found by the
        subscale test, so the total's own test can be strict.
    k_sd_without_items : float
        The same for a week stored without item answers (no subscale test possible). Default 2.6.
    two_week_k_sd : float or None
        Two weeks running, each below the course expected from the weeks before them:
        ``mean gap >= two_week_k_sd * predictive SD of a two-week mean``. Finds 2-3-week
        ruptures that are each just below ``k_sd``. Default 3.0; ``None`` = off.
    subscale_k_sd : float or None
        One week, each subscale (bond, goal, task) against its own expected course and SD; the
        one-sided tail of ``subscale_k_sd`` normal SDs is split over the subscales (Bonferroni), so
        that testing three subscales raises no more false alerts than testing one. Ruptures are
        often a strain in one part of the alliance (Bordin, 1979; Safran & Muran, 2000). Default
        2.3; ``None`` = off.
    subscale_min_points : float
        Floor in points for the subscale test (a subscale of 4 items spans 4-20). Default 4.5.
    min_points : float
        Floor in points: the (mean) gap must also be at least this many points, so that
        one-point rounding noise of a very steady patient never alerts. Default 5 (a steady
        patient's 5-point fall still counts).
    min_prior_weeks : int
        At least this many stored weeks before (fewer: ``<NA>``, not enough data). Default 2.
    prior_weeks : float or None
        Weight of the clinic's typical variation, in weeks of the patient's own data
        (``d0``); ``None`` = the clinic parameter (``FlagConfig.alliance_course``); 0 = the
        patient's own SD alone.
    use_course : bool
        ``False``: no expected course (a flat own level, as ``below_own_level``).
    high_rc_multiple : float or None
        Severity ``high`` when the gap is also at least this many reliable changes (1.5 =
        10.2 WAI-SR points), else ``medium``. ``None``: always ``medium``.
    """

    k_sd: float = 3.2
    k_sd_without_items: float = 2.6
    two_week_k_sd: float | None = 3.0
    subscale_k_sd: float | None = 2.3
    subscale_min_points: float = 4.5
    min_points: float = 5.0
    min_prior_weeks: int = 2
    prior_weeks: float | None = None
    use_course: bool = True
    high_rc_multiple: float | None = 1.5


@dataclass(frozen=True)
class SuddenLossRule:
    """Tang & DeRubeis (1999) sudden-loss criteria, used only to confirm an existing flag.

    Parameters
    ----------
    rc_multiple : float or None
        Criterion 1: fall >= ``rc_multiple`` x the reliable-change cut-off. ``None`` = off.
    pct : float or None
        Criterion 2: fall >= ``pct`` x (pre score - scale floor). ``None`` = off.
    alpha : float or None
        Criterion 3: two-sided level of the adjusted t critical value. ``None`` = off.
    window : int
        Up to this many weeks on each side for criterion 3 (3 in Tang & DeRubeis).
    min_per_side : int
        At least this many stored values on each side, else ``<NA>`` (2 in ``suddengains``).
    scale_floor : float or None
        Floor for criterion 2: 0 (default), as Tang & DeRubeis publish and ``suddengains``
        computes; ``None`` = the labelled option "above the instrument's lowest total" (12 for
        WAI-SR), which confirms 40-76% more losses (CLINICAL.md).
    """

    rc_multiple: float | None = 1.0
    pct: float | None = 0.25
    alpha: float | None = 0.05
    window: int = 3
    min_per_side: int = 2
    scale_floor: float | None = 0.0


@dataclass(frozen=True)
class LowAllianceRule:
    """The alliance level is below a cut-off (a separate kind, not a rupture).

    Parameters
    ----------
    cutoff : float or None
        ``None`` = the instrument's ``low_cutoff`` (30 for WAI-SR and WAI-P, a project choice).
    every_week : bool
        ``False`` (default): flag the week the patient enters the low range (first week, or
        the previous stored week was not low); ``True``: flag every low week.
    """

    cutoff: float | None = None
    every_week: bool = False


@dataclass(frozen=True)
class RepairRule:
    """When a rupture counts as repaired.

    Parameters
    ----------
    weeks : int
        Repair window: weeks t+1 ... t+weeks (default 2, a project choice in CLINICAL.md).
    rc_multiple : float
        "Within one reliable change": ``baseline - score < rc_multiple * rc_cutoff``.
    min_recovered : float or None
        And at least this share of the fall won back: ``score(t+j) - score(t) >= min_recovered
        * (baseline - score(t))`` (default 0.5, CLINICAL.md "Repair": "within one RC" alone calls
        a 7-point fall that climbs back 1 point repaired). ``None``: the first criterion alone.
    """

    weeks: int = 2
    rc_multiple: float = 1.0
    min_recovered: float | None = 0.5


def _check_positive(name: str, value, *, allow_zero: bool = False) -> None:
    if value is None:
        return
    ok = value >= 0 if allow_zero else value > 0
    if not (isinstance(value, (int, float)) and np.isfinite(value) and ok):
        raise ValueError(f"The setting {name} must be a {'non-negative' if allow_zero else 'positive'} "
                         f"number or None (criterion off); got {value!r}.")


def check_rules(*, reliable_drop=None, below_own_level=None, sudden_loss=None, low_alliance=None,
                repair=None, below_expected=None) -> None:
    """Raise ``ValueError`` on rule settings that cannot work."""
    if below_expected is not None:
        e = below_expected
        _check_positive("below_expected.k_sd", e.k_sd)
        _check_positive("below_expected.k_sd_without_items", e.k_sd_without_items)
        _check_positive("below_expected.subscale_k_sd", e.subscale_k_sd)
        _check_positive("below_expected.subscale_min_points", e.subscale_min_points, allow_zero=True)
        _check_positive("below_expected.two_week_k_sd", e.two_week_k_sd)
        _check_positive("below_expected.min_points", e.min_points, allow_zero=True)
        _check_positive("below_expected.prior_weeks", e.prior_weeks, allow_zero=True)
        _check_positive("below_expected.high_rc_multiple", e.high_rc_multiple)
        if e.k_sd is None or e.min_points is None:
            raise ValueError("below_expected needs k_sd and min_points (numbers); switch the rule off (None) "
                             "instead of its criteria.")
        if not isinstance(e.min_prior_weeks, int) or e.min_prior_weeks < 1:
            raise ValueError("below_expected.min_prior_weeks must be a whole number of at least 1.")
    if reliable_drop is not None:
        _check_positive("reliable_drop.rc_multiple", reliable_drop.rc_multiple)
        _check_positive("reliable_drop.min_points", reliable_drop.min_points)
        if reliable_drop.rc_multiple is None and reliable_drop.min_points is None:
            raise ValueError("The reliable-drop rule has every criterion off; switch the rule off "
                             "(None) instead, or set rc_multiple or min_points.")
    if below_own_level is not None:
        b = below_own_level
        _check_positive("below_own_level.k_sd", b.k_sd)
        _check_positive("below_own_level.sd_floor", b.sd_floor)
        _check_positive("below_own_level.min_points", b.min_points)
        _check_positive("below_own_level.rc_multiple", b.rc_multiple)
        if not isinstance(b.min_prior_weeks, int) or b.min_prior_weeks < 1:
            raise ValueError("below_own_level.min_prior_weeks must be a whole number of at least 1.")
        if b.k_sd is None and b.min_points is None and b.rc_multiple is None:
            raise ValueError("The below-own-level rule has every criterion off; switch the rule off "
                             "(None) instead, or set k_sd or min_points.")
    if sudden_loss is not None:
        s = sudden_loss
        _check_positive("sudden_loss.rc_multiple", s.rc_multiple)
        _check_positive("sudden_loss.pct", s.pct)
        if s.alpha is not None and not (0 < s.alpha < 1):
            raise ValueError(f"sudden_loss.alpha must lie between 0 and 1; got {s.alpha!r}.")
        if s.window < 2 or s.min_per_side < 2 or s.min_per_side > s.window:
            raise ValueError("sudden_loss needs window >= min_per_side >= 2 (an SD needs two values).")
    if low_alliance is not None:
        _check_positive("low_alliance.cutoff", low_alliance.cutoff)
    if repair is not None:
        if not isinstance(repair.weeks, int) or repair.weeks < 1:
            raise ValueError("repair.weeks must be a whole number of weeks, at least 1.")
        _check_positive("repair.rc_multiple", repair.rc_multiple)
        if repair.min_recovered is not None and not (isinstance(repair.min_recovered, (int, float))
                                                     and 0 < repair.min_recovered <= 1):
            raise ValueError("repair.min_recovered must be a share of the fall above 0 and at most 1 (0.5 = half), "
                             "or None (off).")


# --------------------------------------------------------------------------- helpers
def _nullable(values: np.ndarray, known: np.ndarray) -> pd.arrays.BooleanArray:
    """Boolean array with ``<NA>`` where ``known`` is False."""
    return pd.arrays.BooleanArray(np.asarray(values, dtype=bool) & known, ~np.asarray(known, dtype=bool))


def combine_criteria(columns: list[pd.arrays.BooleanArray], n: int) -> pd.arrays.BooleanArray:
    """All criteria true, with ``suddengains`` semantics: ``<NA>`` if any criterion is ``<NA>``.

    (R's ``crit1 * crit2 * crit3``: unlike Kleene logic, "not enough data" on any criterion
    makes the result "not enough data" even when another criterion already says no.)
    """
    value = np.ones(n, dtype=bool)
    missing = np.zeros(n, dtype=bool)
    for col in columns:
        missing |= np.asarray(col.isna())
        value &= np.asarray(col.fillna(False), dtype=bool)
    return pd.arrays.BooleanArray(value & ~missing, missing)


def _series_ids(frame: pd.DataFrame, keys: tuple[str, ...]) -> np.ndarray:
    present = [k for k in keys if k in frame.columns]
    if not present or frame.empty:
        return np.zeros(len(frame), dtype="int64")
    codes = [pd.factorize(frame[k], sort=True)[0] for k in present]
    gid = np.zeros(len(frame), dtype="int64")
    for c in codes:
        gid = gid * (int(c.max()) + 2) + c + 1
    return pd.factorize(gid, sort=True)[0].astype("int64")


def t_critical(df: np.ndarray, *, alpha: float = 0.05) -> np.ndarray:
    """Two-sided t critical value for ``df`` degrees of freedom (NaN where df < 1).

    For alpha .05 this gives 2.776 (df 4, 3+3 values), 3.182 (df 3) and 4.303 (df 2), the
    values of Tang & DeRubeis (1999) and ``suddengains``; checked in the tests.
    """
    from scipy import special  # imported when used: commands that read no flags start faster
    df = np.asarray(df, dtype="float64")
    out = np.full(df.shape, np.nan)
    ok = df >= 1
    out[ok] = special.stdtrit(df[ok], 1.0 - alpha / 2.0)  # scipy.stats.t.ppf, without scipy.stats' import
    return out


# --------------------------------------------------------------------------- sudden loss
def sudden_loss_criteria(
    series_frame: pd.DataFrame,
    *,
    cutoff: float | None,
    pct: float | None = 0.25,
    floor: float = 0.0,
    alpha: float | None = 0.05,
    window: int = 3,
    min_per_side: int = 2,
    keys: tuple[str, ...] = ("patient_id", "instrument"),
) -> pd.DataFrame:
    """Tang & DeRubeis sudden-loss criteria for the interval (week - 1) -> week of each row.

    A *loss* is a fall, ``pre - post`` with ``pre`` the score at week - 1 and ``post`` the
    score at week (exactly; a missing week is a gap). For alliance this is the same
    arithmetic as a sudden *gain* on a symptom scale (``suddengains::identify_sg``):

    1. ``pre - post >= cutoff`` (the reliable-change cut-off);
    2. ``pre - post >= pct * (pre - floor)`` (``floor`` 0 in ``suddengains``; the project
       measures WAI-SR above its floor of 12);
    3. ``mean_pre - mean_post > t_crit * s_pooled`` over up to ``window`` weeks before
       (week-window … week-1) and after (week … week+window-1), with
       ``s_pooled = sqrt(((n_pre-1) s_pre² + (n_post-1) s_post²) / (n_pre + n_post - 2))``
       and ``t_crit`` the two-sided ``alpha`` t value for ``n_pre + n_post - 2`` df (2.776,
       3.182, 4.303 for 3+3, 3+2, 2+2); fewer than ``min_per_side`` values on a side: ``<NA>``.

    ``sudden_loss`` is all active criteria true, ``<NA>`` when any is ``<NA>`` (R's
    ``crit1 * crit2 * crit3``). A criterion switched off (``None``) gives an all-``<NA>``
    column and is left out of ``sudden_loss``.

    Parameters
    ----------
    series_frame : DataFrame
        Columns ``week`` and ``score`` (NaN = missing), plus any of ``keys`` that identify
        the series (absent keys: the frame is one series).
    cutoff, pct, floor, alpha, window, min_per_side
        As above; ``None`` switches a criterion off.

    Returns
    -------
    DataFrame
        Same index as ``series_frame``: ``pre_score, post_score, fall, n_pre, n_post,
        mean_pre, mean_post, sd_pooled, t_crit`` and the nullable booleans ``crit1``,
        ``crit2``, ``crit3``, ``sudden_loss``.

    Notes
    -----
    Checked against the published ``suddengains`` test cases (tests/testthat/test-identify_sg.R,
    reproduced in ``tests/core/test_ruptures.py``).

    References
    ----------
    Tang & DeRubeis (1999), doi:10.1037/0022-006X.67.6.894; Lutz et al. (2013),
    doi:10.1080/10503307.2012.693837; Wiedemann et al. (2020), doi:10.1371/journal.pone.0230276.
    """
    check_scores(series_frame, required=("week", "score"))
    n = len(series_frame)
    gid = _series_ids(series_frame, keys)
    week = series_frame["week"].to_numpy(dtype="int64") if n else np.zeros(0, dtype="int64")
    x = series_frame["score"].to_numpy(dtype="float64", na_value=np.nan) if n else np.zeros(0)
    lookup = WeekLookup(gid, week, x)
    out = sudden_loss_at(lookup, gid, week, cutoff=cutoff, pct=pct, floor=floor, alpha=alpha,
                         window=window, min_per_side=min_per_side)
    out.index = series_frame.index
    return out


def sudden_loss_at(lookup: WeekLookup, gid: np.ndarray, week: np.ndarray, *, cutoff, pct=0.25,
                   floor=0.0, alpha=0.05, window: int = 3, min_per_side: int = 2) -> pd.DataFrame:
    """:func:`sudden_loss_criteria` for the intervals ending at (series ``gid``, ``week``).

    ``lookup`` holds the stored scores; ``cutoff`` and ``floor`` may be arrays (one value per
    row, NaN cutoff = unknown: ``<NA>``). Used by the flags engine to evaluate only the weeks
    that carry a rupture flag.
    """
    n = len(week)
    pre = lookup.at(gid, week, -1)
    post = lookup.at(gid, week, 0)
    fall = pre - post
    known1 = ~np.isnan(fall)
    never = pd.arrays.BooleanArray(np.zeros(n, bool), np.ones(n, bool))
    crit1 = crit2 = crit3 = never
    if cutoff is not None:
        cut = np.broadcast_to(np.asarray(cutoff, dtype="float64"), (n,))
        k1 = known1 & ~np.isnan(cut)
        crit1 = _nullable(np.where(k1, fall >= cut, False), k1)
    if pct is not None:
        flo = np.broadcast_to(np.asarray(floor, dtype="float64"), (n,))
        crit2 = _nullable(np.where(known1, fall >= pct * (pre - flo), False), known1)
    before = np.column_stack([lookup.at(gid, week, -k) for k in range(1, window + 1)]) if n else np.zeros((0, window))
    after = np.column_stack([lookup.at(gid, week, k) for k in range(0, window)]) if n else np.zeros((0, window))
    pres_b, pres_a = ~np.isnan(before), ~np.isnan(after)
    n_pre, n_post = pres_b.sum(axis=1), pres_a.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pre = np.where(pres_b, before, 0.0).sum(axis=1) / n_pre
        mean_post = np.where(pres_a, after, 0.0).sum(axis=1) / n_post
        ss_pre = np.where(pres_b, (before - mean_pre[:, None]) ** 2, 0.0).sum(axis=1)
        ss_post = np.where(pres_a, (after - mean_post[:, None]) ** 2, 0.0).sum(axis=1)
        dfree = n_pre + n_post - 2
        sd_pooled = np.sqrt((ss_pre + ss_post) / dfree)
    enough = (n_pre >= min_per_side) & (n_post >= min_per_side)
    tcrit = t_critical(np.where(enough, dfree, 0), alpha=alpha if alpha is not None else 0.05)
    if alpha is not None:
        crit3 = _nullable(np.where(enough, (mean_pre - mean_post) > tcrit * sd_pooled, False), enough)
    active = [c for c, on in ((crit1, cutoff is not None), (crit2, pct is not None), (crit3, alpha is not None)) if on]
    return pd.DataFrame(
        {
            "pre_score": pre,
            "post_score": post,
            "fall": fall,
            "n_pre": n_pre.astype("int64"),
            "n_post": n_post.astype("int64"),
            "mean_pre": np.where(n_pre > 0, mean_pre, np.nan),
            "mean_post": np.where(n_post > 0, mean_post, np.nan),
            "sd_pooled": np.where(enough, sd_pooled, np.nan),
            "t_crit": tcrit,
            "crit1": crit1,
            "crit2": crit2,
            "crit3": crit3,
            "sudden_loss": combine_criteria(active, n),
        }
    )


def explain_interval(series_frame: pd.DataFrame, *, week: int, cutoff: float | None,
                     pct: float | None = 0.25, floor: float = 0.0, alpha: float | None = 0.05,
                     window: int = 3, min_per_side: int = 2, patient_id: str | None = None,
                     instrument: str | None = None) -> str:
    """Explain, in words, the sudden-loss decision for the interval (week - 1) -> week.

    The counterpart of ``suddengains::check_interval``: the values used, each criterion with
    its arithmetic and verdict ("yes", "no" or "not enough data"), and the combined answer.
    ``patient_id``/``instrument`` pick one series when the frame holds several.
    """
    frame = series_frame
    if patient_id is not None and "patient_id" in frame.columns:
        frame = frame[frame["patient_id"] == patient_id]
    if instrument is not None and "instrument" in frame.columns:
        frame = frame[frame["instrument"] == instrument]
    if frame.empty:
        raise ValueError("There are no scores for that patient and instrument; check the codes.")
    if any(c in frame.columns and frame[c].nunique() > 1 for c in ("patient_id", "instrument")):
        raise ValueError("The scores hold more than one patient or instrument; name the patient_id "
                         "and instrument of the interval to explain.")
    probe = frame[["week", "score"]]
    if not (probe["week"] == week).any():
        probe = pd.concat([probe, pd.DataFrame({"week": [week], "score": [np.nan]})], ignore_index=True)
    res = sudden_loss_criteria(probe, cutoff=cutoff, pct=pct, floor=floor, alpha=alpha, window=window,
                               min_per_side=min_per_side, keys=())
    r = res[probe["week"].to_numpy() == week].iloc[0]

    def verdict(v) -> str:
        return "not enough data" if pd.isna(v) else ("yes" if bool(v) else "no")

    def num(v) -> str:
        return "missing" if pd.isna(v) else f"{v:.4g}"

    lines = [f"Interval week {week - 1} -> week {week}: score {num(r.pre_score)} -> {num(r.post_score)} "
             f"(fall {num(r.fall)})."]
    if cutoff is not None:
        lines.append(f"1. Fall at least the reliable-change cut-off {cutoff:.4g}: {verdict(r.crit1)}.")
    if pct is not None:
        lines.append(f"2. Fall at least {pct:.0%} of (pre score - floor {floor:g}) = "
                     f"{num(pct * (r.pre_score - floor))}: {verdict(r.crit2)}.")
    if alpha is not None:
        lines.append(f"3. Mean of {int(r.n_pre)} week(s) before ({num(r.mean_pre)}) minus mean of "
                     f"{int(r.n_post)} week(s) after ({num(r.mean_post)}) above t {num(r.t_crit)} x pooled SD "
                     f"{num(r.sd_pooled)} (needs {min_per_side} values a side): {verdict(r.crit3)}.")
    lines.append(f"Sudden loss: {verdict(r.sudden_loss)}.")
    return "\n".join(lines)


# --------------------------------------------------------------------------- rupture rules
def reliable_drop_criteria(prev: np.ndarray, score: np.ndarray, rc: np.ndarray, *,
                           rule: ReliableDropRule) -> dict[str, pd.arrays.BooleanArray]:
    """Criteria of ``reliable_drop`` per row: ``rd_rc``, ``rd_points`` and ``reliable_drop``.

    ``prev`` is the score at exactly week t-1 (NaN if that week is missing: ``<NA>``);
    ``rc`` the instrument's reliable-change cut-off per row (NaN if unknown: ``<NA>``).
    A fall exactly at the cut-off counts (``>=``).
    """
    n = len(score)
    fall = prev - score
    known = ~np.isnan(fall)
    off = pd.arrays.BooleanArray(np.zeros(n, bool), np.ones(n, bool))
    out = {"rd_rc": off, "rd_points": off}
    active = []
    if rule.rc_multiple is not None:
        k = known & ~np.isnan(rc)
        out["rd_rc"] = _nullable(np.where(k, fall >= rule.rc_multiple * rc, False), k)
        active.append(out["rd_rc"])
    if rule.min_points is not None:
        out["rd_points"] = _nullable(np.where(known, fall >= rule.min_points, False), known)
        active.append(out["rd_points"])
    out["reliable_drop"] = combine_criteria(active, n)
    return out


def below_own_level_criteria(score: np.ndarray, n_prior: np.ndarray, running_mean: np.ndarray,
                             running_sd: np.ndarray, *, rule: BelowOwnLevelRule,
                             rc: np.ndarray | None = None) -> dict[str, object]:
    """Criteria of ``below_own_level`` per row, plus the SD used.

    ``sd_used = max(running_sd, sd_floor)``; ``gap = running_mean - score``;
    ``bol_k_sd: gap >= k_sd * sd_used``; ``bol_rc: gap >= rc_multiple * rc``;
    ``bol_points: gap >= min_points``; ``<NA>`` when fewer than ``min_prior_weeks`` stored
    weeks precede t (or the SD or ``rc`` needed is unknown). Exactly at a threshold counts.
    """
    n = len(score)
    sd_used = running_sd.copy()
    if rule.sd_floor is not None:
        sd_used = np.where(np.isnan(sd_used), rule.sd_floor, np.maximum(sd_used, rule.sd_floor))
    gap = running_mean - score
    enough = (n_prior >= rule.min_prior_weeks) & ~np.isnan(gap)
    off = pd.arrays.BooleanArray(np.zeros(n, bool), np.ones(n, bool))
    out: dict[str, object] = {"bol_k_sd": off, "bol_rc": off, "bol_points": off}
    active = []
    if rule.k_sd is not None:
        k = enough & ~np.isnan(sd_used)
        out["bol_k_sd"] = _nullable(np.where(k, gap >= rule.k_sd * sd_used, False), k)
        active.append(out["bol_k_sd"])
    if rule.rc_multiple is not None:
        rc_arr = np.full(n, np.nan) if rc is None else np.asarray(rc, dtype="float64")
        k = enough & ~np.isnan(rc_arr)
        out["bol_rc"] = _nullable(np.where(k, gap >= rule.rc_multiple * rc_arr, False), k)
        active.append(out["bol_rc"])
    if rule.min_points is not None:
        out["bol_points"] = _nullable(np.where(enough, gap >= rule.min_points, False), enough)
        active.append(out["bol_points"])
    out["below_own_level"] = combine_criteria(active, n)
    out["sd_used"] = sd_used
    return out


def shrunk_sd(n_prior: np.ndarray, own_sd: np.ndarray, *, prior_sd: np.ndarray,
              prior_weeks: np.ndarray) -> np.ndarray:
    """The patient's week-to-week SD pulled toward the clinic's typical one (empirical Bayes).

    ``s~^2 = (d0 * s0^2 + d * s^2) / (d0 + d)`` with ``d = n_prior - 1`` degrees of freedom (the
    pairs of consecutive weeks behind the patient's own SD ``s``; 0 while fewer than two weeks),
    ``s0`` the clinic's typical
    within-person SD and ``d0`` its weight in weeks (``prior_weeks``): the posterior of a
    scaled inverse-chi-square prior (Smyth, 2004, Stat Appl Genet Mol Biol 3:3, the
    ``limma`` moderated variance). NaN when there is neither a prior nor two weeks.
    """
    d = np.maximum(np.asarray(n_prior, dtype="float64") - 1.0, 0.0)
    s2 = np.where(d > 0, np.nan_to_num(np.asarray(own_sd, dtype="float64")) ** 2, 0.0)
    d0 = np.asarray(prior_weeks, dtype="float64")
    with np.errstate(invalid="ignore", divide="ignore"):
        var = (d0 * np.asarray(prior_sd, dtype="float64") ** 2 + d * s2) / (d0 + d)
    return np.sqrt(np.where(d0 + d > 0, var, np.nan))




def _t_threshold(k: np.ndarray | float, dof: np.ndarray) -> np.ndarray:
    """The t quantile with ``dof`` degrees of freedom of the one-sided tail beyond ``k`` normal SDs.

    The gap in predictive SDs follows a t distribution with ``d + d0`` degrees of freedom
    (the SD is itself estimated), so a patient with few weeks needs a larger gap than ``k``;
    with many weeks the threshold approaches ``k``.
    """
    from scipy import special  # imported when used: commands that read no flags start faster
    dof = np.asarray(dof, dtype="float64")
    k = np.broadcast_to(np.asarray(k, dtype="float64"), dof.shape)
    out = np.full(dof.shape, np.nan)
    ok = dof > 0
    # A clinic's rows have few distinct (k, dof) pairs (dof is weeks + prior weeks): the quantile is
    # computed once per pair, not once per row (scipy's t.isf was 0.8 s of a 10,000-patient refresh).
    # (hash-based factorize: np.unique(axis=0) sorts and cost more than it saved)
    kc, ku = pd.factorize(k[ok])
    dc, du = pd.factorize(dof[ok])
    pair, first = pd.factorize(kc.astype("int64") * max(len(du), 1) + dc)
    kk, dd = ku[first // max(len(du), 1)], du[first % max(len(du), 1)]
    # scipy.stats.t.isf(norm.sf(k), d) as scipy computes it (-stdtrit(d, ndtr(-k))), from scipy.special
    # alone: scipy.stats' import was ~0.4 s of every refresh-flags
    out[ok] = (-special.stdtrit(dd, special.ndtr(-kk)))[pair]
    return out


def course_level(gid: np.ndarray, x: np.ndarray, course: np.ndarray, *, ceiling: np.ndarray,
                 rise: np.ndarray, use_course: bool = True) -> dict[str, np.ndarray]:
    """Per row: the patient's own level, room factor and SD from the stored weeks before it.

    With ``c`` the expected course (change from week 1, ``rise`` its largest value) and the
    patient's room below the ceiling ``rho = clip((ceiling - L0) / (2 * rise), 0, 1)`` (``L0`` the
    level without the course), so that a patient with less room below the ceiling than twice the
    course's rise is expected to rise less (a patient at 53 of 60 with a course rising 7.5
    points is expected to rise 3.5): ``y_s = x_s - rho * c_s``; ``level`` = mean of ``y`` over the
    stored weeks before the row; ``own_sd`` = the week-to-week SD from the mean squared successive
    difference of ``y`` (``MSSD / 2``, von Neumann et al., 1941; Jahng, Wood & Trull, 2008), which
    a personal rise faster or slower than the course does not inflate. Grouped exclusive
    cumulative sums (prospective; bit-for-bit independent of later weeks).
    Returns ``n``, ``level``, ``rho``, ``own_sd`` and ``pairs`` (the pairs of consecutive stored
    weeks behind ``own_sd``: its degrees of freedom).
    """
    from core.centering import _group_exclusive_cumsums

    present = ~np.isnan(x)
    c = np.where(present, course if use_course else 0.0, 0.0)
    first = pd.Series(x).groupby(gid, sort=False).transform("first").to_numpy()
    d = np.where(present, x - first, 0.0)
    one = present.astype("float64")
    n, sx, sc = _group_exclusive_cumsums(gid, one, d, c)
    with np.errstate(invalid="ignore", divide="ignore"):
        xbar, cbar = np.where(n > 0, sx / n, np.nan), np.where(n > 0, sc / n, np.nan)
        room = 2.0 * np.asarray(rise, dtype="float64")
        level0 = first + xbar - cbar
        rho = np.clip((ceiling - level0) / room, 0.0, 1.0) if use_course else np.ones(len(x))
        rho = np.where(np.isnan(rho), 1.0, rho)
        level = first + xbar - rho * cbar
        # week-to-week SD from successive differences of y (von Neumann's MSSD / 2): a patient
        # whose alliance rises faster or slower than the course is not taken for a noisy one
        y = pd.Series(np.where(present, x - first - rho * c, np.nan))
        y_prev = y.groupby(gid, sort=False).ffill().groupby(gid, sort=False).shift(1).to_numpy()
        pair = present & ~np.isnan(y_prev)
        d2 = np.where(pair, (y.to_numpy() - y_prev) ** 2, 0.0)
        s_d2, k = _group_exclusive_cumsums(gid, d2, pair.astype("float64"))
        own_sd = np.sqrt(np.where(k > 0, s_d2 / np.maximum(k, 1.0) / 2.0, np.nan))
    return {"n": n, "level": level, "rho": rho, "own_sd": own_sd, "pairs": k}


def below_expected_criteria(gid: np.ndarray, x: np.ndarray, course: np.ndarray, prev_row: np.ndarray, *,
                            ceiling: np.ndarray, rise: np.ndarray, prior_sd: np.ndarray,
                            prior_weeks: np.ndarray, rule: BelowExpectedRule, k: np.ndarray | float | None = None,
                            min_points: float | None = None, two_weeks: bool = True) -> dict[str, np.ndarray]:
    """``below_expected`` per row (one week and two weeks running), with what explains it.

    For week t of a series, with ``n``, ``level``, ``rho`` and ``own_sd`` of :func:`course_level`
    (the stored weeks before t) and ``c`` the expected course:

    * expected ``E_t = min(level + rho * c_t, ceiling)``; gap ``g_t = E_t - x_t``;
    * SD ``s~`` of :func:`shrunk_sd`; predictive SD ``s~ * sqrt(1 + 1/n)`` (the level is itself
      estimated from n weeks);
    * one week: ``g_t >= t_k * s~ * sqrt(1 + 1/n)`` and ``g_t >= min_points``, where ``t_k`` is the
      quantile of Student's t with ``d + d0`` degrees of freedom (``d`` the pairs of consecutive
      weeks behind the own SD) of the same one-sided tail as
      ``k_sd`` normal SDs (:func:`_t_threshold`: the SD is estimated, from few weeks at first);
    * two weeks: with week t-1 stored and the level, SD and n of the weeks before t-1,
      ``g_t-1 > 0``, ``g_t > 0`` and their mean ``>= t_k2 * s~ * sqrt(1/2 + 1/n)`` (``t_k2`` from
      ``two_week_k_sd`` as above) and ``>= min_points``;
    * fewer than ``min_prior_weeks`` weeks before: ``False`` with ``known`` False.

    ``prev_row`` is the row index of exactly week t-1 of the same series (-1 if not stored).
    ``k`` (per row or one value) and ``min_points`` override the rule's ``k_sd`` and
    ``min_points`` (the subscale test and weeks without items); ``two_weeks=False`` skips the
    two-week test. Returns ``one``, ``two`` (booleans), ``known``, and per row ``expected``, ``gap``, ``sd``
    (the shrunk SD), ``z`` (gap in predictive SDs) for the one-week test and ``expected2``,
    ``prev_expected2``, ``gap2`` (mean gap), ``sd2``, ``z2`` for the two-week test.
    """
    lv = course_level(gid, x, course, ceiling=ceiling, rise=rise, use_course=rule.use_course)
    c = course if rule.use_course else np.zeros(len(x))
    n, level, rho = lv["n"], lv["level"], lv["rho"]
    sd = shrunk_sd(lv["pairs"] + 1.0, lv["own_sd"], prior_sd=prior_sd, prior_weeks=prior_weeks)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.minimum(level + rho * c, ceiling)
        gap = expected - x
        pred = sd * np.sqrt(1.0 + 1.0 / n)
        z = gap / pred
    known = (n >= rule.min_prior_weeks) & ~np.isnan(gap) & ~np.isnan(pred)
    dof = lv["pairs"] + np.asarray(prior_weeks, dtype="float64")
    floor = rule.min_points if min_points is None else min_points
    one = known & (gap >= _t_threshold(rule.k_sd if k is None else k, dof) * pred) & (gap >= floor)
    out = {"one": one, "known": known, "expected": expected, "gap": gap, "sd": sd, "z": z}
    m = len(x)
    two = np.zeros(m, dtype=bool)
    expected2 = prev_expected2 = gap2 = sd2 = z2 = np.full(m, np.nan)
    if rule.two_week_k_sd is not None and two_weeks and m:
        has = prev_row >= 0
        j = np.where(has, prev_row, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            lev_p, rho_p = np.where(has, level[j], np.nan), rho[j]
            n_p = np.where(has, n[j], np.nan)
            sd_p = np.where(has, sd[j], np.nan)
            prev_expected2 = np.minimum(lev_p + rho_p * c[j], ceiling)
            expected2 = np.minimum(lev_p + rho_p * c, ceiling)
            g1 = prev_expected2 - x[j]
            g2 = expected2 - x
            gap2 = (g1 + g2) / 2.0
            sd2 = sd_p
            pred2 = sd_p * np.sqrt(0.5 + 1.0 / n_p)
            z2 = gap2 / pred2
        ok = has & (n_p >= rule.min_prior_weeks) & ~np.isnan(gap2) & ~np.isnan(pred2)
        crit2 = _t_threshold(rule.two_week_k_sd, np.where(has, dof[j], np.nan))
        two = ok & (g1 > 0) & (g2 > 0) & (gap2 >= crit2 * pred2) & (gap2 >= rule.min_points)
    out.update(two=two, expected2=expected2, prev_expected2=prev_expected2, gap2=gap2, sd2=sd2, z2=z2)
    return out


def repair_status(gid: np.ndarray, week: np.ndarray, baseline: np.ndarray, rc: np.ndarray,
                  now: np.ndarray, lookup: WeekLookup, *, rule: RepairRule,
                  score: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Status (``open``/``repaired``/``unrepaired``) and week of repair of ruptures.

    Repaired at the first week t+j (1 <= j <= ``weeks``) whose stored score satisfies
    ``baseline - score < rc_multiple * rc`` (back within one reliable change of the
    pre-rupture baseline, or above it) and, with ``score`` (the rupture week's scores) and
    ``rule.min_recovered``, ``score(t+j) - score >= min_recovered * (baseline - score)`` (at least
    that share of the fall won back). Unrepaired when no such week exists and the window
    has elapsed (``now >= t + weeks``); open otherwise. ``lookup`` holds only weeks that are
    stored as of ``now``; an unknown ``rc`` leaves the rupture open until it elapses, then
    unrepaired.
    """
    n = len(week)
    repaired_week = np.full(n, -1, dtype="int64")
    for j in range(rule.weeks, 0, -1):  # loop over the (few) window weeks, not over rows
        later = lookup.at(gid, week, j)
        ok = ~np.isnan(later) & ((baseline - later) < rule.rc_multiple * rc) & (week + j <= now)
        if rule.min_recovered is not None and score is not None:  # and half of the fall won back
            ok &= (later - score) >= rule.min_recovered * (baseline - score) - 1e-9
        repaired_week = np.where(ok, week + j, repaired_week)
    status = np.where(repaired_week > 0, "repaired", np.where(now >= week + rule.weeks, "unrepaired", "open"))
    return status, repaired_week
