"""The supervisor's caseload scan and the clinic meeting: pure aggregates over alerts and scores.

Two screens build on this module (PRODUCT.md, users 2 and 3):

* the **caseload scan** (``/caseload``): every open alert of a team in one table, the
  urgent ones first (:func:`caseload_table`, :func:`filter_alerts`,
  :func:`therapist_counts`, :func:`flagged_patients`, :func:`flagged_courses`);
* the **clinic meeting** (``/clinic``): alerts per week by kind (:func:`alerts_per_week`),
  rupture and repair rates and the median weeks to repair (:func:`rupture_summary`), the
  average courses by treatment week with their spread (:func:`average_courses`), a reading
  of the within-person estimates in plain words (:func:`read_within_estimate`: the trial's
  specification and the one adjusted for treatment week, and which to read when the scores
  trend, :func:`weekly_trends`, :func:`alliance_within_sd`), and the
  privacy tools of *meeting mode*: small-count suppression (:func:`suppress_counts`) and
  pseudonyms (:func:`pseudonymise`).

Input frames
------------
``alerts`` are the rows of ``db.caseload.read_alerts``: the ``core.flags.compute_flags``
columns (with the therapists' notes: ``note``, ``note_by``, ``note_at``) plus
``therapist_name``, ``team``, ``flag_date`` (the date the flag's week was administered) and
``age_days`` (days from ``flag_date`` to today). ``scores`` follow the core column contract.

Small-count suppression (meeting mode)
--------------------------------------
A project choice following common statistical-disclosure practice (e.g. NHS England's
suppression of small numbers): any displayed count from 1 to 10 is replaced by a marker, and
so is any further count from which a suppressed one could be worked out by subtraction from
a displayed total (*secondary* or *complementary* suppression). Zero is shown in the clinic's
totals (it reveals no patient) but suppressed in pseudonymised per-therapist rows, where a pattern
of zeros tells the room who a "Therapist C" is (:func:`meeting_therapist_table`).

A **rate** is not a count: it is shown only when its *denominator* is above the threshold
(:func:`rate_display`). When its numerator is suppressed the rate shows as the bound that a
suppressed numerator allows ("≤28%" for at most 10 of 36), never as the marker "≤10", which reads
as "at most 10%". A median is shown only when it is the median of more than 10 values.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.caseload import NOT_ALERTS, flag_status_words, kind_words, rule_words
from core.models import (
    MIN_DETREND_WEEKS,
    PUBLISHED,
    AnalysisResult,
    PublishedResults,
    TermEstimate,
    detrend_by_person,
)

__all__ = [
    "ALERT_STATUSES", "OVERDUE_DAYS", "SEVERITY_ORDER", "STANDS_FIRST", "SUPPRESSED", "SUPPRESS_RANGE",
    "TREND_POINTS_PER_WEEK", "TRIAGE_TIERS", "RuptureSummary", "alerts_per_week", "alliance_within_sd",
    "on_track_by_week",
    "average_courses", "both_trend", "caseload_table", "filter_alerts", "first_in_words", "flagged_courses",
    "flagged_patients", "format_counts", "meeting_alerts", "meeting_therapist_table", "pseudonymise",
    "rate_display", "read_within_estimate", "rupture_summary", "TOO_FEW", "suppress_count", "suppress_counts",
    "therapist_counts", "weekly_trends",
]

#: Statuses that make a flag part of the caseload scan: still open, an unrepaired rupture, or
#: addressed by the therapist (shown so that the supervisor reads the note).
ALERT_STATUSES = ("open", "unrepaired", "addressed")
#: An alert not addressed this many days after its week was administered is *overdue*
#: (PRODUCT.md: "unaddressed alerts older than a week stand first").
OVERDUE_DAYS = 7
#: Severities, most urgent first (as ``core.flags.SEVERITIES``).
SEVERITY_ORDER = {"urgent": 0, "high": 1, "medium": 2, "low": 3}
#: Displayed counts in this range are suppressed in meeting mode (project choice).
SUPPRESS_RANGE = (1, 10)
#: What a suppressed count shows.
SUPPRESSED = "≤10"
#: Alliance and symptoms "both trend" when each changes by at least this many points a week on
#: average over treatment (project choice: 2 points over a 10-week course, about half the typical
#: week's distance from the patient's own course; the trial's WAI-SR rose about 1.1 and its SPIN
#: fell about 1.6 points a week).
TREND_POINTS_PER_WEEK = 0.2

_CASELOAD_COLUMNS = ["therapist_id", "therapist_name", "team", "patient_id", "kind", "rule", "severity",
                     "instrument", "week", "flag_date", "age_days", "status", "note", "note_by", "explanation",
                     "raised_at"]


# --------------------------------------------------------------------------- caseload scan


#: The caseload's triage tiers (``triage`` column), in the order a supervisor acts on them. Tiers 1–3
#: *stand first* (``urgent_first``): a small set, each with its reason; tier 4 is ordered before the rest
#: but not marked, so that a clinic with many old low-severity alerts still sees what to act on.
TRIAGE_TIERS = {
    1: "urgent risk item, not yet addressed",
    2: "unrepaired rupture",
    3: "high-severity alert not addressed within a week",
    4: "not addressed within a week",
    5: "recent",
    6: "addressed in feedback",
}
#: Tiers that stand first.
STANDS_FIRST = (1, 2, 3)
#: The ``act_on`` cell per tier (tiers 3–5 add the alert's age in days).
_ACT_ON = {1: "First · urgent risk", 2: "First · unrepaired rupture", 3: "First · high, unaddressed",
           4: "Unaddressed", 5: "Recent", 6: "Addressed in feedback"}


def caseload_table(alerts: pd.DataFrame, *, overdue_days: int = OVERDUE_DAYS) -> pd.DataFrame:
    """Every alert that still needs a look, one row each, in the order a supervisor acts on them.

    Kept: flags whose kind is an alert (not ``improvement``) and whose status is one of
    :data:`ALERT_STATUSES`. Each row gets a triage tier (:data:`TRIAGE_TIERS`):

    1. an unaddressed urgent alert (a risk item), whatever its age or whether its date is known;
    2. an unrepaired rupture;
    3. a high-severity alert (reliable deterioration, a rupture both rules confirm) not addressed
       within ``overdue_days`` days;
    4. any other alert not addressed within ``overdue_days`` days (*overdue*);
    5. the rest (recent, or of unknown age);
    6. addressed in feedback (shown so that the supervisor reads the note).

    Tiers 1–3 *stand first* (``urgent_first``). Within a tier: severity (urgent → low), then the
    oldest first, then therapist, patient and week.

    Parameters
    ----------
    alerts : DataFrame
        Rows of ``db.caseload.read_alerts`` (see the module docstring). Not modified.
    overdue_days : int
        An unaddressed alert older than this many days is overdue (default 7).

    Returns
    -------
    DataFrame
        Columns ``therapist_id, therapist_name, team, patient_id, kind, rule, severity,
        instrument, week, flag_date, age_days, status, note, note_by, explanation`` plus
        ``overdue`` (bool), ``unrepaired_rupture`` (bool), ``triage`` (1–6), ``urgent_first``
        (bool: tiers 1–3), ``act_on`` (the tier in a few words, e.g. "First · urgent risk",
        "38 days unaddressed"),
        ``kind_words``, ``rule_words``, ``status_words`` (labels, ``core.caseload``), ``alert``
        (kind and questionnaire, e.g. "Risk item · PHQ-9"; the kind alone for a patient-level flag) and
        ``link`` (``/patient?patient=CODE``).
    """
    if overdue_days < 0:
        raise ValueError("overdue_days must be 0 or more days.")
    frame = alerts.copy()
    for col in _CASELOAD_COLUMNS:
        if col not in frame.columns:
            frame[col] = pd.NA
    if "last_week" in frame.columns:  # rupture then silence: say why it is unrepaired
        silent = (frame["kind"].eq("rupture") & frame["status"].eq("unrepaired")
                  & pd.to_numeric(frame["last_week"], errors="coerce").le(frame["week"])).fillna(False).astype(bool)
        frame["explanation"] = frame["explanation"].astype("string")
        frame.loc[silent, "explanation"] = (frame.loc[silent, "explanation"].fillna("")
                                            + " Unrepaired: no questionnaire since week "
                                            + frame.loc[silent, "week"].astype(str)
                                            + ", and the repair window has passed.")
    keep = frame["status"].isin(ALERT_STATUSES) & ~frame["kind"].isin(NOT_ALERTS)
    out = frame.loc[keep.fillna(False).astype(bool), _CASELOAD_COLUMNS].reset_index(drop=True)
    age = pd.to_numeric(out["age_days"], errors="coerce").astype("Float64")
    out["age_days"] = age.round().astype("Int64")
    addressed = out["status"].eq("addressed").fillna(False).astype(bool)
    out["overdue"] = (~addressed & age.gt(overdue_days)).fillna(False).astype(bool)
    out["unrepaired_rupture"] = (out["kind"].eq("rupture") & out["status"].eq("unrepaired")).fillna(False).astype(bool)
    urgent = (out["severity"].eq("urgent") & ~addressed).fillna(False).astype(bool)
    high_overdue = (out["overdue"] & out["severity"].eq("high")).fillna(False).astype(bool)
    out["triage"] = np.select([urgent, out["unrepaired_rupture"], high_overdue, out["overdue"], ~addressed],
                              [1, 2, 3, 4, 5], default=6).astype("int64")
    out["urgent_first"] = out["triage"].isin(STANDS_FIRST)
    days = out["age_days"].astype("string")
    tier = out["triage"]
    words = tier.map(_ACT_ON).astype("string")
    words = words.mask(tier.eq(3), ("First · high, " + days + " days unaddressed").fillna("First · high, unaddressed"))
    words = words.mask(tier.eq(4), (days + " days unaddressed").fillna("Unaddressed"))
    words = words.mask(tier.eq(5), ("Recent (" + days + " days)").fillna("Open, date unknown"))
    out["act_on"] = words.astype("string")
    out["kind_words"] = kind_words(out["kind"])
    out["rule_words"] = rule_words(out["rule"])
    out["status_words"] = flag_status_words(out["status"])
    questionnaire = out["instrument"].astype("string")
    out["alert"] = (out["kind_words"] + (" · " + questionnaire).fillna("")).astype("string")
    out["note"] = out["note"].astype("string")
    out["link"] = "/patient?patient=" + out["patient_id"].astype("string")
    rank = out["severity"].map(SEVERITY_ORDER).fillna(len(SEVERITY_ORDER)).astype(int)
    order = out.assign(_sev=rank, _age=-age.fillna(-1))
    order = order.sort_values(["triage", "_sev", "_age", "therapist_id", "patient_id", "week"], kind="stable")
    return order.drop(columns=["_sev", "_age"]).reset_index(drop=True)


def first_in_words(table: pd.DataFrame) -> str:
    """Why the rows of :func:`caseload_table` that stand first do, as one sentence part, e.g.
    "3 risk items not yet addressed, 3 unrepaired ruptures and 2 high-severity alerts not addressed
    within a week" ("no alert" when none stands first)."""
    counts = table["triage"].value_counts() if len(table) else pd.Series(dtype="int64")
    parts = []
    for tier, one, many in ((1, "urgent risk item not yet addressed", "urgent risk items not yet addressed"),
                            (2, "unrepaired rupture", "unrepaired ruptures"),
                            (3, "high-severity alert not addressed within a week",
                             "high-severity alerts not addressed within a week")):
        n = int(counts.get(tier, 0))
        if n:
            parts.append(f"{n} {one if n == 1 else many}")
    if not parts:
        return "no alert"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def filter_alerts(table: pd.DataFrame, *, therapists: Iterable[str] | None = None,
                  kinds: Iterable[str] | None = None, severities: Iterable[str] | None = None,
                  statuses: Iterable[str] | None = None, min_age: int | None = None,
                  max_age: int | None = None, new_only: bool = False) -> pd.DataFrame:
    """The rows of :func:`caseload_table` that pass every filter given (``None`` = no filter).

    ``new_only`` keeps the rows whose ``new`` column (raised since the user's last visit,
    ``core.caseload.new_since``) is true.
    An empty selection (``[]``) of therapists, kinds, severities or statuses is read as "no
    filter", as an empty multiselect means "all" to a user. ``min_age``/``max_age`` are
    inclusive bounds on ``age_days``; a row without an age passes only when neither is set.
    """
    mask = pd.Series(True, index=table.index)
    for column, wanted in (("therapist_id", therapists), ("kind", kinds), ("severity", severities),
                           ("status", statuses)):
        values = list(wanted) if wanted is not None else []
        if values:
            mask &= table[column].isin(values).fillna(False).astype(bool)
    age = pd.to_numeric(table["age_days"], errors="coerce")
    if min_age is not None:
        mask &= age.ge(min_age).fillna(False).astype(bool)
    if max_age is not None:
        mask &= age.le(max_age).fillna(False).astype(bool)
    if new_only and "new" in table.columns:
        mask &= table["new"].fillna(False).astype(bool)
    return table.loc[mask].reset_index(drop=True)


