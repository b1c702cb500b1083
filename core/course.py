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
    from scipy import special  # imported when used: commands that read no flags start faster
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
    from scipy import special  # imported when used: commands that read no flags start faster
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


# --------------------------------------------------------------------------- symptoms: not on track
#: Fewest completed courses (patients with a score in week 1 and at least ``MIN_WEEKS`` weeks)
#: before a clinic may freeze its own expected symptom course. Finch, Lambert & Schaalje (2001)
#: built their curves on thousands of patients; 100 courses give slopes whose standard error is a
#: small fraction of the between-patient spread (a project choice).
MIN_COURSES = 100
MIN_WEEKS = 6


@dataclass(frozen=True)
class SymptomCourse:
    """The expected course of a symptom instrument given the intake (week-1) score.

    ``E(t) = intake + (slope + intake_slope * (intake - intake_mean)) * tau(t)``, with ``tau(t)`` =
    ``log(t)`` (``time = "log"``) or ``t - 1`` (``"linear"``); the prediction band's SD
    ``sqrt(slope_sd^2 * tau(t)^2 + resid_sd^2)`` (between-patient spread of the rate and
    week-to-week noise). Log-linear time and the intake as predictor follow Finch, Lambert &
    Schaalje (2001) and Lambert et al. (2001, 2005); linear time fits courses that fall steadily
    (the SPIN week means of Shalom et al., 2025).
    """

    instrument: str
    time: str
    slope: float
    intake_slope: float
    intake_mean: float
    slope_sd: float
    resid_sd: float
    n_courses: int
    source: str

    def expected(self, intake: np.ndarray, week: np.ndarray) -> np.ndarray:
        """The expected score at ``week`` for a patient who started at ``intake``."""
        intake = np.asarray(intake, dtype="float64")
        return intake + (self.slope + self.intake_slope * (intake - self.intake_mean)) * time_of(week, self.time)

    def band_sd(self, week: np.ndarray) -> np.ndarray:
        """The SD of a patient's score around the expected one at ``week``."""
        tau = time_of(week, self.time)
        return np.sqrt(self.slope_sd ** 2 * tau ** 2 + self.resid_sd ** 2)

    def as_tuple(self) -> tuple:
        """As ``core.flags.FlagConfig.symptom_course`` stores it."""
        return (self.instrument, self.time, self.slope, self.intake_slope, self.intake_mean, self.slope_sd,
                self.resid_sd)


def time_of(week: np.ndarray, time: str) -> np.ndarray:
    """``log(t)`` or ``t - 1`` (both 0 in week 1)."""
    t = np.maximum(np.asarray(week, dtype="float64"), 1.0)
    return np.log(t) if time == "log" else t - 1.0


def literature_symptom_course(instrument: str, *, rc: float | None) -> SymptomCourse | None:
    """The default course of a symptom instrument with published week means (SPIN: Shalom et al.,
    2025) until the clinic freezes its own.

    The mean change regressed on ``tau(t)`` through the origin (log or linear time, whichever fits
    the means better), no intake effect; ``resid_sd`` = the standard error of measurement behind
    the instrument's reliable change (``rc / (1.96 * sqrt(2))``); ``slope_sd`` = half the mean
    rate (a project choice: patients' rates differ by about half their mean). ``None`` without
    week means or without a reliable change: the kind is then off for the instrument until the
    clinic freezes its own course.
    """
    from core import instruments as reg

    inst = reg.get(instrument)
    if not inst.week_means or rc is None or not np.isfinite(rc):
        return None
    m = np.asarray(inst.week_means, dtype="float64")
    fits = []
    for time in ("log", "linear"):  # the time scale that fits the published means better
        tau = time_of(np.arange(1, len(m) + 1), time)
        slope = float(((m - m[0]) * tau).sum() / (tau * tau).sum())
        sse = float(((m - m[0] - slope * tau) ** 2).sum())
        fits.append((sse, time, slope))
    _, time, slope = min(fits, key=lambda fit: fit[0])  # the first of equals: log
    sem = float(rc) / (1.96 * np.sqrt(2.0))
    return SymptomCourse(instrument=instrument, time=time, slope=round(slope, 4), intake_slope=0.0,
                         intake_mean=float(m[0]), slope_sd=round(abs(slope) / 2.0, 4), resid_sd=round(sem, 4),
                         n_courses=0,
                         source=f"literature: mean change by {'log(week)' if time == 'log' else 'week'} of "
                                f"{inst.week_means_source}; noise = the standard error of measurement "
                                f"({sem:.1f} points); rates differ by half the mean (a project choice)")


