"""Symptom signals: reliable deterioration and improvement, caseness, risk items, missed weeks.

For a symptom series (SPIN, PHQ-9, GAD-7, ...; higher = worse unless the definition says
otherwise), week t, first stored week f of that series:

* ``deterioration``: ``score_t - score_f >= rc`` (worse by at least one reliable change);
* ``improvement``: ``score_f - score_t >= rc``;
* ``caseness``: the score crosses into caseness (``score_t >= caseness`` while the previous
  stored week was below it);
* ``risk_item``: a risk item (``risk_items`` of the definition; PHQ-9 item 9, thoughts of
  self-harm) is above 0: an urgent alert every week it happens;
* ``missed``: N expected weeks in a row without any questionnaire.

``rc`` is the instrument's reliable-change cut-off (Jacobson & Truax, 1991): the explicit
``reliable_change`` of the definition (PHQ-9 6, GAD-7 4) or, for an instrument with a
reliability but no SD (SPIN), ``1.96 * sqrt(2) * SD_1 * sqrt(1 - r)`` with ``SD_1`` the SD of
the clinic's week-1 scores (:func:`core.centering.baseline_sds`).

References
----------
Jacobson & Truax (1991), doi:10.1037/0022-006X.59.1.12. Kroenke, Spitzer & Williams (2001)
J Gen Intern Med 16:606, doi:10.1046/j.1525-1497.2001.016009606.x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.ruptures import _nullable


@dataclass(frozen=True)
class ReliableChangeRule:
    """Reliable change from the first stored week (deterioration or improvement).

    Parameters
    ----------
    rc_multiple : float or None
        Change >= ``rc_multiple`` x the instrument's reliable-change cut-off. ``None`` = off.
    min_points : float or None
        Change >= this many points. ``None`` = off.
    every_week : bool
        ``False`` (default): flag the week the patient enters the state (the previous stored
        week did not meet it); ``True``: flag every week that meets it.
    """

    rc_multiple: float | None = 1.0
    min_points: float | None = None
    every_week: bool = False


@dataclass(frozen=True)
class CasenessRule:
    """Crossing into caseness: a score at or past the cut-off after a stored score below it.

    Parameters
    ----------
    cutoff : float or None
        ``None`` = the instrument's ``caseness`` (PHQ-9 10, GAD-7 8, SPIN 19).
    once : bool
        ``True`` (default): only the first crossing of a course is flagged. A score that
        hovers around the cut-off would otherwise raise an alert at every re-crossing (the
        demo clinic's PHQ-9 gave 57 such alerts for 60 patients), and alerts that repeat
        are the ones that get ignored (CLINICAL.md, "Calibrated").
    new_only : bool
        ``True`` (default): only a patient whose first questionnaire was below the cut-off
        is flagged (a *new* problem, e.g. depression emerging during treatment for social
        anxiety). A patient who started above it and hovers around it is not yet recovered,
        which the course and the reliable-change flags already show. ``False``: any crossing.
    """

    cutoff: float | None = None
    once: bool = True
    new_only: bool = True


@dataclass(frozen=True)
class RiskItemRule:
    """A risk item (e.g. PHQ-9 item 9) answered above ``threshold`` (default 0)."""

    threshold: float = 0.0


@dataclass(frozen=True)
class NotOnTrackRule:
    """Worse than the course expected for a patient who started where this one started.

    Parameters
    ----------
    z : float
        Not on track in week t when the week's score is worse than expected for the patient's
        intake *and* the patient's own rate of change since intake (a line through the intake and
        every stored week up to t: the least-squares slope of the scores on ``tau(t)``) is worse
        than the expected rate by more than ``z`` standard errors (``sqrt(slope_sd^2 + resid_sd^2 /
        S_tt)``: how much patients like them differ, plus the noise of the patient's own weeks).
        ``core.course.SymptomCourse`` gives the expected course. Default 1.4 (docs/calibration.md).
    min_week : int
        Not judged before this treatment week (the first weeks are noisy). Default 3.
    high_rc_multiple : float or None
        Severity ``high`` when the score is also this many reliable changes beyond the band's
        bound, else ``medium``. ``None``: always ``medium``.
    """

    z: float = 1.4
    min_week: int = 3
    high_rc_multiple: float | None = 1.0


@dataclass(frozen=True)
class MissedRule:
    """``weeks`` expected weeks in a row without any questionnaire (default 2)."""

    weeks: int = 2


def check_symptom_rules(*, deterioration=None, improvement=None, caseness=None, risk_item=None,
                        missed=None, not_on_track=None) -> None:
    """Raise ``ValueError`` on symptom-rule settings that cannot work."""
    for name, rule in (("deterioration", deterioration), ("improvement", improvement)):
        if rule is None:
            continue
        for field in ("rc_multiple", "min_points"):
            v = getattr(rule, field)
            if v is not None and not (isinstance(v, (int, float)) and np.isfinite(v) and v > 0):
                raise ValueError(f"The setting {name}.{field} must be a positive number or None; got {v!r}.")
        if rule.rc_multiple is None and rule.min_points is None:
            raise ValueError(f"The {name} rule has every criterion off; switch the rule off (None) instead.")
    if caseness is not None and caseness.cutoff is not None and not np.isfinite(caseness.cutoff):
        raise ValueError("caseness.cutoff must be a number or None (the instrument's own cut-off).")
    thr = None if risk_item is None else risk_item.threshold
    if risk_item is not None and not (isinstance(thr, (int, float)) and np.isfinite(thr)):
        raise ValueError("risk_item.threshold must be a number (default 0).")
    if missed is not None and (not isinstance(missed.weeks, int) or missed.weeks < 1):
        raise ValueError("missed.weeks must be a whole number of weeks, at least 1.")
    if not_on_track is not None:
        r = not_on_track
        if not (isinstance(r.z, (int, float)) and np.isfinite(r.z) and r.z > 0):
            raise ValueError(f"not_on_track.z must be a positive number of band SDs; got {r.z!r}.")
        if not isinstance(r.min_week, int) or r.min_week < 2:
            raise ValueError("not_on_track.min_week must be a whole number of at least 2 (week 1 is the intake).")
        hr = r.high_rc_multiple
        if hr is not None and not (isinstance(hr, (int, float)) and np.isfinite(hr) and hr > 0):
            raise ValueError("not_on_track.high_rc_multiple must be a positive number or None.")


def reliable_change_criteria(first: np.ndarray, score: np.ndarray, rc: np.ndarray, *,
                             worse_sign: np.ndarray, rule: ReliableChangeRule,
                             direction: str) -> pd.arrays.BooleanArray:
    """Whether ``score`` has reliably deteriorated (or improved) since ``first``.

    ``worse_sign`` is +1 where a higher score is worse, -1 where higher is better. With
    ``change = worse_sign * (score - first)`` (positive = worse), deterioration is
    ``change >= rc_multiple * rc`` (and ``>= min_points``), improvement ``-change >= ...``.
    ``<NA>`` where the first score, the score or a needed ``rc`` is unknown. A change exactly
    at the cut-off counts.
    """
    change = worse_sign * (score - first)
    if direction == "improvement":
        change = -change
    known = ~np.isnan(change)
    value = np.ones(len(score), dtype=bool)
    if rule.rc_multiple is not None:
        known = known & ~np.isnan(rc)
        value &= change >= rule.rc_multiple * rc
    if rule.min_points is not None:
        value &= change >= rule.min_points
    return _nullable(np.where(known, value, False), known)


def missed_runs(pcode: np.ndarray, week: np.ndarray, now: np.ndarray, *, weeks: int) -> pd.DataFrame:
    """Runs of at least ``weeks`` missing weeks, one row per run, raised when it reaches ``weeks``.

    Parameters
    ----------
    pcode : array of int
        Patient number of each stored week (one row per patient and week with any score).
    week : array of int
        The stored weeks.
    now : array of int
        Per patient number (indexed by ``pcode``): the week the treatment is at now. Weeks
        after the patient's first stored week up to ``now`` are expected.

    Returns
    -------
    DataFrame
        ``pcode, last_seen`` (the last stored week before the run), ``first_missing`` and
        ``week`` (= ``first_missing + weeks - 1``, the week the flag is raised for).

    Notes
    -----
    Vectorised: sort, ``diff`` of stored weeks, plus the trailing run up to ``now``.
    A flag for week w depends only on weeks <= w, so it never changes when later weeks arrive.
    """
    if len(week) == 0:
        return pd.DataFrame({"pcode": np.zeros(0, "int64"), "last_seen": np.zeros(0, "int64"),
                             "first_missing": np.zeros(0, "int64"), "week": np.zeros(0, "int64")})
    order = np.lexsort((week, pcode))
    p, w = pcode[order], week[order]
    nxt_same = np.r_[p[1:] == p[:-1], False]
    nxt = np.where(nxt_same, np.r_[w[1:], 0], now[p] + 1)  # trailing run ends at now
    gap = nxt - w - 1
    hit = gap >= weeks
    return pd.DataFrame({
        "pcode": p[hit].astype("int64"),
        "last_seen": w[hit].astype("int64"),
        "first_missing": (w[hit] + 1).astype("int64"),
        "week": (w[hit] + weeks).astype("int64"),
    })
