"""The clinic's expected alliance course and typical within-person SD, estimated once and frozen.

``below_expected`` (core/ruptures.py) compares each week's alliance with the patient's own level
plus the clinic's typical change by treatment week, on the patient's own week-to-week scale
pulled toward the clinic's typical one. Those clinic numbers are estimated here from the
clinic's stored scores when an admin freezes them (``manage.py freeze-parameters --course``),
never while flags are raised: a flag depends on the patient's own weeks and the frozen numbers
alone.

* **Week means** (the expected course): a two-way fixed-effects fit ``x_it = a_i + m_t + e_it``
  by alternating means (each patient's level ``a_i`` and each week's effect ``m_t``), so that
  patients who leave early or start late do not bend the course; reported as ``m_t`` plus the
  mean level, weeks with at least ``min_patients_per_week`` patients, flat afterwards.
* **Typical within-person SD and its weight**: each patient's week-to-week SD on the course as
  the rule measures it (half the mean squared successive difference, ``k_i`` pairs of weeks),
  summarised by the empirical Bayes prior of
  Smyth (2004, Stat Appl Genet Mol Biol 3:3; ``limma::fitFDist``): ``s0`` and ``d0`` such that
  the patients' variances look like ``s0^2 * chi^2_d0 / d0`` draws. ``d0`` says how much the
  patients differ in steadiness (large: alike; small: very different), and is the weight of
  ``s0`` in weeks of a patient's own data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from core.centering import check_scores

#: Fewest patients with three or more weeks before a clinic may freeze its own course.
MIN_PATIENTS = 30
#: Upper bound on the prior weight (weeks): beyond it the patients are alike and more adds nothing.
MAX_PRIOR_WEEKS = 50.0


@dataclass(frozen=True)
class CourseEstimate:
    """One instrument's estimated course: week means (week 1, 2, ...), ``within_sd``, ``prior_weeks``."""

    instrument: str
    week_means: tuple[float, ...]
    within_sd: float
    prior_weeks: float
    n_patients: int
    n_scores: int


def trigamma_inverse(x: float) -> float:
    """``y`` with ``trigamma(y) = x`` (Newton's method of ``limma::trigammaInverse``)."""
    if x > 1e7:
        return 1.0 / np.sqrt(x)
    if x < 1e-6:
        return 1.0 / x
    y = 0.5 + 1.0 / x
    for _ in range(50):
        tri = special.polygamma(1, y)
        dif = tri * (1.0 - tri / x) / special.polygamma(2, y)
        y += dif
        if -dif / y < 1e-8:
            break
    return float(y)


def variance_prior(var: np.ndarray, dof: np.ndarray) -> tuple[float, float]:
    """``(s0, d0)`` of the scaled inverse-chi-square prior of sample variances (``limma::fitFDist``).

    ``e = log(var) - digamma(d/2) + log(d/2)``; ``trigamma(d0/2) = var(e) - mean(trigamma(d/2))``;
    ``s0^2 = exp(mean(e) + digamma(d0/2) - log(d0/2))``. When the variances vary no more than
    sampling alone explains, ``d0`` is infinite (capped at ``MAX_PRIOR_WEEKS``).
    """
    var = np.asarray(var, dtype="float64")
    dof = np.asarray(dof, dtype="float64")
    ok = (var > 0) & (dof > 0) & np.isfinite(var)
    var, dof = var[ok], dof[ok]
    if len(var) < 3:
        raise ValueError("At least three patients with two or more weeks are needed to estimate the typical "
                         "within-person SD.")
    e = np.log(var) - special.digamma(dof / 2) + np.log(dof / 2)
    emean = float(e.mean())
    evar = float(((e - emean) ** 2).sum() / (len(e) - 1) - special.polygamma(1, dof / 2).mean())
    if evar > 0:
        d0 = 2.0 * trigamma_inverse(evar)
        s0sq = float(np.exp(emean + special.digamma(d0 / 2) - np.log(d0 / 2)))
    else:
        d0, s0sq = np.inf, float(np.exp(emean))
    return float(np.sqrt(s0sq)), float(min(d0, MAX_PRIOR_WEEKS))