def _patient_lines(pid: np.ndarray, tau: np.ndarray, x: np.ndarray) -> pd.DataFrame:
    """Per patient: least-squares slope of ``x`` on ``tau`` (intercept free), its ``stt``, SSE, n."""
    g = pd.DataFrame({"p": pid, "t": tau, "x": x, "tt": tau * tau, "tx": tau * x, "xx": x * x, "n": 1.0})
    a = g.groupby("p").sum()
    stt = a["tt"] - a["t"] ** 2 / a["n"]
    stx = a["tx"] - a["t"] * a["x"] / a["n"]
    sxx = a["xx"] - a["x"] ** 2 / a["n"]
    slope = stx / stt
    sse = (sxx - slope * stx).clip(lower=0.0)
    return pd.DataFrame({"slope": slope, "stt": stt, "sse": sse, "n": a["n"]})


def estimate_symptom_course(scores: pd.DataFrame, instrument: str, *, min_courses: int = MIN_COURSES,
                            min_weeks: int = MIN_WEEKS, day: str = "") -> SymptomCourse:
    """Estimate the expected course of ``instrument`` from the clinic's completed courses.

    Each completed course (a week-1 score and at least ``min_weeks`` stored weeks) gives its own
    least-squares rate of change ``b_i`` on ``tau(t)`` (log(t) or t - 1, whichever leaves the
    smaller pooled residual variance). The expected rate is robust to the patients who do not
    respond, whom the band is meant to find: the intake effect ``intake_slope`` is the Theil-Sen
    slope of ``b_i`` on the intake (Theil, 1950; Sen, 1968), ``slope`` the median of the
    intake-adjusted rates, and ``slope_sd`` their spread by the median absolute deviation
    (``1.4826 * MAD``; Rousseeuw & Croux, 1993) less the part that is measurement noise;
    ``resid_sd`` is the pooled SD of the weeks around each patient's own line. Vectorised grouped
    sums; no loop over patients.

    Raises
    ------
    ValueError
        Fewer than ``min_courses`` completed courses.
    """
    from scipy import stats as sps

    check_scores(scores)
    f = scores[(scores["instrument"] == instrument) & scores["score"].notna()][["patient_id", "week", "score"]]
    intake = f[f["week"] == 1].drop_duplicates("patient_id").set_index("patient_id")["score"]
    counts = f.groupby("patient_id")["week"].nunique()
    keep = counts.index[(counts >= min_weeks) & counts.index.isin(intake.index)]
    if len(keep) < min_courses:
        raise ValueError(f"The clinic has {len(keep)} completed {instrument} courses (a week-1 score and at least "
                         f"{min_weeks} weeks); its own expected course needs at least {min_courses}. Keep the "
                         f"default until more courses are stored.")
    f = f[f["patient_id"].isin(keep)]
    pid = f["patient_id"].to_numpy()
    x = f["score"].to_numpy(dtype="float64")
    fits = []
    for time in ("log", "linear"):
        lines = _patient_lines(pid, time_of(f["week"].to_numpy(), time), x)
        pooled = float(lines["sse"].sum() / (lines["n"] - 2).clip(lower=1).sum())
        fits.append((pooled, time, lines))
    resid_var, time, lines = min(fits, key=lambda fit: fit[0])  # the first of equals: log
    x1 = intake.reindex(lines.index).to_numpy(dtype="float64")
    b = lines["slope"].to_numpy()
    mean1 = float(np.mean(x1))
    intake_slope = float(sps.theilslopes(b, x1).slope) if len(b) <= 5000 else float(
        sps.theilslopes(b[:5000], x1[:5000]).slope)
    adjusted = b - intake_slope * (x1 - mean1)
    slope = float(np.median(adjusted))
    mad_sd = 1.4826 * float(np.median(np.abs(adjusted - slope)))
    noise = float(np.median(resid_var / lines["stt"].to_numpy()))
    slope_sd = float(np.sqrt(max(mad_sd ** 2 - noise, 0.0)))
    return SymptomCourse(instrument=instrument, time=time, slope=round(slope, 4), intake_slope=round(intake_slope, 4),
                         intake_mean=round(mean1, 3), slope_sd=round(slope_sd, 4),
                         resid_sd=round(float(np.sqrt(resid_var)), 4), n_courses=len(keep),
                         source=f"this clinic's {len(keep)} completed courses" + (f", frozen on {day}" if day else ""))