def therapist_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Per therapist: alerts, patients with an alert, unrepaired ruptures, overdue, addressed.

    Sorted by the number of rows that need the supervisor first (unrepaired + overdue).
    """
    cols = ["therapist_id", "therapist_name", "alerts", "patients", "unrepaired_ruptures", "overdue", "addressed"]
    if table.empty:
        return pd.DataFrame({c: pd.Series(dtype="int64" if c not in cols[:2] else "string") for c in cols})
    key = table["therapist_id"].fillna("(no therapist)")
    grouped = table.assign(therapist_id=key, addressed=table["status"].eq("addressed")).groupby(
        "therapist_id", sort=True)
    out = grouped.agg(therapist_name=("therapist_name", "first"), alerts=("patient_id", "size"),
                      patients=("patient_id", "nunique"), unrepaired_ruptures=("unrepaired_rupture", "sum"),
                      overdue=("overdue", "sum"), addressed=("addressed", "sum")).reset_index()
    for c in cols[2:]:
        out[c] = out[c].astype("int64")
    need = out["unrepaired_ruptures"] + out["overdue"]
    return (out.assign(_need=need).sort_values(["_need", "alerts", "therapist_id"], ascending=[False, False, True])
            .drop(columns="_need").reset_index(drop=True)[cols])


def flagged_patients(table: pd.DataFrame, *, limit: int = 12,
                     prefer_kinds: Sequence[str] = ("rupture", "low_alliance")) -> list[str]:
    """The codes of up to ``limit`` flagged patients of ``table``, in panel order: patients with an
    alliance alert (``prefer_kinds``) first, then the others, each in the order of ``table``.

    The patients :func:`flagged_courses` draws, so that a page can read only their scores.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1 patient.")
    preferred = table["kind"].isin(list(prefer_kinds)).fillna(False).astype(bool)
    ranked = table.assign(_pref=~preferred, _pos=np.arange(len(table))).sort_values(["_pref", "_pos"], kind="stable")
    return [str(c) for c in pd.unique(ranked["patient_id"].dropna().astype(str))[:limit]]