def estimate_course(scores: pd.DataFrame, instrument: str, *, min_patients_per_week: int = 20,
                    iterations: int = 50) -> CourseEstimate:
    """Estimate one alliance instrument's week means, typical within-person SD and its weight.

    ``scores`` is the core scores frame; only ``instrument``'s rows with a score are used.
    Vectorised: grouped means over all rows, ``iterations`` alternating passes.

    Raises
    ------
    ValueError
        Fewer than ``MIN_PATIENTS`` patients with at least three weeks.
    """
    check_scores(scores)
    f = scores[(scores["instrument"] == instrument) & scores["score"].notna()]
    pid = pd.factorize(f["patient_id"])[0]
    week = f["week"].to_numpy(dtype="int64")
    x = f["score"].to_numpy(dtype="float64")
    counts = np.bincount(pid) if len(pid) else np.zeros(0, dtype="int64")
    n_ok = int((counts >= 3).sum())
    if n_ok < MIN_PATIENTS:
        raise ValueError(f"The clinic has {n_ok} patients with three or more {instrument} weeks; estimating its "
                         f"own course needs at least {MIN_PATIENTS}. Keep the literature default until more "
                         f"weeks are stored.")
    per_week = pd.Series(pid).groupby(week).nunique()
    last = int(per_week.index[per_week.to_numpy() >= min_patients_per_week].max())
    wk = np.minimum(week, last)  # later weeks share the last well-filled week's effect (flat course)
    m = np.zeros(last + 1)
    a = np.zeros(len(counts))
    for _ in range(iterations):  # alternating projections, vectorised over rows
        a = np.bincount(pid, weights=x - m[wk]) / counts
        m_new = np.bincount(wk, weights=x - a[pid], minlength=last + 1) / np.maximum(
            np.bincount(wk, minlength=last + 1), 1)
        if np.max(np.abs(m_new - m)) < 1e-9:
            m = m_new
            break
        m = m_new
    means = m[1:] + a.mean()
    # each patient's week-to-week variance as the rules measure it (MSSD / 2 of the scores on the
    # course, core.ruptures.course_level), over consecutive stored weeks in week order
    order = np.lexsort((week, pid))
    y, p_sorted = (x - m[wk])[order], pid[order]
    same = np.r_[False, p_sorted[1:] == p_sorted[:-1]]
    d2 = np.where(same, np.diff(y, prepend=np.nan) ** 2, 0.0)
    pairs = np.bincount(p_sorted, weights=same.astype("float64"), minlength=len(counts))
    ss = np.bincount(p_sorted, weights=d2, minlength=len(counts))
    use = pairs >= 2
    s0, d0 = variance_prior(ss[use] / pairs[use] / 2.0, pairs[use])
    return CourseEstimate(instrument=instrument, week_means=tuple(round(float(v), 3) for v in means),
                          within_sd=round(s0, 4), prior_weeks=round(d0, 3), n_patients=n_ok, n_scores=len(x))


def estimate_alliance_course(scores: pd.DataFrame, instrument: str) -> list[CourseEstimate]:
    """:func:`estimate_course` of an alliance instrument's total and of each of its subscales.

    Subscale estimates (instrument ``"WAI-SR:bond"`` etc.) use the rows with every item of the
    subscale answered; a subscale with too few patients is left out (its default then applies).
    """
    from core import instruments as reg

    inst = reg.get(instrument)
    out = [estimate_course(scores, instrument)]
    rows = scores[scores["instrument"] == instrument]
    if not inst.subscales or not len(rows):
        return out
    subs = reg.subscale_scores(rows, instrument=instrument)
    for name in sorted(inst.subscales):
        frame = pd.DataFrame({"patient_id": rows["patient_id"].to_numpy(), "instrument": instrument,
                              "week": rows["week"].to_numpy(), "score": subs[name].to_numpy()})
        try:
            est = estimate_course(frame, instrument)
        except ValueError:
            continue
        out.append(CourseEstimate(instrument=f"{instrument}:{name}", week_means=est.week_means,
                                  within_sd=est.within_sd, prior_weeks=est.prior_weeks,
                                  n_patients=est.n_patients, n_scores=est.n_scores))
    return out


def as_config(estimates: list[CourseEstimate]) -> tuple[tuple[str, tuple[float, ...], float, float], ...]:
    """Estimates as ``core.flags.FlagConfig.alliance_course``."""
    return tuple((e.instrument, e.week_means, e.within_sd, e.prior_weeks) for e in estimates)