def flagged_courses(scores: pd.DataFrame, table: pd.DataFrame, *, instruments: Sequence[str] = ("WAI-SR", "WAI-P"),
                    limit: int = 12, prefer_kinds: Sequence[str] = ("rupture", "low_alliance")) -> pd.DataFrame:
    """The alliance scores of up to ``limit`` flagged patients of ``table``.

    For the small multiples of the caseload page. Patients with an alliance alert
    (``prefer_kinds``) come first, then the others, each in the order of ``table``
    (:func:`flagged_patients`). ``scores`` may hold only those patients' scores. Returns
    the score rows (core contract columns) of those patients and instruments with an extra
    ``panel`` column (0, 1, ...: the patient's position), sorted by panel, instrument, week.
    """
    order = flagged_patients(table, limit=limit, prefer_kinds=prefer_kinds)
    panel = pd.Series(np.arange(len(order)), index=order, dtype="int64")
    chosen = scores[scores["patient_id"].isin(order) & scores["instrument"].isin(list(instruments))]
    chosen = chosen.assign(panel=chosen["patient_id"].map(panel).astype("int64"))
    return chosen.sort_values(["panel", "instrument", "week"], ignore_index=True)


# --------------------------------------------------------------------------- suppression


def suppress_count(n: int | float | None, *, low: int = SUPPRESS_RANGE[0], high: int = SUPPRESS_RANGE[1]) -> int | None:
    """``n`` itself, or ``None`` when it is a count from ``low`` to ``high`` (suppressed)."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return None
    value = int(n)
    return None if low <= value <= high else value


def suppress_counts(counts: pd.DataFrame, *, margins: bool = True, low: int = SUPPRESS_RANGE[0],
                    high: int = SUPPRESS_RANGE[1], total_label: str = "total") -> pd.DataFrame:
    """A count table with its small counts, and counts that would reveal them, suppressed.

    Primary suppression: every cell (and every margin total) from ``low`` to ``high``.
    Secondary suppression: a line (row or column) whose total is part of the display
    satisfies ``Σ cells = total``; if exactly one entry of such a line (a cell or the total) is
    suppressed, it could be worked out by subtraction, so the smallest positive other entry
    of that line is suppressed too (the smallest entry at all when none is positive). This is
    repeated over rows and columns until nothing changes.

    Parameters
    ----------
    counts : DataFrame
        Non-negative whole numbers (e.g. weeks × kinds). Not modified.
    margins : bool
        Add a row and a column of totals labelled ``total_label`` (default True). Without
        margins only primary suppression applies, as nothing can be subtracted.
    low, high : int
        The suppressed range (default 1–10).

    Returns
    -------
    DataFrame
        ``Int64`` counts (with margins when asked) where a suppressed entry is ``<NA>``.

    Examples
    --------
    >>> t = pd.DataFrame({"a": [12, 3], "b": [20, 30]}, index=["w1", "w2"])
    >>> suppress_counts(t).isna().sum().sum()   # 3 primary, then 12, 20 ... to protect it
    4
    """
    if counts.empty:
        return counts.astype("Int64")
    values = counts.to_numpy(dtype="float64")
    if np.isnan(values).any() or (values < 0).any():
        raise ValueError("Counts to suppress must be whole numbers of 0 or more, with no gaps.")
    if margins:
        full = np.zeros((values.shape[0] + 1, values.shape[1] + 1))
        full[:-1, :-1] = values
        full[:-1, -1] = values.sum(axis=1)
        full[-1, :-1] = values.sum(axis=0)
        full[-1, -1] = values.sum()
        index = [*counts.index, total_label]
        columns = [*counts.columns, total_label]
    else:
        full, index, columns = values, list(counts.index), list(counts.columns)
    hidden = (full >= low) & (full <= high)
    if margins:
        for _ in range(full.size):  # each pass hides at least one more entry, or stops
            before = hidden.copy()
            for axis in (1, 0):
                view_h = hidden if axis == 1 else hidden.T
                view_v = full if axis == 1 else full.T
                lonely = view_h.sum(axis=1) == 1
                if not lonely.any():
                    continue
                # smallest positive unsuppressed entry in each lonely line (else the smallest at all)
                score = np.where(view_h, np.inf, np.where(view_v > 0, view_v, np.inf))
                fallback = np.where(view_h, np.inf, view_v)
                pick = np.where(np.isfinite(score).any(axis=1), score.argmin(axis=1), fallback.argmin(axis=1))
                rows = np.flatnonzero(lonely & np.isfinite(fallback).any(axis=1))
                view_h[rows, pick[rows]] = True
            if (hidden == before).all():
                break
    out = pd.DataFrame(full, index=index, columns=columns).round().astype("Int64")
    return out.mask(pd.DataFrame(hidden, index=index, columns=columns))


def format_counts(counts: pd.DataFrame, *, marker: str = SUPPRESSED) -> pd.DataFrame:
    """Counts as display strings, suppressed (``<NA>``) entries as ``marker``; the index as
    strings too (dates and a ``total`` label side by side)."""
    out = counts.astype("string").fillna(marker)
    out.index = pd.Index([str(i) for i in out.index], name=counts.index.name)
    return out


# --------------------------------------------------------------------------- clinic aggregates


def alerts_per_week(alerts: pd.DataFrame, *, kinds: Sequence[str] | None = None) -> pd.DataFrame:
    """Alerts raised per calendar week (weeks starting on Monday) by kind.

    Every flag of an alert kind counts, whatever its status (an alert that was raised stays
    raised); ``improvement`` is not an alert. The calendar week is the Monday on or before
    ``flag_date``; weeks without any alert between the first and the last appear with zeros.

    Returns
    -------
    DataFrame
        Index ``week_start`` (dates), one int64 column per kind (``kinds`` order, or the
        kinds present, alphabetically).
    """
    live = alerts[~alerts["kind"].isin(NOT_ALERTS) & alerts["flag_date"].notna()]
    wanted = list(kinds) if kinds is not None else sorted(live["kind"].dropna().astype(str).unique())
    if live.empty:
        return pd.DataFrame(0, index=pd.Index([], name="week_start"), columns=wanted, dtype="int64")
    day = pd.to_datetime(live["flag_date"])
    monday = (day - pd.to_timedelta(day.dt.day_of_week, unit="D")).dt.normalize()
    table = pd.crosstab(monday.rename("week_start"), live["kind"].astype(str))
    weeks = pd.date_range(table.index.min(), table.index.max(), freq="7D", name="week_start")
    table = table.reindex(index=weeks, columns=wanted, fill_value=0).astype("int64")
    table.index = pd.Index(table.index.date, name="week_start")
    table.columns.name = None
    return table


@dataclass(frozen=True)
class RuptureSummary:
    """Ruptures of a set of patients.

    Attributes
    ----------
    patients : int
        Patients in scope.
    patients_with_rupture : int
        Patients with at least one rupture flag.
    ruptures, repaired, unrepaired, pending : int
        Rupture flags; repaired (``repaired_week`` known); unrepaired (status ``unrepaired``,
        or addressed without a repair); pending (still ``open``: the repair window has not
        closed).
    median_weeks_to_repair : float or None
        Median of ``repaired_week − week`` over repaired ruptures.
    """

    patients: int
    patients_with_rupture: int
    ruptures: int
    repaired: int
    unrepaired: int
    pending: int
    median_weeks_to_repair: float | None

    @property
    def rupture_rate(self) -> float | None:
        """Share of patients with at least one rupture (``None`` without patients)."""
        return self.patients_with_rupture / self.patients if self.patients else None

    @property
    def repair_rate(self) -> float | None:
        """Share of decided ruptures (repaired + unrepaired) that were repaired."""
        decided = self.repaired + self.unrepaired
        return self.repaired / decided if decided else None

    def counts(self) -> pd.DataFrame:
        """The rupture counts as a one-row table (repaired, unrepaired, pending), for
        :func:`suppress_counts` (whose margin adds the total)."""
        return pd.DataFrame({"repaired": [self.repaired], "unrepaired": [self.unrepaired],
                             "pending": [self.pending]}, index=["ruptures"])


def rupture_summary(alerts: pd.DataFrame, *, patients: int) -> RuptureSummary:
    """Rupture rate, repair rate and median weeks to repair (Larsson et al., 2018 report
    10.7% of therapies with unrepaired and 14.7% with repaired ruptures).

    Parameters
    ----------
    alerts : DataFrame
        Flags (``kind``, ``status``, ``week``, ``repaired_week``, ``patient_id``) of the
        patients in scope. Not modified.
    patients : int
        Number of patients in scope (the rate's denominator; patients without any flag count).
    """
    if patients < 0:
        raise ValueError("patients must be 0 or more.")
    rup = alerts[alerts["kind"].eq("rupture").fillna(False).astype(bool)]
    repaired_week = pd.to_numeric(rup["repaired_week"], errors="coerce") if "repaired_week" in rup else \
        pd.Series(np.nan, index=rup.index)
    repaired = repaired_week.notna()
    pending = rup["status"].eq("open").fillna(False).astype(bool) & ~repaired
    unrepaired = ~repaired & ~pending
    weeks_to = (repaired_week - rup["week"])[repaired]
    return RuptureSummary(patients=int(patients), patients_with_rupture=int(rup["patient_id"].nunique()),
                          ruptures=len(rup), repaired=int(repaired.sum()), unrepaired=int(unrepaired.sum()),
                          pending=int(pending.sum()),
                          median_weeks_to_repair=float(weeks_to.median()) if len(weeks_to) else None)


def average_courses(scores: pd.DataFrame, *, instruments: Sequence[str] = ("WAI-SR", "SPIN"),
                    published: PublishedResults = PUBLISHED, min_n: int = 1) -> pd.DataFrame:
    """Mean and spread of each instrument by treatment week, beside the published week means.

    Parameters
    ----------
    scores : DataFrame
        Core column contract. Not modified.
    instruments : sequence of str
        Instruments to summarise.
    published : PublishedResults
        Week means to join (``published_mean``; NaN where the trial had no such week or
        instrument).
    min_n : int
        Weeks with fewer patients are left out (meeting mode uses 11: a mean of 1–10
        patients is not shown to a room).

    Returns
    -------
    DataFrame
        ``instrument, week, n, mean, sd, lo, hi, published_mean`` with ``lo``/``hi`` =
        mean ∓ 1 SD (between patients, ddof 1; NaN for a single patient).
    """
    sel = scores[scores["instrument"].isin(list(instruments))]
    out = (sel.groupby(["instrument", "week"], sort=True)["score"]
           .agg(n="count", mean="mean", sd="std").reset_index())
    out = out[out["n"] >= min_n].reset_index(drop=True)
    out["n"] = out["n"].astype("int64")
    out["lo"] = out["mean"] - out["sd"]
    out["hi"] = out["mean"] + out["sd"]
    pub = published.week_means_frame().rename(columns={"mean": "published_mean"})
    out = out.merge(pub, on=["instrument", "week"], how="left")
    out["week"] = out["week"].astype("int64")
    return out


def on_track_by_week(expected: pd.DataFrame, *, instrument: str = "SPIN", min_n: int = 1) -> pd.DataFrame:
    """Share of patients on track by treatment week, beside the clinic's expected curve.

    ``expected`` is ``core.flags.expected_courses`` of the scope's scores. Per week: ``n`` (patients
    judged by ``not_on_track`` that week), ``on_track`` (how many of them were on track), ``share``,
    and the mean observed and mean expected score of those patients (``observed``, ``expected``).
    Weeks with fewer than ``min_n`` judged patients are left out (meeting mode: 11).
    """
    cols = ["week", "n", "on_track", "share", "observed", "expected"]
    sel = expected[(expected["instrument"] == instrument) & expected["on_track"].notna()] if len(expected) else expected
    if not len(sel):
        return pd.DataFrame(columns=cols)
    out = (sel.assign(on=sel["on_track"].astype(bool).astype("int64"))
           .groupby("week", sort=True).agg(n=("on", "size"), on_track=("on", "sum"), observed=("score", "mean"),
                                            expected=("expected", "mean")).reset_index())
    out = out[out["n"] >= min_n].reset_index(drop=True)
    out["share"] = out["on_track"] / out["n"]
    return out[cols]


def alliance_within_sd(scores: pd.DataFrame, *, alliance: str = "WAI-SR") -> float | None:
    """How far a typical week's alliance lies from the patient's own course, in points.

    The pooled SD of the detrended alliance scores: each patient's own least-squares line
    over their stored weeks is taken out (``core.models.detrend_by_person``; patients with at
    least 3 weeks), and ::

        SD = sqrt( Σ_i Σ_t r̂_it² / (N − 2·P) )      (N scores of P patients; 2 = the line's
                                                     intercept and slope per patient)

    Unlike the SD around each patient's *average*, a steady rise over the weeks does not count
    as week-to-week swing: in a course rising 1 point a week for 11 weeks, the SD around the
    average carries about 3.2 points of trend alone. This is the scale of the detrended
    model's ``alliance_detrended_t`` (points off the patient's own course), so
    ``|b|·SD`` is the symptom change that goes with a typical week. ``None`` when no patient
    has 3 weeks.
    """
    sel = scores.loc[(scores["instrument"] == alliance) & scores["score"].notna(), ["patient_id", "week", "score"]]
    resid = detrend_by_person(sel, "score")
    used = resid.notna()
    n_patients = int(sel.loc[used, "patient_id"].nunique())
    dof = int(used.sum()) - 2 * n_patients
    return float(np.sqrt(float((resid[used] ** 2).sum()) / dof)) if dof > 0 else None


def weekly_trends(scores: pd.DataFrame, *, instruments: Sequence[str] = ("WAI-SR", "SPIN"),
                  min_weeks: int = MIN_DETREND_WEEKS) -> dict[str, float | None]:
    """The average weekly change of each instrument over treatment: the mean, over patients
    with at least ``min_weeks`` stored weeks, of each patient's own least-squares slope ::

        β̂_i = Σ_t (t − t̄_i)(x_it − x̄_i) / Σ_t (t − t̄_i)²      (points per week)

    Used to say whether alliance and symptoms both trend (:data:`TREND_POINTS_PER_WEEK`), the
    case in which the trial's within specification overstates the weekly link. ``None`` for
    an instrument without such patients.
    """
    sel = scores.loc[scores["instrument"].isin(list(instruments)) & scores["score"].notna(),
                     ["patient_id", "instrument", "week", "score"]]
    t = sel["week"].astype("float64")
    x = sel["score"].astype("float64")
    keys = [sel["instrument"], sel["patient_id"]]
    sums = pd.DataFrame({"n": 1.0, "t": t, "x": x, "tt": t * t, "tx": t * x}).groupby(keys, sort=False).sum()
    sxx = sums["tt"] - sums["t"] ** 2 / sums["n"]
    sxy = sums["tx"] - sums["t"] * sums["x"] / sums["n"]
    ok = (sums["n"] >= min_weeks) & (sxx > 1e-12)
    slopes = (sxy[ok] / sxx[ok]).groupby(level=0).mean()
    return {code: (float(slopes[code]) if code in slopes.index else None) for code in instruments}


def both_trend(trends: Mapping[str, float | None], *, alliance: str, symptom: str,
               threshold: float = TREND_POINTS_PER_WEEK) -> bool | None:
    """True when both instruments change by at least ``threshold`` points a week on average
    (:func:`weekly_trends`), False when one does not, ``None`` when a trend is unknown."""
    a, s = trends.get(alliance), trends.get(symptom)
    if a is None or s is None:
        return None
    return abs(a) >= threshold and abs(s) >= threshold


def _p_text(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "p not available"
    return "p < .001" if p < 0.001 else f"p = {p:.3f}".replace("0.", ".", 1)


def _followed_by(b: float, lo: float, hi: float, p: float, symptom: str) -> str:
    direction = "lower" if b < 0 else "higher"
    return (f"a {symptom} score {abs(b):.3f} points {direction} the next week, on average "
            f"(95% CI {lo:.3f} to {hi:.3f}; {_p_text(p)})")


def _rose(x: float) -> str:
    return f"rose by {x:.1f}" if x >= 0 else f"fell by {abs(x):.1f}"


def read_within_estimate(result: AnalysisResult, *, within_sd: float | None = None,
                         trends: Mapping[str, float | None] | None = None,
                         published: PublishedResults = PUBLISHED) -> str:
    """What the within-person alliance estimate means for this clinic, in plain words.

    Reads two estimates (symptom scales here: higher = worse):

    * the trial's specification, ``alliance_within_t`` of the within model: a week in which a
      patient's alliance is 1 point above *their own average* is followed, on average, by a
      symptom score ``b`` points different the next week;
    * the model adjusted for treatment week, ``alliance_detrended_t`` of the detrended model
      (``core.models``, Wang & Maxwell 2015): the same for a week 1 point above the patient's
      own straight-line *course*, with the week in the model.

    When alliance and symptoms both trend (``trends``, from :func:`weekly_trends`; both at
    least :data:`TREND_POINTS_PER_WEEK` points a week) the text says to read the adjusted
    estimate, and reads its size and significance; otherwise the trial's. With ``within_sd``
    (:func:`alliance_within_sd`, the typical distance of a week from the patient's own
    course) it scales the estimate read to a typical week: ``|b|·SD``. A clinic's result is
    said to agree with the published trial only in direction, and only with the caveat that
    the trial used the first specification on scores that rose and fell over the weeks.

    Returns two Markdown paragraphs: the estimates and which to read, then what it means.
    """
    model = result.within
    if not model.converged:
        return ("The within-person model did not converge, so its estimate cannot be read. "
                + (model.message or "Try another pair of instruments or wait for more data."))
    a_code, s_code = result.alliance, result.symptom
    term = model.term("alliance_within_t")
    parts = [f"With the trial's specification (each score against the patient's own average), a week in which "
             f"a patient's {a_code} was 1 point above their own average was followed by "
             f"{_followed_by(term.estimate, term.ci_low, term.ci_high, term.p, s_code)}."]
    chosen, chosen_name = term, "trial's"
    adjusted = result.detrended
    if adjusted is not None and adjusted.converged:
        adj = adjusted.term("alliance_detrended_t")
        parts.append(f"Adjusted for treatment week (each patient's own straight-line {a_code} course taken out, "
                     f"and the week in the model), a week 1 point above the patient's own course was followed by "
                     f"{_followed_by(adj.estimate, adj.ci_low, adj.ci_high, adj.p, s_code)}.")
        sentence, read_adjusted = _which_to_read(trends or {}, a_code, s_code)
        parts.append(sentence)
        if read_adjusted:
            chosen, chosen_name = adj, "adjusted"
    elif adjusted is not None:
        parts.append("The model adjusted for treatment week did not converge, so only the trial's specification "
                     "can be read; if alliance and symptoms both trend over the weeks, it overstates the weekly "
                     "link. " + (adjusted.message or ""))
    reading: list[str] = []  # the second paragraph: what the estimate read means
    if within_sd and math.isfinite(chosen.estimate):
        reading.append(f"A typical week's {a_code} here lies {within_sd:.1f} points off the patient's own course "
                     f"(their straight-line trend taken out); with the {chosen_name} estimate that goes with about "
                     f"{abs(chosen.estimate) * within_sd:.1f} {s_code} points the next week.")
    reading.append(_meaning(chosen, own="average" if chosen is term else "course"))
    if a_code == published.alliance and s_code == published.symptom:
        reading.append(_beside_the_trial(chosen, published))
    return " ".join(x for x in parts if x) + "\n\n" + " ".join(x for x in reading if x)


def _which_to_read(trends: Mapping[str, float | None], alliance: str, symptom: str) -> tuple[str, bool]:
    """The sentence on which estimate to read, and whether it is the adjusted one."""
    a_slope, s_slope = trends.get(alliance), trends.get(symptom)
    if a_slope is None or s_slope is None:
        return ("When alliance and symptoms both trend over the weeks, the first estimate also counts that shared "
                "trend as a week-to-week link, so read the adjusted one.", True)
    if both_trend({alliance: a_slope, symptom: s_slope}, alliance=alliance, symptom=symptom):
        return (f"Here {alliance} {_rose(a_slope)} and {symptom} {_rose(s_slope)} points a week (the average of "
                "each patient's own straight line). When both trend like this, the first estimate also counts the "
                "shared trend as a week-to-week link, so read the adjusted one.", True)
    return (f"Here {alliance} and {symptom} hardly trend together ({alliance} {a_slope:+.1f}, {symptom} "
            f"{s_slope:+.1f} points a week on average), so the two estimates should be close and the first can "
            "be read.", False)


def _significant_negative(t: TermEstimate) -> bool:
    return math.isfinite(t.p) and t.p < 0.05 and t.estimate < 0


def _meaning(t: TermEstimate, *, own: str) -> str:
    """What the estimate read means for practice (``own``: "average" or "course")."""
    if _significant_negative(t):
        return (f"Weeks in which a patient's alliance was above their own {own} were followed by fewer symptoms: "
                "worth repairing ruptures even when a patient's overall alliance is high.")
    if math.isfinite(t.p) and t.p < 0.05:
        return ("Better alliance weeks were followed by *more* symptoms here, unlike the published trial; look at "
                "how the data were collected before drawing conclusions.")
    return ("The interval includes 0, so these data cannot tell this effect from chance; more patients or weeks "
            "would narrow it.")


def _beside_the_trial(t: TermEstimate, published: PublishedResults) -> str:
    """The published within estimate, with the caveat that it comes from the first specification."""
    pub = published.models.get("within", {}).get("alliance_within_t")
    if pub is None:
        return ""
    a_means, s_means = published.week_means.get(published.alliance), published.week_means.get(published.symptom)
    trend = (f" ({published.alliance} week means {min(a_means):.0f} to {max(a_means):.0f}, {published.symptom} "
             f"{max(s_means):.0f} to {min(s_means):.0f})") if a_means and s_means else ""
    agree = "This agrees in direction with" if _significant_negative(t) and pub.estimate < 0 else "Compare with"
    return (f"{agree} the published trial ({published.n_patients} patients: {pub.estimate:.3f}, SE {pub.se:.3f}), "
            f"with a caveat: the trial used the first specification only, on scores that rose and fell over the "
            f"weeks{trend}, so part of its size may be that shared trend.")


# --------------------------------------------------------------------------- pseudonyms


def _labels(prefix: str, n: int, letters: bool) -> list[str]:
    if letters and n <= 26:
        return [f"{prefix} {chr(ord('A') + i)}" for i in range(n)]
    return [f"{prefix} {i + 1}" for i in range(n)]


def pseudonymise(frame: pd.DataFrame, *, columns: Mapping[str, str] | None = None, salt: str = "") -> pd.DataFrame:
    """A copy of ``frame`` whose identifying columns hold meeting pseudonyms.

    Each distinct value of a column becomes "<prefix> A", "<prefix> B", … (numbers beyond
    26) in the order of ``sha256(salt + value)``, so the labels follow neither the codes nor
    the table's order; pass a fresh random ``salt`` per meeting. Missing values stay missing.

    Parameters
    ----------
    columns : mapping column → prefix
        Default ``{"patient_id": "Patient", "therapist_id": "Therapist", "therapist_name":
        "Therapist", "note_by": "Therapist"}`` (the two therapist columns share one label).
    """
    columns = dict(columns or {"patient_id": "Patient", "therapist_id": "Therapist",
                               "therapist_name": "Therapist", "note_by": "Therapist"})
    out = frame.copy()
    therapist_cols = [c for c in ("therapist_id", "therapist_name") if c in out.columns and c in columns]
    if len(therapist_cols) == 2:  # one label per therapist, whichever column shows it
        out["therapist_name"] = out["therapist_id"]
    by_prefix: dict[str, list[str]] = {}
    for col, prefix in columns.items():
        if col in out.columns:
            by_prefix.setdefault(prefix, []).append(col)
    for prefix, cols in by_prefix.items():  # one label per person across all their columns
        values = pd.unique(pd.concat([out[c].dropna().astype(str) for c in cols], ignore_index=True))
        ranked = sorted(values, key=lambda v: hashlib.sha256((salt + v).encode("utf-8")).hexdigest())
        mapping = dict(zip(ranked, _labels(prefix, len(ranked), letters=prefix != "Patient"), strict=True))
        for col in cols:
            out[col] = out[col].astype("string").map(mapping).astype("string")
    return out


# --------------------------------------------------------------------------- display


def _fmt3(x: float) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.3f}"


def _fmt_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return ""
    return "<.001" if p < 0.001 else f"{p:.3f}"


def models_table(forest: pd.DataFrame) -> pd.DataFrame:
    """The models table of the clinic page: three decimals, clinic beside published.

    ``forest`` is ``core.clinic_figures.forest_rows``. Returns strings: ``Model, Term,
    Estimate, SE, 95% CI, p, Published B, Published SE, Published p, Note`` (p below .001 as
    ``<.001``; published p as printed in the paper; ``Note`` says what a term is when it is not
    what it looks like, e.g. the within model's person-mean alliance, ~0 by construction).
    """
    ci = [f"{_fmt3(lo)} to {_fmt3(hi)}" if _fmt3(lo) else "" for lo, hi in
          zip(forest["ci_low"], forest["ci_high"], strict=True)]
    return pd.DataFrame({
        "Model": forest["model"].astype(str), "Term": forest["term"].astype(str),
        "Estimate": forest["estimate"].map(_fmt3), "SE": forest["se"].map(_fmt3), "95% CI": ci,
        "p": forest["p"].map(_fmt_p),
        "Published B": forest["published_estimate"].map(lambda v: _fmt3(float(v)) if pd.notna(v) else ""),
        "Published SE": forest["published_se"].map(lambda v: _fmt3(float(v)) if pd.notna(v) else ""),
        "Published p": forest["published_p"].fillna("").astype(str),
        "Note": forest["note"].fillna("").astype(str) if "note" in forest else "",
    })


#: What a rate, median or count based on too few shows in meeting mode.
TOO_FEW = "n ≤ 10"


def rate_display(num: int, den: int, *, num_hidden: bool, meeting: bool, high: int = SUPPRESS_RANGE[1]) -> str:
    """A rate ``num / den`` as a display string (e.g. "50%").

    In meeting mode a rate is shown only when its denominator is above ``high``
    (:data:`TOO_FEW` otherwise); when the numerator itself is suppressed (``num_hidden``) the
    rate is the bound a suppressed count allows, ``≤ ⌈100·high/den⌉%``, so that the room reads a
    percentage and cannot work the count out. "–" for a denominator of 0.
    """
    if den == 0:
        return "–"
    if meeting and den <= high:
        return TOO_FEW
    if meeting and num_hidden:
        return f"≤{math.ceil(100 * high / den)}%"
    return f"{100 * num / den:.0f}%"


def summary_display(summary: RuptureSummary, *, meeting: bool) -> dict[str, str]:
    """The rupture figures of the clinic page as display strings, suppressed in meeting mode.

    Keys: ``patients``, ``patients_with_rupture``, ``rupture_rate``, ``ruptures``,
    ``repaired``, ``unrepaired``, ``pending``, ``repair_rate``, ``median_weeks_to_repair``.
    In meeting mode the two count lines (patients with / without a rupture = patients;
    repaired + unrepaired + pending = ruptures) go through :func:`suppress_counts`; the rates
    follow :func:`rate_display` (shown when the denominator is above 10); the median weeks to
    repair is shown when more than 10 ruptures were repaired.
    """
    people = pd.DataFrame({"with": [summary.patients_with_rupture],
                           "without": [summary.patients - summary.patients_with_rupture]})
    flags = summary.counts()
    if meeting:
        people_s, flags_s = suppress_counts(people), suppress_counts(flags)
    else:
        people_s, flags_s = suppress_counts(people, low=1, high=0), suppress_counts(flags, low=1, high=0)

    def get(table: pd.DataFrame, row: int, col: str) -> int | None:
        v = table.iloc[row][col]
        return None if pd.isna(v) else int(v)

    n_pat, n_with = get(people_s, -1, "total"), get(people_s, 0, "with")
    rep, unrep, pend, total = (get(flags_s, 0, c) for c in ("repaired", "unrepaired", "pending", "total"))
    decided = summary.repaired + summary.unrepaired
    median = summary.median_weeks_to_repair
    show = lambda v: SUPPRESSED if v is None else str(v)  # noqa: E731
    few_repaired = meeting and summary.repaired <= SUPPRESS_RANGE[1]
    return {
        "patients": show(n_pat), "patients_with_rupture": show(n_with),
        "rupture_rate": rate_display(summary.patients_with_rupture, summary.patients, num_hidden=n_with is None,
                                     meeting=meeting),
        "ruptures": show(total), "repaired": show(rep), "unrepaired": show(unrep), "pending": show(pend),
        "repair_rate": rate_display(summary.repaired, decided, num_hidden=rep is None, meeting=meeting),
        "median_weeks_to_repair": TOO_FEW if few_repaired else ("–" if median is None else f"{median:g}"),
    }


def meeting_therapist_table(by_therapist: pd.DataFrame, *, salt: str) -> pd.DataFrame:
    """The per-therapist counts for a room: pseudonymised, ordered by pseudonym, suppressed.

    ``by_therapist`` as :func:`therapist_counts` gives it. Every count from **0** to 10 is
    suppressed (a zero in a pseudonymised row tells the room who the therapist is), and so is,
    by :func:`suppress_counts`, every count that the shown column totals would give away. Rows
    are "Therapist A", "Therapist B", … in that order (not the named order, nor by size), then
    the ``total`` row. Returns display strings (:func:`format_counts`), ``therapist_id`` first.
    """
    named = pseudonymise(by_therapist, salt=salt).drop(columns="therapist_name", errors="ignore")
    counted = named.set_index("therapist_id")
    counted = counted.loc[sorted(counted.index, key=_pseudonym_key)]
    hidden = suppress_counts(counted, low=0, high=SUPPRESS_RANGE[1])
    # the column totals are shown; the row sums (across unlike counts) only steer the suppression
    return format_counts(hidden.drop(columns="total")).reset_index(names="therapist_id")


def _pseudonym_key(label: str) -> tuple[int, str]:
    """"Therapist B" before "Therapist AA" (shorter labels first, then alphabetically)."""
    tail = str(label).rsplit(" ", 1)[-1]
    return (len(tail), tail)


def meeting_alerts(per_week: pd.DataFrame, *, meeting: bool,
                   periods: Sequence[int] = (1, 2, 4, 13)) -> tuple[pd.DataFrame, int]:
    """The alerts-per-week table as the clinic page shows it, and the weeks per bar.

    Outside meeting mode: ``per_week`` itself (1 week per bar, margins added, nothing hidden).
    In meeting mode the counts are suppressed (:func:`suppress_counts`); for a small team nearly
    every weekly count of a kind is from 1 to 10, and the chart would be empty. So the table is
    pooled, coarser step by coarser step, until at least half of all alerts can be shown: by kind
    over each period of ``periods`` (weeks), then every kind together (one column ``all alerts``)
    over each period; if none reaches half, the step that shows the most. Returns (the suppressed
    table with its ``total`` margins, the period in weeks); the index is each period's first Monday.
    """
    if not periods:
        raise ValueError("periods must name at least one period in weeks (e.g. (1, 2, 4)).")
    if not meeting:
        return suppress_counts(per_week, low=1, high=0), 1
    if per_week.empty:
        return suppress_counts(per_week), 1
    total = float(per_week.to_numpy().sum())
    steps = [(w, False) for w in periods] + [(w, True) for w in periods]
    best: tuple[float, pd.DataFrame, int] | None = None
    for weeks, together in steps:
        pooled = per_week.groupby(np.arange(len(per_week)) // weeks).sum()
        pooled.index = pd.Index(per_week.index[::weeks], name="week_start")
        if together:
            pooled = pooled.sum(axis=1).to_frame("all alerts")
        shown = suppress_counts(pooled)
        visible = float(shown.drop(index="total", columns="total").fillna(0).to_numpy().sum())
        if best is None or visible > best[0]:
            best = (visible, shown, weeks)
        if total == 0 or visible >= total / 2:
            return shown, weeks
    return best[1], best[2]  # type: ignore[index]  # steps is not empty (checked above)
