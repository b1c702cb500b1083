"""The flags engine: every alert the monitor raises, one row per patient, week, instrument, kind.

``compute_flags`` applies the rules of :mod:`core.ruptures` (alliance) and
:mod:`core.symptoms` (symptoms) to a scores frame (the column contract of :mod:`core`) and
returns the ``flags`` columns of CONTRACT.md followed by explanation columns.

The guarantee
-------------
A flag for week t is computed from weeks <= t only: adding week t+1 never adds, removes or
changes a flag row for week <= t. Only ``status``, ``confirmed``, ``repaired_week`` and
``symptom_change_next_week`` move on as later weeks arrive (``tests/core/test_flags_guarantee.py``
checks this with hypothesis).

One caveat by design, and the setting that removes it. With ``FlagConfig.rc_params = None``
(the default, kept for simulations and research) the reliable change of an instrument without
an SD in its definition (SPIN) uses the SD of the week-1 scores *in the frame*: it changes when
a new patient's first week arrives and depends on which patients are in the frame (later weeks
of existing patients never move it, so ``as_of_week`` answers are unaffected). A clinic sets
``rc_params`` to its frozen SD and r per instrument (CLINICAL.md "Reliable change"); then no SD
is ever taken from the frame, and a patient's flags are the same whoever views them and
whoever else is stored (``tests/core/test_flags_rc_params.py`` checks this).

The pipeline
------------
``compute_flags`` = ``_prepare`` (check, cut at ``as_of_week``, sort into series) ->
``_series_arrays`` (the per-row arrays every rule reads) -> one step per kind
(``_rupture_flags``, ``_low_alliance_flags``, ``_symptom_change_flags``, ``_caseness_flags``,
``_risk_parts``, ``_missed_part``) -> ``_assemble`` (symptom context, sort, dtypes).

Kinds, rules and severities
---------------------------
=============  =====================================  ==========================================
kind           rule(s) (``rule`` column)              severity
=============  =====================================  ==========================================
rupture        ``reliable_drop``, ``below_own_level`` high when both fired, else medium
low_alliance   ``low_alliance``                       medium
deterioration  ``deterioration``                      high
caseness       ``caseness``                           medium
improvement    ``improvement``                        low
risk_item      ``risk_item``                          urgent
missed         ``missed``                             low
=============  =====================================  ==========================================

``sudden_loss`` only fills ``confirmed`` of a rupture and ``repair`` only fills its
``status``/``repaired_week``; neither raises a flag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any, cast

import numpy as np
import pandas as pd

from core import instruments as reg
from core.centering import WeekLookup, _group_exclusive_cumsum, baseline_sds, check_scores, running_arrays, series_order
from core.ruptures import (
    BelowExpectedRule,
    BelowOwnLevelRule,
    LowAllianceRule,
    ReliableDropRule,
    RepairRule,
    SuddenLossRule,
    below_expected_criteria,
    below_own_level_criteria,
    check_rules,
    reliable_drop_criteria,
    repair_status,
    sudden_loss_at,
)
from core.symptoms import (
    CasenessRule,
    MissedRule,
    NotOnTrackRule,
    ReliableChangeRule,
    RiskItemRule,
    check_symptom_rules,
    missed_runs,
    reliable_change_criteria,
)

__all__ = [
    "BelowExpectedRule", "BelowOwnLevelRule", "RULE_CLASSES", "apply_settings", "expected_courses",
    "reliable_change_of", "CasenessRule", "DEFAULT_CONFIG",
    "FLAG_COLUMNS", "CONTRACT_COLUMNS",
    "FlagConfig", "LowAllianceRule", "MissedRule", "RULES", "ReliableChangeRule", "ReliableDropRule",
    "RULES_0_3", "RULES_REVISION", "RepairRule", "RiskItemRule", "SEVERITIES", "SuddenLossRule", "compute_flags",
    "empty_flags",
]

#: The revision of the rules' code. Bump it (and say why in CHANGELOG.md) whenever a release changes
#: what a rule raises for the same scores and parameters: stored flags computed under another
#: revision are recomputed once at the next start (``db.flagstore.ensure_current``).
#: 1: the first stored flags. 2: PHQ-9 item 9 implied by totals of 25 or more (issue 13).
#: 3: repaired also needs half of the fall won back (RepairRule.min_recovered, CLINICAL.md "Repair").
#: 4: ruptures by ``below_expected`` (expected course, shrunk own SD, two weeks running; issue 12)
#: and the ``not_on_track`` kind (issue 16).
RULES_REVISION = 4
#: Weight (in weeks of a patient's own data) of the clinic's typical within-person SD until a
#: clinic freezes its own estimate (a project choice, docs/calibration.md).
DEFAULT_PRIOR_WEEKS = 4.0

#: Machine names of every rule; each has a section in docs/flags.md.
RULES = ("below_expected", "below_expected_two_weeks", "below_expected_subscale", "reliable_drop", "below_own_level",
         "rupture_episodes", "sudden_loss", "repair", "low_alliance", "deterioration", "not_on_track", "improvement",
         "caseness", "risk_item", "missed")
#: Kinds of flag.
KINDS = ("rupture", "low_alliance", "deterioration", "not_on_track", "improvement", "caseness", "risk_item", "missed")
#: Severities, most urgent first.
SEVERITIES = ("urgent", "high", "medium", "low")
#: The ``flags`` output columns of CONTRACT.md, in order.
CONTRACT_COLUMNS = ("patient_id", "therapist_id", "week", "instrument", "kind", "rule", "severity",
                    "score", "baseline", "drop", "status")
#: All columns of :func:`compute_flags`, in order, with their dtypes.
FLAG_COLUMNS = {
    "patient_id": "string", "therapist_id": "string", "week": "int64", "instrument": "string",
    "kind": "string", "rule": "string", "severity": "string", "score": "float64",
    "baseline": "float64", "drop": "float64", "status": "string", "drop_sd": "float64",
    "subscale": "string", "subscale_drop": "float64", "symptom_instrument": "string",
    "symptom_change_next_week": "float64", "confirmed": "boolean", "repaired_week": "Int64",
    "explanation": "string",
}
#: Columns that may change for an existing flag as later weeks arrive.
MOVING_COLUMNS = ("status", "confirmed", "repaired_week", "symptom_change_next_week")

_LABELS = {"WAI-SR": "Therapist alliance", "WAI-P": "Alliance with the program"}
_SORT = ["patient_id", "week", "instrument", "kind"]


@dataclass(frozen=True)
class FlagConfig:
    """Every rule's settings; a rule set to ``None`` is off.

    The defaults (``DEFAULT_CONFIG``) were chosen on the simulation in
    :mod:`core.simulation`; docs/calibration.md gives the figures and the command.

    Parameters
    ----------
    below_expected : BelowExpectedRule or None
        The default rupture rule: below the course expected for this patient, on the patient's
        own (shrunk) scale, in one week or two weeks running.
    reliable_drop, below_own_level : rule or None
        The rupture rules of releases 0.1-0.3 (off by default; docs/calibration.md compares them).
    rupture_requires : {"any", "all"}
        A rupture is raised when any (default) or all of the switched-on rupture rules fire.
    sudden_loss : SuddenLossRule or None
        Confirmation of a rupture (``confirmed`` column).
    repair : RepairRule
        Repair window and tolerance (``status``/``repaired_week`` of a rupture).
    low_alliance, deterioration, improvement, caseness, risk_item, missed : rule or None
        The other kinds.
    rupture_episodes : bool
        ``True`` (default): a rupture that goes on over consecutive stored weeks (each week
        again below the patient's own level) is one flag, raised at its first week; the
        weeks after it are the same episode, whose status (repaired / unrepaired) says how
        it went. ``False``: every such week is flagged.
    symptom_preference : tuple of str
        Order in which a patient's symptom instrument is chosen for ``symptom_instrument``
        (the first one the patient has a score for by the flag's week; other symptom
        instruments follow in alphabetical order).
    rc_params : tuple of (str, float or None, float or None), or None
        The clinic's frozen reliable-change parameters (CLINICAL.md "Reliable change"): one
        ``(instrument code, sd, r)`` triple per instrument, ``None`` in ``sd`` or ``r`` = the
        instrument registry's value (``Instrument.sd``, ``Instrument.reliability``). An
        explicit ``reliable_change`` in a definition still wins (PHQ-9, GAD-7). When set, no
        SD is ever taken from the scores being flagged: an instrument with an SD neither here
        nor in its definition has no reliable change (its RC criteria answer ``<NA>``).
        ``None`` (default): an instrument without an SD uses the SD of the frame's week-1
        scores (simulations, research). Example: ``(("SPIN", 11.0, None),)``.
    alliance_course : tuple of (str, tuple of float, float, float), or None
        The clinic's frozen parameters of ``below_expected``: one ``(instrument code, week
        means, typical within-person SD, prior weeks)`` per alliance instrument, and per subscale
        (code ``"WAI-SR:bond"``) for the subscale test. The week means
        (weeks 1, 2, ...; flat after the last) give the expected course, the SD and its weight
        the shrinkage. ``None`` or an instrument left out: the literature default of
        :func:`alliance_course_default` (the instrument's ``week_means``, its standard error of
        measurement ``SD * sqrt(1 - r)``, ``DEFAULT_PRIOR_WEEKS``).
    symptom_course : tuple of (str, str, float x 5), or None
        The clinic's frozen expected symptom courses of ``not_on_track``: ``(instrument code,
        time ("log" or "linear"), slope, intake_slope, intake_mean, slope_sd, resid_sd)``
        (``core.course.SymptomCourse``). An instrument left out: the literature default
        (``core.course.literature_symptom_course``: SPIN from the week means of Shalom et al.,
        2025), or no expected course (the kind is off for that instrument).
    """

    below_expected: BelowExpectedRule | None = field(default_factory=BelowExpectedRule)
    reliable_drop: ReliableDropRule | None = None
    below_own_level: BelowOwnLevelRule | None = None
    rupture_requires: str = "any"
    sudden_loss: SuddenLossRule | None = field(default_factory=SuddenLossRule)
    repair: RepairRule = field(default_factory=RepairRule)
    low_alliance: LowAllianceRule | None = field(default_factory=LowAllianceRule)
    deterioration: ReliableChangeRule | None = field(default_factory=ReliableChangeRule)
    improvement: ReliableChangeRule | None = field(default_factory=ReliableChangeRule)
    caseness: CasenessRule | None = field(default_factory=CasenessRule)
    risk_item: RiskItemRule | None = field(default_factory=RiskItemRule)
    missed: MissedRule | None = field(default_factory=MissedRule)
    not_on_track: NotOnTrackRule | None = field(default_factory=NotOnTrackRule)
    rupture_episodes: bool = True
    symptom_preference: tuple[str, ...] = ("SPIN", "PHQ-9", "GAD-7")
    rc_params: tuple[tuple[str, float | None, float | None], ...] | None = None
    alliance_course: tuple[tuple[str, tuple[float, ...], float, float], ...] | None = None
    symptom_course: tuple[tuple[str, str, float, float, float, float, float], ...] | None = None

    def check(self) -> None:
        """Raise ``ValueError`` when a setting cannot work."""
        if self.rupture_requires not in ("any", "all"):
            raise ValueError(f"rupture_requires must be 'any' or 'all'; got {self.rupture_requires!r}.")
        if self.repair is None:
            raise ValueError("The repair rule cannot be off; set RepairRule(weeks=...) instead.")
        check_rules(reliable_drop=self.reliable_drop, below_own_level=self.below_own_level,
                    sudden_loss=self.sudden_loss, low_alliance=self.low_alliance, repair=self.repair,
                    below_expected=self.below_expected)
        check_symptom_rules(deterioration=self.deterioration, improvement=self.improvement,
                            caseness=self.caseness, risk_item=self.risk_item, missed=self.missed,
                            not_on_track=self.not_on_track)
        _check_rc_params(self.rc_params)
        _check_alliance_course(self.alliance_course)

    def describe(self) -> dict:
        """The settings as a plain dict (for reports and the docs page)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = None if v is None else ({g.name: getattr(v, g.name) for g in fields(v)}
                                                  if hasattr(v, "__dataclass_fields__") else v)
        if self.rc_params is not None:
            out["rc_params"] = {code: {"sd": sd, "r": r} for code, sd, r in self.rc_params}
        if self.alliance_course is not None:
            out["alliance_course"] = {code: {"week_means": list(m), "within_sd": sd, "prior_weeks": d0}
                                      for code, m, sd, d0 in self.alliance_course}
        return out


def alliance_course_default(inst: reg.Instrument) -> tuple[tuple[float, ...], float, float]:
    """Literature default of an alliance instrument's ``below_expected`` parameters.

    ``(week means, typical within-person SD, prior weeks)``: the definition's ``week_means``
    (none: a flat course), its standard error of measurement ``SD * sqrt(1 - r)`` (2.45 for
    WAI-SR with SD 10 and r .94; 3.0 when the definition has no SD or r) and
    ``DEFAULT_PRIOR_WEEKS``.
    """
    if inst.sd is not None and inst.reliability is not None:
        s0 = float(inst.sd) * math.sqrt(1.0 - float(inst.reliability))
    else:
        s0 = 3.0
    return tuple(float(m) for m in inst.week_means), s0, DEFAULT_PRIOR_WEEKS


def subscale_course_default(inst: reg.Instrument, name: str,
                            total: tuple[tuple[float, ...], float, float]) -> tuple[tuple[float, ...], float, float]:
    """Default ``below_expected`` parameters of one subscale from its instrument's (``total``): the
    week means times the subscale's share of the items, the SD times the square root of that share
    (item noise taken as independent, a project choice), the same prior weeks."""
    share = len(inst.subscales[name]) / inst.n_items
    means, s0, d0 = total
    return tuple(m * share for m in means), s0 * math.sqrt(share), d0


def _check_alliance_course(course) -> None:
    """Raise ``ValueError`` unless ``course`` is ``None`` or valid (code, means, sd, weeks) entries."""
    if course is None:
        return
    how = "give alliance_course as a tuple of (instrument code, week means, within-person SD, prior weeks)"
    if not isinstance(course, tuple):
        raise ValueError(f"alliance_course is a {type(course).__name__}, not a tuple; {how}.")
    known = reg.registry()
    for entry in course:
        if not (isinstance(entry, tuple) and len(entry) == 4 and isinstance(entry[0], str)):
            raise ValueError(f"alliance_course entry {entry!r} is not a 4-tuple; {how}.")
        code, means, sd, d0 = entry
        inst_code, _, sub = code.partition(":")
        if inst_code not in known:
            raise ValueError(f"alliance_course names instrument {inst_code!r}, which has no definition; known "
                             f"instruments are {', '.join(sorted(known))}.")
        if sub and sub not in known[inst_code].subscales:
            raise ValueError(f"alliance_course names subscale {sub!r} of {inst_code}, which has none of that name; "
                             f"its subscales are {', '.join(sorted(known[inst_code].subscales)) or 'none'}.")
        if not all(_is_number(m) and math.isfinite(m) for m in means):
            raise ValueError(f"alliance_course gives {code} week means that are not all numbers; {how}.")
        if not (_is_number(sd) and math.isfinite(sd) and sd > 0):
            raise ValueError(f"alliance_course gives {code} the within-person SD {sd!r}; it must be above 0.")
        if not (_is_number(d0) and math.isfinite(d0) and d0 >= 0):
            raise ValueError(f"alliance_course gives {code} {d0!r} prior weeks; it must be 0 or more.")


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _check_rc_params(rc_params) -> None:
    """Raise ``ValueError`` unless ``rc_params`` is ``None`` or a tuple of valid (code, sd, r) triples."""
    if rc_params is None:
        return
    how = ("give rc_params as a tuple of (instrument code, SD, r) triples, None meaning the registry's value, "
           "e.g. ((\"SPIN\", 11.0, None),)")
    if not isinstance(rc_params, tuple):
        raise ValueError(f"rc_params is a {type(rc_params).__name__}, not a tuple; {how}.")
    known = reg.registry()
    seen: set[str] = set()
    for entry in rc_params:
        if not (isinstance(entry, tuple) and len(entry) == 3 and isinstance(entry[0], str)):
            raise ValueError(f"rc_params entry {entry!r} is not an (instrument code, SD, r) triple; {how}.")
        code, sd, r = entry
        if code not in known:
            raise ValueError(f"rc_params names instrument {code!r}, which has no definition; known instruments "
                             f"are {', '.join(sorted(known))}. Fix the code or add a definition.")
        if code in seen:
            raise ValueError(f"rc_params gives instrument {code} twice; give one triple per instrument.")
        seen.add(code)
        if sd is not None and not (_is_number(sd) and math.isfinite(sd) and sd > 0):
            raise ValueError(f"rc_params gives {code} the SD {sd!r}; an SD must be a number above 0 (e.g. the "
                             f"SD of the clinic's first-week scores, measured once), or None for the registry's.")
        if r is not None and not (_is_number(r) and 0 <= r < 1):
            raise ValueError(f"rc_params gives {code} the reliability {r!r}; r must be from 0 up to (not "
                             f"including) 1, or None for the registry's.")


DEFAULT_CONFIG = FlagConfig()
#: The rules a clinic can set, by name: the FlagConfig field and its settings class (``None``:
#: a plain value such as ``rupture_requires``). ``apply_settings`` turns stored overrides into a config.
RULE_CLASSES: dict[str, type | None] = {
    "below_expected": BelowExpectedRule, "reliable_drop": ReliableDropRule, "below_own_level": BelowOwnLevelRule,
    "sudden_loss": SuddenLossRule, "repair": RepairRule, "low_alliance": LowAllianceRule,
    "deterioration": ReliableChangeRule, "improvement": ReliableChangeRule, "caseness": CasenessRule,
    "risk_item": RiskItemRule, "missed": MissedRule, "not_on_track": NotOnTrackRule, "rupture_requires": None,
    "rupture_episodes": None,
}

#: A clinic's stored rule settings, as :func:`apply_settings` reads them.
RuleSettings = dict[str, dict | str | bool | None]


def apply_settings(base: FlagConfig, settings: RuleSettings) -> FlagConfig:
    """``base`` with a clinic's stored rule settings: ``{rule: {param: value}}`` changes parameters of a
    rule (switching it on with its defaults if it was off), ``{rule: None}`` switches it off, and
    ``{"rupture_requires": "all"}`` sets a plain value. Raises ``ValueError`` naming what is wrong."""
    changes: dict[str, Any] = {}
    for name, value in settings.items():
        if name not in RULE_CLASSES:
            raise ValueError(f"There is no rule {name!r}; the rules are {', '.join(sorted(RULE_CLASSES))}.")
        cls = RULE_CLASSES[name]
        if cls is None:
            changes[name] = value
            continue
        if value is None:
            changes[name] = None
            continue
        if not isinstance(value, dict):
            raise ValueError(f"The setting of {name} must be its parameters or off; got {value!r}.")
        known = {f.name for f in fields(cls)}
        bad = sorted(set(value) - known)
        if bad:
            raise ValueError(f"The rule {name} has no parameter {', '.join(bad)}; its parameters are "
                             f"{', '.join(sorted(known))}.")
        current = getattr(base, name) or cls()
        changes[name] = replace(current, **value)
    cfg = replace(base, **changes)
    cfg.check()
    return cfg


#: The rupture rules of releases 0.1-0.3 (reliable_drop OR below_own_level), kept as a named option
#: for clinics that want the old behaviour and for the comparison in docs/calibration.md.
RULES_0_3 = FlagConfig(below_expected=None, reliable_drop=ReliableDropRule(), below_own_level=BelowOwnLevelRule(),
                       sudden_loss=SuddenLossRule(scale_floor=None))


def empty_flags() -> pd.DataFrame:
    """An empty flags frame with every column and dtype."""
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in FLAG_COLUMNS.items()})


# --------------------------------------------------------------------------- formatting
def _fmt(values: np.ndarray) -> pd.Series:
    """Numbers for sentences: at most one decimal, no trailing ``.0``; ``?`` where missing.

    ``f"{v:g}"`` once per distinct value (by its bits, so that -0.0 stays "-0"), not per row: a
    clinic's explanations hold a few hundred distinct numbers in 50,000 flags."""
    v = np.ascontiguousarray(np.round(np.asarray(values, dtype="float64"), 1)).reshape(-1)
    bits, at = np.unique(v.view(np.int64), return_inverse=True)
    text = np.array(["?" if d != d else f"{d:g}" for d in bits.view(np.float64).tolist()] + ["?"], dtype=object)
    return pd.Series(text[at.reshape(-1)] if len(v) else text[:0], dtype="string")


def _str(n: int, value: str) -> pd.Series:
    return pd.Series([value] * n, dtype="string")


# --------------------------------------------------------------------------- preparation
def _now_per_patient(pids: pd.Index, last_week: np.ndarray, *, as_of_week, current_week) -> np.ndarray:
    """The week each patient's treatment is at now (indexed like ``pids``)."""
    if current_week is None:
        now = np.full(len(pids), as_of_week, dtype="int64") if as_of_week is not None else last_week.copy()
    elif isinstance(current_week, pd.Series):
        cw = pd.to_numeric(current_week, errors="coerce")
        cw.index = cw.index.astype("string")
        got = cw.reindex(pids).to_numpy(dtype="float64", na_value=np.nan)
        fallback = np.full(len(pids), as_of_week, dtype="float64") if as_of_week is not None else last_week
        now = np.where(np.isnan(got), fallback, got).astype("int64")
    else:
        if isinstance(current_week, bool) or not isinstance(current_week, (int, np.integer)) or current_week < 1:
            raise ValueError(f"current_week must be a treatment week (a whole number >= 1), a Series of them "
                             f"indexed by patient_id, or None; got {current_week!r}.")
        now = np.full(len(pids), int(current_week), dtype="int64")
    if as_of_week is not None:
        now = np.minimum(now, as_of_week)
    return now


def _instrument_table(codes: pd.Index, frame_w1: pd.DataFrame, config: FlagConfig) -> pd.DataFrame:
    """Per-instrument settings used by the rules (one row per instrument code present).

    ``frame_w1`` (the frame's week-1 rows) is read only when ``config.rc_params`` is ``None``,
    for the SD of an instrument whose definition has none (see :func:`_rc_cutoff`).
    """
    frozen = None if config.rc_params is None else {code: (sd, r) for code, sd, r in config.rc_params}
    courses = {code: (m, sd, d0) for code, m, sd, d0 in (config.alliance_course or ())}
    sds = baseline_sds(frame_w1) if frozen is None and len(frame_w1) else pd.Series(dtype="float64")
    rows = []
    for code in codes:
        inst = reg.get(str(code))
        rc = _rc_cutoff(inst, frozen, sds.get(code, np.nan))
        low = config.low_alliance.cutoff if config.low_alliance and config.low_alliance.cutoff is not None \
            else inst.low_cutoff
        case = config.caseness.cutoff if config.caseness and config.caseness.cutoff is not None else inst.caseness
        floor = inst.total_min
        if config.sudden_loss is not None and config.sudden_loss.scale_floor is not None:
            floor = config.sudden_loss.scale_floor
        total = courses.get(inst.code) or alliance_course_default(inst)
        means, s0, d0 = total
        course = np.asarray(means, dtype="float64") - means[0] if len(means) else np.zeros(1)
        subs = {}
        for name, numbers in sorted(inst.subscales.items()) if inst.kind == "alliance" else ():
            m_s, s_s, d_s = courses.get(f"{inst.code}:{name}") or subscale_course_default(inst, name, total)
            c_s = np.asarray(m_s, dtype="float64") - m_s[0] if len(m_s) else np.zeros(1)
            subs[name] = (c_s, float(s_s), float(d_s), float(len(numbers) * inst.item_max))
        rows.append({
            "code": str(code), "alliance": inst.kind == "alliance", "rc": rc,
            "course": course, "within_sd": float(s0), "prior_weeks": float(d0),
            "rise": float(np.max(course)), "ceiling": float(inst.total_max), "subscales": subs,
            "low": np.nan if low is None else float(low), "case": np.nan if case is None else float(case),
            "floor": float(floor), "worse_sign": -1.0 if inst.higher_is_better else 1.0,
            "label": _LABELS.get(inst.code, inst.code), "inst": inst,
        })
    return pd.DataFrame(rows)


def _rc_cutoff(inst: reg.Instrument, frozen: dict | None, week1_sd: float) -> float:
    """Reliable-change cut-off of one instrument in points (NaN when it cannot be known).

    ``RC = 1.96 * sqrt(2) * SD * sqrt(1 - r)`` (Jacobson & Truax, 1991, doi:10.1037/0022-006X.59.1.12;
    :func:`core.instruments.reliable_change_cutoff`). An explicit ``reliable_change`` in the
    definition wins. ``frozen`` (``rc_params`` as code -> (sd, r)) ``None``: the definition's
    SD, else ``week1_sd`` (the SD of the frame's week-1 scores). ``frozen`` given: its sd and r
    where not ``None``, else the definition's; ``week1_sd`` is never used.
    """
    if frozen is None or inst.reliable_change is not None:
        rc = inst.rc_cutoff(baseline_sd=None if pd.isna(week1_sd) else float(week1_sd))
        return np.nan if rc is None else rc
    sd, r = frozen.get(inst.code, (None, None))
    sd = inst.sd if sd is None else sd
    r = inst.reliability if r is None else r
    if sd is None or r is None or not np.isfinite(sd) or sd <= 0:
        return np.nan
    return reg.reliable_change_cutoff(float(sd), float(r))


def reliable_change_of(config: FlagConfig, code: str) -> float | None:
    """The reliable-change cut-off (points) of an instrument under ``config``'s frozen parameters
    (``None`` when it cannot be known without data, e.g. SPIN before the clinic froze its SD)."""
    frozen = None if config.rc_params is None else {c: (sd, r) for c, sd, r in config.rc_params}
    rc = _rc_cutoff(reg.get(code), frozen if frozen is not None else {}, np.nan)
    return None if rc is None or not np.isfinite(rc) else float(rc)


def _prepare(scores: pd.DataFrame, as_of_week: int | None) -> pd.DataFrame:
    check_scores(scores)
    if as_of_week is not None and (
            isinstance(as_of_week, bool) or not isinstance(as_of_week, (int, np.integer)) or as_of_week < 1):
        raise ValueError(f"as_of_week must be a treatment week (a whole number >= 1); got {as_of_week!r}.")
    known = set(reg.registry())
    codes = pd.unique(scores["instrument"].astype("string"))
    unknown = sorted(str(c) for c in codes if c not in known)
    if unknown:
        raise ValueError(f"Unknown instrument code(s) {', '.join(unknown)}; known instruments are "
                         f"{', '.join(sorted(known))}. Add a definition or fix the codes.")
    keep = ["patient_id", "instrument", "week", "score"]
    keep += ["therapist_id"] if "therapist_id" in scores.columns else []
    keep += [c for c in scores.columns if isinstance(c, str) and c.startswith("item_")]
    frame = scores[keep]
    if as_of_week is not None:
        frame = frame[frame["week"].to_numpy() <= as_of_week]
    order, gid = series_order(frame)
    frame = frame.take(order).reset_index(drop=True)
    frame["patient_id"] = frame["patient_id"].astype("string")
    frame["instrument"] = frame["instrument"].astype("string")
    frame["therapist_id"] = frame["therapist_id"].astype("string") if "therapist_id" in frame.columns \
        else pd.Series(pd.NA, index=frame.index, dtype="string")
    frame["week"] = frame["week"].astype("int64")
    frame["score"] = frame["score"].astype("float64")
    frame["_gid"] = gid
    return frame


# --------------------------------------------------------------------------- the engine
def compute_flags(
    scores: pd.DataFrame,
    *,
    config: FlagConfig = DEFAULT_CONFIG,
    as_of_week: int | None = None,
    current_week: pd.Series | int | None = None,
) -> pd.DataFrame:
    """Every flag the monitor raises, explained.

    Parameters
    ----------
    scores : DataFrame
        The core scores frame (``patient_id, instrument, week, score``; optional
        ``therapist_id`` and ``item_1 … item_N``). Not modified.
    config : FlagConfig
        Rule settings (``DEFAULT_CONFIG``).
    as_of_week : int, optional
        Answer as if only weeks <= ``as_of_week`` were stored.
    current_week : Series (indexed by patient_id), int or None
        The week each patient's treatment is at now, for missed questionnaires and for the
        end of repair windows. ``None``: ``as_of_week`` when given, else each patient's last
        stored week (only interior gaps count as missed). Capped at ``as_of_week``.

    Returns
    -------
    DataFrame
        One row per (patient_id, week, instrument, kind), sorted by patient, week,
        instrument, kind; columns ``FLAG_COLUMNS`` (the CONTRACT.md columns first).
        ``instrument`` is ``<NA>`` for ``missed`` (a patient-level flag). ``drop`` is
        ``baseline - score``; for symptom kinds the baseline is the first week (so a
        deterioration has a negative drop) and for ``low_alliance`` it is the cut-off.

    Notes
    -----
    A pipeline of named steps (module docstring, "The pipeline"); each step is tested on
    its own in ``tests/core/test_flags_pipeline.py``. Vectorised over all patients: one sort,
    grouped cumulative sums and exact-week lookups (sorted keys + ``searchsorted``); loops run
    over instruments and rule windows only. Formulas, defaults and references for each rule:
    docs/flags.md.
    """
    if not isinstance(config, FlagConfig):
        raise ValueError("config must be a FlagConfig (see core.flags.DEFAULT_CONFIG).")
    config.check()
    frame = _prepare(scores, as_of_week)
    if frame.empty:
        return empty_flags()
    s = _series_arrays(frame, config, as_of_week=as_of_week, current_week=current_week)
    parts = [
        _rupture_flags(frame, s, config),
        _low_alliance_flags(s, config),
        *_symptom_change_flags(s, config),
        _not_on_track_flags(s, config),
        _caseness_flags(s, config),
        *_risk_parts(frame, s, config),
        _missed_part(frame, s, config),
    ]
    return _assemble(parts, frame, s, config)


def expected_courses(scores: pd.DataFrame, *, config: FlagConfig = DEFAULT_CONFIG) -> pd.DataFrame:
    """What the rules expected of each stored week, for drawing it behind the patient's course.

    One row per stored score: ``patient_id, instrument, week, score, expected, lo, hi, what, on_track``. For an
    alliance instrument (``below_expected``; ``what = "alliance"``) ``expected`` is the patient's own
    level so far plus the clinic's course and ``lo``/``hi`` are ±1 of the patient's shrunk
    week-to-week SD; for a symptom instrument with an expected course (``not_on_track``;
    ``"symptom"``) ``expected`` is the course expected for the intake and ``hi`` (for a scale where
    higher is worse) the on-track bound, ``lo`` its mirror, and ``on_track`` the verdict of
    ``not_on_track`` for that week (``<NA>`` before ``min_week``). Computed by the rules' own steps
    (prospective: each week from the weeks before it and the frozen parameters). Rows without an
    expectation (too few weeks, no course) are left out.
    """
    cols = ["patient_id", "instrument", "week", "score", "expected", "lo", "hi", "what", "on_track"]
    config.check()
    frame = _prepare(scores, None)
    if frame.empty:
        return pd.DataFrame(columns=cols)
    s = _series_arrays(frame, config, as_of_week=None, current_week=None)
    parts = []
    if config.below_expected is not None and s.is_alliance.any():
        be = _below_expected(frame, s, config.below_expected)
        keep = s.is_alliance & s.present & be["known"]
        e, sd = be["expected"][keep], be["sd"][keep]
        parts.append(s.base[keep].assign(score=s.x[keep], expected=e, lo=e - sd, hi=e + sd, what="alliance",
                                         on_track=pd.NA))
    nt = _not_on_track_arrays(s, config)
    if nt is not None:
        keep = s.present & ~s.is_alliance & ~np.isnan(nt["expected"])
        e, b = nt["expected"][keep], nt["bound"][keep]
        b = np.where(np.isnan(b), e, b)
        verdict = pd.array(np.where(nt["judged"], ~nt["outside"], False), dtype="boolean")
        verdict[~nt["judged"]] = pd.NA
        parts.append(s.base[keep].assign(score=s.x[keep], expected=e, lo=np.minimum(e, 2 * e - b),
                                         hi=np.maximum(b, 2 * e - b), what="symptom", on_track=verdict[keep]))
    if not parts:
        return pd.DataFrame(columns=cols)
    return pd.concat(parts, ignore_index=True)[cols]


@dataclass(frozen=True, eq=False)
class _SeriesArrays:
    """What every rule reads, one entry per row of the prepared frame (series order).

    A series is one patient's scores on one instrument. Per-row arrays unless noted.
    """

    gid: np.ndarray          # series number
    week: np.ndarray         # treatment week (int64)
    x: np.ndarray            # score (NaN = not answered)
    present: np.ndarray      # ~isnan(x)
    pcode: np.ndarray        # patient number: pids[pcode] is the row's patient_id
    pids: pd.Index           # patient ids, sorted (string)
    icode: np.ndarray        # instrument number: icodes[icode] / itab.iloc[icode]
    icodes: pd.Index         # instrument codes present, sorted
    itab: pd.DataFrame       # per-instrument settings (_instrument_table)
    now_p: np.ndarray        # week each patient is at now (indexed like pids)
    now: np.ndarray          # now_p of the row's patient
    cnt: np.ndarray          # earlier stored scores of the series (running_arrays)
    rmean: np.ndarray        # their mean
    rsd: np.ndarray          # their SD
    lookup: WeekLookup       # exact-week lookup of stored scores by (gid, week)
    prev: np.ndarray         # score of exactly the week before (NaN if not stored)
    prev_stored: np.ndarray  # score of the previous stored week, any gap (NaN if none)
    first: np.ndarray        # first score of the series (the symptom baseline)
    rc: np.ndarray           # reliable-change cut-off of the row's instrument (NaN = unknown)
    course: np.ndarray       # expected change from week 1 of the row's instrument at the row's week
    is_alliance: np.ndarray  # the row's instrument is an alliance instrument
    worse_sign: np.ndarray   # +1 when a higher score is worse, -1 when it is better
    labels: np.ndarray       # per instrument: the name used in sentences (index with icode)
    base: pd.DataFrame       # patient_id, therapist_id, week, instrument of each row


def _series_arrays(frame: pd.DataFrame, config: FlagConfig, *, as_of_week: int | None,
                   current_week: pd.Series | int | None) -> _SeriesArrays:
    """Arrays of a prepared frame (``_prepare``): codes, running stats, lookups, settings per row."""
    gid = frame["_gid"].to_numpy()
    week = frame["week"].to_numpy()
    x = frame["score"].to_numpy()
    present = ~np.isnan(x)
    pcode, pids = pd.factorize(frame["patient_id"], sort=True)
    pids = pd.Index(pids, dtype="string")
    icode, icodes = pd.factorize(frame["instrument"], sort=True)
    itab = _instrument_table(pd.Index(icodes), frame[frame["week"] == 1], config)
    last_week = pd.Series(week).groupby(pcode).max().to_numpy()
    now_p = _now_per_patient(pids, last_week, as_of_week=as_of_week, current_week=current_week)
    cnt, rmean, rsd, _ = running_arrays(gid, x)
    lookup = WeekLookup(gid[present], week[present], x[present])
    base = pd.DataFrame({c: frame[c] for c in ("patient_id", "therapist_id", "week", "instrument")})
    course = np.zeros(len(frame))
    for i, c in enumerate(itab["course"]):  # loop over instruments (a handful), not rows
        sel = icode == i
        course[sel] = c[np.minimum(week[sel], len(c)) - 1]
    return _SeriesArrays(
        gid=gid, week=week, x=x, present=present, pcode=pcode, pids=pids, icode=icode, icodes=icodes,
        itab=itab, now_p=now_p, now=now_p[pcode], cnt=cnt, rmean=rmean, rsd=rsd, lookup=lookup,
        prev=lookup.at(gid, week, -1), prev_stored=_prev_stored(gid, x),
        first=pd.Series(x).groupby(gid, sort=False).transform("first").to_numpy(),
        rc=itab["rc"].to_numpy()[icode], course=course, is_alliance=itab["alliance"].to_numpy()[icode],
        worse_sign=itab["worse_sign"].to_numpy()[icode], labels=itab["label"].to_numpy(dtype=object),
        base=base,
    )


def _rupture_flags(frame: pd.DataFrame, s: _SeriesArrays, config: FlagConfig) -> pd.DataFrame | None:
    """Rupture rows: ``below_expected`` / ``reliable_drop`` / ``below_own_level`` (any or all), one per episode.

    ``below_expected`` counts as one rule for ``rupture_requires`` (its one-week or its
    two-week test). ``None`` when every rule is off, there is no alliance score or nothing fired.
    """
    rupt_rules = [r for r in ("below_expected", "reliable_drop", "below_own_level") if getattr(config, r) is not None]
    if not rupt_rules or not s.is_alliance.any():
        return None
    fired: dict[str, np.ndarray] = {}
    be: dict[str, Any] | None = None  # below_expected_criteria's arrays
    if config.below_expected is not None:
        be = _below_expected(frame, s, config.below_expected)
        fired["below_expected"] = be["one"]
        fired["below_expected_two_weeks"] = be["two"] & ~be["one"]
        fired["below_expected_subscale"] = be["sub"] & ~be["one"] & ~be["two"]
    if config.reliable_drop is not None:
        rd = reliable_drop_criteria(s.prev, s.x, s.rc, rule=config.reliable_drop)
        fired["reliable_drop"] = np.asarray(rd["reliable_drop"].fillna(False), dtype=bool)
    bol: dict[str, Any] | None = None  # below_own_level_criteria's arrays
    if config.below_own_level is not None:
        bol = below_own_level_criteria(s.x, s.cnt, s.rmean, s.rsd, rule=config.below_own_level, rc=s.rc)
        bol_hit = cast(pd.arrays.BooleanArray, bol["below_own_level"])
        fired["below_own_level"] = np.asarray(bol_hit.fillna(False), dtype=bool)
    groups = [fired["below_expected"] | fired["below_expected_two_weeks"] | fired["below_expected_subscale"]
              if r == "below_expected" else fired[r] for r in rupt_rules]
    stack = np.column_stack(groups)
    hit = (stack.any(axis=1) if config.rupture_requires == "any" else stack.all(axis=1)) & s.is_alliance & s.present
    if config.rupture_episodes:
        # the previous stored week of the series already met the rupture rule: same episode
        prev_hit = _prev_stored(s.gid, np.where(s.present, hit.astype("float64"), np.nan)) == 1.0
        hit &= ~prev_hit
    if not hit.any():
        return None
    names: list[str] = [n for n in ("below_expected", "below_expected_two_weeks", "below_expected_subscale",
                                    "reliable_drop", "below_own_level") if n in fired]
    return _rupture_part(frame, s, hit, fired, names, bol, be, config)


def _below_expected(frame: pd.DataFrame, s: _SeriesArrays, rule: BelowExpectedRule) -> dict[str, Any]:
    """``below_expected_criteria`` of every row: the total (one week, two weeks) and each subscale.

    Alliance rows only can fire. A row with every item answered is judged at ``k_sd`` and by
    the subscale test; one without items at ``k_sd_without_items``. Adds ``sub`` (does a
    subscale test fire), ``sub_name``, ``sub_gap`` and ``sub_expected``/``sub_score``/``sub_sd``/
    ``sub_z`` of the subscale with the largest gap in predictive SDs.
    """
    from scipy import special  # imported when used (not scipy.stats: ~0.4 s more of every refresh)
    prev_lookup = WeekLookup(s.gid[s.present], s.week[s.present], np.flatnonzero(s.present).astype("float64"))
    prev_row = np.nan_to_num(prev_lookup.at(s.gid, s.week, -1), nan=-1.0).astype("int64")
    col = s.itab.__getitem__
    def d0_of(per_inst: np.ndarray) -> np.ndarray:  # the rule's own prior weight, or the clinic's
        return per_inst if rule.prior_weeks is None else np.full(len(per_inst), float(rule.prior_weeks))

    has_items = _has_items(frame, s)
    k = np.where(has_items, rule.k_sd, rule.k_sd_without_items)
    out: dict[str, Any] = below_expected_criteria(s.gid, s.x, s.course, prev_row,
                                                ceiling=col("ceiling").to_numpy(dtype="float64")[s.icode],
                                                rise=col("rise").to_numpy(dtype="float64")[s.icode],
                                                prior_sd=col("within_sd").to_numpy(dtype="float64")[s.icode],
                                                prior_weeks=d0_of(col("prior_weeks").to_numpy(dtype="float64")[s.icode]),
                                                rule=rule, k=k)
    out["one"] &= s.is_alliance & s.present
    out["two"] &= s.is_alliance & s.present
    out["use_course"] = rule.use_course
    m = len(s.x)
    sub_hit = np.zeros(m, dtype=bool)
    best = {"z": np.full(m, -np.inf), "name": np.full(m, None, dtype=object), "gap": np.full(m, np.nan),
            "expected": np.full(m, np.nan), "score": np.full(m, np.nan), "sd": np.full(m, np.nan)}
    if rule.subscale_k_sd is not None:
        for i, row in s.itab.iterrows():  # loop over instruments and their subscales (a handful), not rows
            subs = row["subscales"]
            if not row["alliance"] or not subs:
                continue
            rows_of = np.flatnonzero(s.icode == i)
            values = reg.subscale_scores(frame.iloc[rows_of], instrument=row["code"])
            k_sub = float(-special.ndtri(special.ndtr(-rule.subscale_k_sd) / len(subs)))  # norm.isf(norm.sf(k) / m)
            g, wk = s.gid[rows_of], s.week[rows_of]
            for name, (c_s, s0, d0, ceiling) in subs.items():
                v = values[name].to_numpy(dtype="float64", na_value=np.nan)
                c = c_s[np.minimum(wk, len(c_s)) - 1]
                n_r = len(rows_of)
                res = below_expected_criteria(
                    g, v, c, np.full(n_r, -1), ceiling=np.full(n_r, ceiling), rise=np.full(n_r, float(np.max(c_s))),
                    prior_sd=np.full(n_r, s0), prior_weeks=d0_of(np.full(n_r, d0)), rule=rule, k=k_sub,
                    min_points=rule.subscale_min_points, two_weeks=False)
                fire = res["one"] & ~np.isnan(v)
                sub_hit[rows_of] |= fire
                z = np.where(fire, res["z"], -np.inf)
                better = z > best["z"][rows_of]
                tgt = rows_of[better]
                best["z"][tgt] = z[better]
                best["name"][tgt] = name
                best["gap"][tgt] = res["gap"][better]
                best["expected"][tgt] = res["expected"][better]
                best["score"][tgt] = v[better]
                best["sd"][tgt] = res["sd"][better]
    out["sub"] = sub_hit & has_items & s.is_alliance & s.present
    out.update({f"sub_{key}": val for key, val in best.items()})
    return out


def _has_items(frame: pd.DataFrame, s: _SeriesArrays) -> np.ndarray:
    """Per row: every item of the row's instrument is answered."""
    out = np.zeros(len(s.x), dtype=bool)
    for i, row in s.itab.iterrows():  # loop over instruments, not rows
        cols = row["inst"].items
        sel = s.icode == i
        if all(c in frame.columns for c in cols):
            out[sel] = frame.loc[sel, cols].notna().all(axis=1).to_numpy()
    return out


def _low_alliance_flags(s: _SeriesArrays, config: FlagConfig) -> pd.DataFrame | None:
    """Low-alliance rows: an alliance score below the line (entering it, unless ``every_week``)."""
    if config.low_alliance is None:
        return None
    low_cut = s.itab["low"].to_numpy()[s.icode]
    low = s.is_alliance & s.present & (s.x < low_cut)
    if not config.low_alliance.every_week:
        low &= ~(s.prev_stored < low_cut)
    if not low.any():
        return None
    idx = np.flatnonzero(low)
    lab = s.labels[s.icode[idx]]
    sc, cut = s.x[idx], low_cut[idx]
    expl = (pd.Series(lab, dtype="string") + " is " + _fmt(sc) + ", below the low-alliance line of "
            + _fmt(cut) + " (mean item answer below " + _fmt(cut / 12) + ").")
    return _part(s.base, idx, kind="low_alliance", rule="low_alliance", severity="medium",
                 score=sc, baseline=cut, explanation=expl)


def _symptom_change_flags(s: _SeriesArrays, config: FlagConfig) -> list[pd.DataFrame]:
    """Deterioration and improvement rows (reliable change from the first week), in that order."""
    is_symptom = ~s.is_alliance & s.present
    parts = []
    for kind, rule, severity in (("deterioration", config.deterioration, "high"),
                                 ("improvement", config.improvement, "low")):
        if rule is None or not is_symptom.any():
            continue
        part = _reliable_change_part(s, is_symptom, kind=kind, rule=rule, severity=severity)
        if part is not None:
            parts.append(part)
    return parts


def _reliable_change_part(s: _SeriesArrays, is_symptom: np.ndarray, *, kind: str, rule: ReliableChangeRule,
                          severity: str) -> pd.DataFrame | None:
    """One symptom kind's rows: the week a reliable change is first met (every week if asked)."""
    now_c = reliable_change_criteria(s.first, s.x, s.rc, worse_sign=s.worse_sign, rule=rule, direction=kind)
    hit = np.asarray(now_c.fillna(False), dtype=bool) & is_symptom
    if not rule.every_week:
        before = reliable_change_criteria(s.first, s.prev_stored, s.rc, worse_sign=s.worse_sign, rule=rule,
                                          direction=kind)
        hit &= ~np.asarray(before.fillna(False), dtype=bool)
    if not hit.any():
        return None
    idx = np.flatnonzero(hit)
    x, first = s.x[idx], s.first[idx]
    codes = pd.Series(s.icodes[s.icode[idx]], dtype="string")
    verb, adj = ("rose", "worse") if kind == "deterioration" else ("fell", "better")
    verb_arr = pd.Series(np.where(s.worse_sign[idx] > 0, verb, "fell" if verb == "rose" else "rose"),
                         dtype="string")
    head = codes + " " + verb_arr + " from " + _fmt(first) + " in the first week to " + _fmt(x)
    if rule.rc_multiple is None:
        expl = head + f" ({adj})."
    else:
        expl = (head + ": " + _fmt(np.abs(x - first)) + f" points {adj}, more than the "
                + _fmt(s.rc[idx] * rule.rc_multiple) + " points that count as a real change.")
    return _part(s.base, idx, kind=kind, rule=kind, severity=severity, score=x, baseline=first, explanation=expl)


def _symptom_courses(s: _SeriesArrays, config: FlagConfig) -> dict[int, Any]:
    """Per symptom instrument number: its expected course (frozen, else the literature default)."""
    from core.course import SymptomCourse, literature_symptom_course

    frozen = {c[0]: c for c in (config.symptom_course or ())}
    out = {}
    for i, row in s.itab.iterrows():  # loop over instruments (a handful), not rows
        if row["alliance"]:
            continue
        code = row["code"]
        if code in frozen:
            _, time, b0, b1, m1, tau, sig = frozen[code]
            out[i] = SymptomCourse(instrument=code, time=time, slope=b0, intake_slope=b1, intake_mean=m1,
                                   slope_sd=tau, resid_sd=sig, n_courses=0, source="frozen")
        else:
            course = literature_symptom_course(code, rc=row["rc"] if np.isfinite(row["rc"]) else None)
            if course is not None:
                out[i] = course
    return out


def _not_on_track_arrays(s: _SeriesArrays, config: FlagConfig) -> dict[str, Any] | None:
    """Per row: the expected symptom score, the on-track bound and the verdict of ``not_on_track``.

    ``None`` when the rule is off or no symptom instrument has an expected course. See
    :func:`_not_on_track_flags` for the rule.
    """
    from core.course import time_of

    rule = config.not_on_track
    if rule is None:
        return None
    courses = _symptom_courses(s, config)
    if not courses:
        return None
    m = len(s.x)
    expected, tau, rate, slope_sd, resid_sd = (np.full(m, np.nan) for _ in range(5))
    courses_time = np.full(m, "linear", dtype=object)
    # the intake: the score of week 1, or of week 2 when week 1 is missing (the course then counts from it)
    first_week = pd.Series(np.where(s.present, s.week, np.iinfo(np.int64).max)).groupby(s.gid) \
        .transform("min").to_numpy()
    intake = np.where(first_week <= 2, s.first, np.nan)
    for i, course in courses.items():  # loop over symptom instruments (a handful), not rows
        sel = s.icode == i
        t0 = time_of(np.minimum(first_week[sel], 2), course.time)
        tau[sel] = time_of(s.week[sel], course.time) - t0
        rate[sel] = course.slope + course.intake_slope * (intake[sel] - course.intake_mean)
        expected[sel] = intake[sel] + rate[sel] * tau[sel]
        slope_sd[sel], resid_sd[sel] = course.slope_sd, course.resid_sd
        courses_time[sel] = course.time
    usable = s.present & ~s.is_alliance & ~np.isnan(expected) & (s.week > first_week)
    # the patient's own rate of change: the least-squares slope of their scores on time over every
    # stored week from the intake up to this one (the intake's own noise does not tilt it)
    inc = usable | (s.present & ~s.is_alliance & ~np.isnan(expected) & (s.week == first_week))
    t_use, x_use, one = (np.where(inc, v, 0.0) for v in (tau, s.x - np.where(np.isnan(intake), 0.0, intake), 1.0))
    cums = [pd.Series(v).groupby(s.gid, sort=False).cumsum().to_numpy()
            for v in (one, t_use, x_use, t_use * t_use, t_use * x_use)]
    n_w, s_t, s_x, s_tt, s_tx = cums
    with np.errstate(invalid="ignore", divide="ignore"):
        stt = s_tt - s_t * s_t / n_w
        own_rate = np.where(stt > 1e-9, (s_tx - s_t * s_x / n_w) / stt, np.nan)
        se = np.sqrt(slope_sd ** 2 + resid_sd ** 2 / stt)
        z_rate = s.worse_sign * (own_rate - rate) / se
    judged = usable & (s.week >= rule.min_week) & ~np.isnan(z_rate)
    week_worse = s.worse_sign * (s.x - expected) > 0
    outside = judged & (z_rate > rule.z) & week_worse
    # where patients who started alike usually are this week (the corridor drawn on the chart): the
    # expected score plus z of the spread of a week's score around it
    bound = expected + s.worse_sign * rule.z * np.sqrt(slope_sd ** 2 * tau ** 2 + resid_sd ** 2)
    inside = judged & ~outside
    prev_out = _prev_stored(s.gid, np.where(judged, outside.astype("float64"), np.nan)) == 1.0
    hit = outside & ~prev_out
    return {"expected": expected, "bound": bound, "outside": outside, "inside": inside, "hit": hit, "judged": judged,
            "intake": intake, "first_week": first_week, "rate": rate, "own_rate": own_rate,
            "courses_time": courses_time, "se": se, "tau": tau}


def _not_on_track_flags(s: _SeriesArrays, config: FlagConfig) -> pd.DataFrame | None:
    """Not-on-track rows: a symptom course worse than expected for the intake, on entering it.

    Expected course and band per instrument from ``config.symptom_course`` or the literature
    default (``_symptom_courses``), given the patient's intake (week 1, else week 2). One flag per
    stretch off track, raised at its first week; its status is ``back_on_track`` once a later
    stored week is on track, ``open`` otherwise. Prospective: week t's verdict uses weeks <= t.
    """
    arrays = _not_on_track_arrays(s, config)
    rule = config.not_on_track
    if arrays is None or rule is None:  # no arrays without the rule
        return None
    expected, bound, inside, hit = arrays["expected"], arrays["bound"], arrays["inside"], arrays["hit"]
    intake, first_week, rate, own_rate = arrays["intake"], arrays["first_week"], arrays["rate"], arrays["own_rate"]
    courses_time = arrays["courses_time"]
    if not hit.any():
        return None
    # a later judged week back inside the band (as of now): the stretch has ended
    later_inside = pd.Series(inside[::-1].astype("int64")).groupby(s.gid[::-1]).cumsum().to_numpy()[::-1] \
        - inside.astype("int64")
    idx = np.flatnonzero(hit)
    beyond = s.worse_sign[idx] * (s.x[idx] - bound[idx])
    high = np.zeros(len(idx), dtype=bool)
    if rule.high_rc_multiple is not None:
        high = beyond >= rule.high_rc_multiple * s.rc[idx]
    codes = pd.Series(s.icodes[s.icode[idx]], dtype="string")
    unit = pd.Series(np.where(courses_time[idx] == "log", " per log-week", " points a week"), dtype="string")
    start = pd.Series(np.where(first_week[idx] == 1, "", " (in week 2)"), dtype="string")

    def signed(v: np.ndarray) -> pd.Series:
        return pd.Series(np.where(v > 0, "+", ""), dtype="string") + _fmt(v)

    expl = (codes + " " + _fmt(s.x[idx]) + " in week " + _fmt(s.week[idx]) + " is worse than expected for a patient "
            "who started at " + _fmt(intake[idx]) + start + ": expected around " + _fmt(expected[idx]) + " by week "
            + _fmt(s.week[idx]) + " (patients who started alike are usually below " + _fmt(bound[idx])
            + " by then). Since the start the score has "
            "moved by " + signed(own_rate[idx]) + unit + " (a line through every week so far); patients who started "
            "like them move by " + signed(rate[idx]) + unit + "; not on track.")
    part = _part(s.base, idx, kind="not_on_track", rule="not_on_track",
                 severity=pd.Series(np.where(high, "high", "medium"), dtype="string"), score=s.x[idx],
                 baseline=expected[idx], explanation=expl)
    part["status"] = pd.Series(np.where(later_inside[idx] > 0, "back_on_track", "open"), dtype="string")
    return part


def _caseness_flags(s: _SeriesArrays, config: FlagConfig) -> pd.DataFrame | None:
    """Caseness rows: a symptom score crossing the clinical cut-off since the last questionnaire."""
    is_symptom = ~s.is_alliance & s.present
    if config.caseness is None or not is_symptom.any():
        return None
    x, prev_stored, worse = s.x, s.prev_stored, s.worse_sign > 0
    case = s.itab["case"].to_numpy()[s.icode]
    in_case = np.where(worse, x >= case, x <= case)
    was_case = np.where(worse, prev_stored >= case, prev_stored <= case)
    hit = is_symptom & ~np.isnan(case) & in_case & ~np.isnan(prev_stored) & ~was_case
    if config.caseness.new_only:
        hit &= np.where(worse, s.first < case, s.first > case)
    if config.caseness.once:
        hit &= _group_exclusive_cumsum(hit.astype("int64"), s.gid) == 0
    if not hit.any():
        return None
    idx = np.flatnonzero(hit)
    codes = pd.Series(s.icodes[s.icode[idx]], dtype="string")
    expl = (codes + " is " + _fmt(x[idx]) + ", at or past the clinical cut-off of " + _fmt(case[idx])
            + " (it was " + _fmt(prev_stored[idx]) + " at the last questionnaire).")
    return _part(s.base, idx, kind="caseness", rule="caseness", severity="medium", score=x[idx],
                 baseline=case[idx], explanation=expl)


def _assemble(parts: list[pd.DataFrame | None], frame: pd.DataFrame, s: _SeriesArrays,
              config: FlagConfig) -> pd.DataFrame:
    """The flags frame: the steps' rows with symptom context, sorted, every column and dtype."""
    parts = [p for p in parts if p is not None and len(p)]
    if not parts:
        return empty_flags()
    out = pd.concat(parts, ignore_index=True)
    out = _add_symptom_context(out, frame, s, config)
    out = out.sort_values(_SORT, kind="stable", na_position="last").reset_index(drop=True)
    for c, d in FLAG_COLUMNS.items():
        if c not in out.columns:
            out[c] = pd.Series(pd.NA, index=out.index, dtype=d) if d != "float64" else np.nan
        out[c] = out[c].astype(d)
    return out[list(FLAG_COLUMNS)]


def _prev_stored(gid: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Score of the previous stored week of the same series (NaN if none)."""
    s = pd.Series(x)
    last = s.groupby(gid, sort=False).ffill()
    return last.groupby(gid, sort=False).shift(1).to_numpy(dtype="float64", na_value=np.nan)


def _part(base: pd.DataFrame, idx: np.ndarray, *, kind: str, rule, severity, score, baseline,
          explanation: pd.Series, **extra) -> pd.DataFrame:
    part = base.iloc[idx].reset_index(drop=True)
    m = len(idx)
    part["kind"] = kind
    part["rule"] = rule if not isinstance(rule, str) else _str(m, rule)
    part["severity"] = severity if not isinstance(severity, str) else _str(m, severity)
    part["score"] = np.asarray(score, dtype="float64")
    part["baseline"] = np.asarray(baseline, dtype="float64")
    part["drop"] = part["baseline"] - part["score"]
    part["status"] = _str(m, "open")
    part["explanation"] = explanation.reset_index(drop=True).astype("string")
    for k, v in extra.items():
        part[k] = v
    return part


def _rupture_part(frame: pd.DataFrame, s: _SeriesArrays, hit: np.ndarray, fired: dict[str, np.ndarray],
                  rupt_rules: list[str], bol: dict[str, Any] | None, be: dict[str, Any] | None,
                  config: FlagConfig) -> pd.DataFrame:
    """The rupture rows at ``hit``: rule, severity, baseline, repair status, confirmation, sentence.

    The baseline (what the score is compared with, and what repair must come back to) is the
    expected score of ``below_expected`` when that fired, else the week before
    (``reliable_drop``), else the running mean (``below_own_level``).
    """
    idx = np.flatnonzero(hit)
    x = s.x[idx]
    week = s.week[idx]
    which = np.column_stack([fired[r][idx] for r in rupt_rules])
    rule = _join_rules(which, np.array(rupt_rules))
    no = np.zeros(len(idx), bool)
    be1 = fired["below_expected"][idx] if "below_expected" in fired else no
    be2 = fired["below_expected_two_weeks"][idx] if "below_expected_two_weeks" in fired else no
    be3 = fired["below_expected_subscale"][idx] if "below_expected_subscale" in fired else no
    used_rd = fired.get("reliable_drop", np.zeros(len(hit), bool))[idx] & ~be1 & ~be2 & ~be3
    baseline = np.where(used_rd, s.prev[idx], s.rmean[idx])
    sd_used = bol["sd_used"][idx] if bol is not None else s.rsd[idx]
    with np.errstate(invalid="ignore", divide="ignore"):
        drop_sd = np.where(sd_used > 0, (s.rmean[idx] - x) / sd_used, np.nan)
    old_rules = which[:, [i for i, r in enumerate(rupt_rules) if r in ("reliable_drop", "below_own_level")]]
    high = old_rules.all(axis=1) & (old_rules.shape[1] > 1) if old_rules.shape[1] else no.copy()
    if be is not None:
        e1, e2 = be["expected"][idx], be["expected2"][idx]
        baseline = np.where(be1 | be3, e1, np.where(be2, e2, baseline))
        with np.errstate(invalid="ignore", divide="ignore"):
            drop_sd = np.where(be1 | be3, be["gap"][idx] / be["sd"][idx],
                               np.where(be2, be["gap2"][idx] / be["sd2"][idx], drop_sd))
        hr = config.below_expected.high_rc_multiple if config.below_expected is not None else None
        if hr is not None:
            gap = np.where(be2, be["gap2"][idx], be["gap"][idx])
            high |= (be1 | be2 | be3) & (gap >= hr * s.rc[idx])
    severity = np.where(high, "high", "medium")
    status, rep_week = repair_status(s.gid[idx], week, baseline, s.rc[idx], s.now[idx], s.lookup,
                                     rule=config.repair, score=x)
    confirmed = _sudden_loss_confirmed(s, idx, config)
    sub_name, sub_drop = _subscale_fall(frame, s, idx, used_rd)
    if be is not None and be3.any():  # the subscale test names its own subscale and gap
        sub_name = sub_name.where(~pd.Series(be3), pd.Series(be["sub_name"][idx], dtype="string"))
        sub_drop = np.where(be3, be["sub_gap"][idx], sub_drop)
    expl = _rupture_explanation(s, idx, drop_sd, sub_name)
    if be is not None and (be1 | be2 | be3).any():
        expl = expl.where(~pd.Series(be1 | be2 | be3),
                          _below_expected_explanation(s, idx, be, be2, be3, sub_name))
    return _part(s.base, idx, kind="rupture", rule=rule, severity=pd.Series(severity, dtype="string"),
                 score=x, baseline=baseline, explanation=expl, drop_sd=drop_sd, subscale=sub_name,
                 subscale_drop=sub_drop, confirmed=confirmed).pipe(_set_status, status, rep_week)


def _below_expected_explanation(s: _SeriesArrays, idx: np.ndarray, be: dict[str, Any], two: np.ndarray,
                                sub: np.ndarray, sub_name: pd.Series) -> pd.Series:
    """The sentence of each ``below_expected`` rupture row ``idx`` (``two``: the two-week test fired;
    ``sub``: the subscale test)."""
    x = s.x[idx]
    lab = pd.Series(s.labels[s.icode[idx]], dtype="string")

    def own_sds(gap: np.ndarray, sd: np.ndarray) -> np.ndarray:
        # the fall in the patient's own SDs: the same number as the flag's drop_sd and its card
        with np.errstate(invalid="ignore", divide="ignore"):
            return gap[idx] / sd[idx]

    why = " (their own level so far plus the clinic's usual change by this week of treatment)" \
        if be["use_course"] else " (their own level so far)"
    one = (lab + " was " + _fmt(x) + ", " + _fmt(be["gap"][idx]) + " points below the " + _fmt(be["expected"][idx])
           + " expected for this patient in week " + _fmt(s.week[idx]) + why + ": " + _fmt(own_sds(be["gap"], be["sd"]))
           + " of their own week-to-week SDs of " + _fmt(be["sd"][idx]) + " points")
    j = idx - 1  # rows of a series are in week order; the two-week test needs exactly the week before
    prev_x = s.lookup.at(s.gid[idx], s.week[idx], -1)
    twice = (lab + " was below what is expected for this patient two weeks running: " + _fmt(prev_x) + " and "
             + _fmt(x) + " against " + _fmt(be["prev_expected2"][idx]) + " and " + _fmt(be["expected2"][idx])
             + why + ", on average " + _fmt(be["gap2"][idx]) + " points below (" + _fmt(own_sds(be["gap2"], be["sd2"]))
             + " of their own week-to-week SDs of " + _fmt(be["sd2"][idx]) + " points)")
    del j
    name = pd.Series(be["sub_name"][idx], dtype="string").fillna("")
    part = (lab + ": the " + name + " items were " + _fmt(be["sub_score"][idx]) + ", " + _fmt(be["sub_gap"][idx])
            + " points below the " + _fmt(be["sub_expected"][idx]) + " expected for this patient in week "
            + _fmt(s.week[idx]) + why + ", " + _fmt(own_sds(be["sub_gap"], be["sub_sd"])) + " of the patient's own "
            + "week-to-week SDs of that part (" + _fmt(be["sub_sd"][idx]) + " points); the total was " + _fmt(x)
            + " against " + _fmt(be["expected"][idx]) + " expected.")
    body = twice.where(pd.Series(two), one)
    tail = ("; " + sub_name + " fell most.").fillna(".")
    return (body + tail).where(~pd.Series(sub), part)


def _sudden_loss_confirmed(s: _SeriesArrays, idx: np.ndarray, config: FlagConfig) -> pd.arrays.BooleanArray:
    """``confirmed`` of the rupture rows ``idx``: a sudden loss (later weeks; never raises a flag)."""
    if config.sudden_loss is None:
        return pd.array([pd.NA] * len(idx), dtype="boolean")
    sl = config.sudden_loss
    cut = s.rc[idx] * sl.rc_multiple if sl.rc_multiple is not None else None
    res = sudden_loss_at(s.lookup, s.gid[idx], s.week[idx], cutoff=cut, pct=sl.pct,
                         floor=s.itab["floor"].to_numpy()[s.icode[idx]], alpha=sl.alpha, window=sl.window,
                         min_per_side=sl.min_per_side)
    return res["sudden_loss"].array


def _rupture_explanation(s: _SeriesArrays, idx: np.ndarray, drop_sd: np.ndarray, sub_name: pd.Series) -> pd.Series:
    """The sentence of each rupture row ``idx``."""
    x, prev = s.x[idx], s.prev[idx]
    lab = pd.Series(s.labels[s.icode[idx]], dtype="string")
    has_prev = ~np.isnan(prev)
    fell = lab + " fell from " + _fmt(prev) + " to " + _fmt(x) + " (" + _fmt(prev - x) + " points"
    was = lab + " was " + _fmt(x) + " ("
    head = fell.where(has_prev, was)
    own = pd.Series(np.where(has_prev, ", ", ""), dtype="string") + _fmt(drop_sd) + \
        " of this patient's own SDs below their running average of " + _fmt(s.rmean[idx]) + ")"
    no_sd = pd.Series(np.where(has_prev, ")", "no earlier weeks to compare)"), dtype="string")
    body = head + own.where(~np.isnan(drop_sd), no_sd)
    tail = ("; " + sub_name + " fell most.").fillna(".")
    return body + tail


def _set_status(part: pd.DataFrame, status: np.ndarray, rep_week: np.ndarray) -> pd.DataFrame:
    part["status"] = pd.Series(status, dtype="string")
    rw = pd.array(rep_week, dtype="Int64")
    rw[rep_week <= 0] = pd.NA
    part["repaired_week"] = rw
    return part


def _join_rules(which: np.ndarray, names: np.ndarray) -> pd.Series:
    out = pd.Series([""] * len(which), dtype="string")
    for j, name in enumerate(names):
        col = which[:, j]
        sep = pd.Series(np.where(out == "", "", "+"), dtype="string")
        out = out.where(~col, out + sep + name)
    return out


def _subscale_fall(frame: pd.DataFrame, s: _SeriesArrays, idx: np.ndarray,
                   used_prev: np.ndarray) -> tuple[pd.Series, np.ndarray]:
    """Name and size (points) of the subscale that fell most at each rupture row."""
    m = len(idx)
    best_name = pd.Series(pd.NA, index=range(m), dtype="string")
    best_drop = np.full(m, np.nan)
    for code_i, row in s.itab.iterrows():  # loop over instruments (a handful), not rows
        inst = row["inst"]
        if not inst.subscales:
            continue
        rows_of = np.flatnonzero(frame["instrument"].to_numpy() == inst.code)
        sel = np.flatnonzero(s.icode[idx] == code_i)
        if not len(sel):
            continue
        subs = reg.subscale_scores(frame.iloc[rows_of], instrument=inst.code)
        if subs.isna().all().all():
            continue
        g_all = s.gid[rows_of]
        wk_all = s.week[rows_of]
        target_rows = idx[sel]
        pos = np.searchsorted(rows_of, target_rows)  # rows_of is sorted; targets are among them
        drops = []
        for name in sorted(inst.subscales):
            v = subs[name].to_numpy(dtype="float64", na_value=np.nan)
            _, rmean_s, _, _ = running_arrays(g_all, v)
            lk = WeekLookup(g_all[~np.isnan(v)], wk_all[~np.isnan(v)], v[~np.isnan(v)])
            prev_s = lk.at(g_all[pos], wk_all[pos], -1)
            ref = np.where(used_prev[sel], prev_s, rmean_s[pos])
            drops.append(ref - v[pos])
        d = np.column_stack(drops)
        names = np.array(sorted(inst.subscales))
        ok = ~np.isnan(d).all(axis=1)
        arg = np.argmax(np.where(np.isnan(d), -np.inf, d), axis=1)  # first max: alphabetical tie-break
        top = d[np.arange(len(sel)), arg]
        ok &= top > 0
        best_drop[sel[ok]] = top[ok]
        best_name.iloc[sel[ok]] = names[arg[ok]]
    return best_name, best_drop


def _risk_parts(frame: pd.DataFrame, s: _SeriesArrays, config: FlagConfig) -> list[pd.DataFrame]:
    """Risk-item rows, one part per instrument with risk items.

    Raised when a risk item was answered above the threshold, or, for a questionnaire stored
    without item answers, when its total implies it: every other item is at most ``item_max``,
    so the risk item is at least ``total - (n_items - 1) * item_max`` (PHQ-9: total - 24, so a
    total of 25 or more means item 9 >= 1).
    """
    if config.risk_item is None:
        return []
    threshold = config.risk_item.threshold
    parts = []
    for code_i, row in s.itab.iterrows():  # loop over instruments
        inst = row["inst"]
        if not inst.risk_items:
            continue
        rows = s.icode == code_i
        all_cols = [c for c in inst.items if c in frame.columns]
        answered = (~np.isnan(frame[all_cols].to_numpy(dtype="float64", na_value=np.nan))).any(axis=1) \
            if all_cols else np.zeros(len(frame), dtype=bool)
        cols = [f"item_{i}" for i in inst.risk_items]
        vals = np.column_stack([frame[c].to_numpy(dtype="float64", na_value=np.nan) if c in frame.columns
                                else np.full(len(frame), np.nan) for c in cols])
        above = np.where(np.isnan(vals), False, vals > threshold) & rows[:, None]
        # no item answered at all: the least each risk item can be, given the total
        least = s.x[:, None] - inst.others_max + np.zeros((1, len(cols)))
        implied = np.where(np.isnan(least), False, least > threshold) & (rows & ~answered)[:, None]
        hit = (above | implied).any(axis=1)
        if not hit.any():
            continue
        idx = np.flatnonzero(hit)
        desc = pd.Series([""] * len(idx), dtype="string")
        for j, num in enumerate(inst.risk_items):
            text = inst.item_label(num)
            name = f"item {num}" + (f" (\u201c{text}\u201d)" if text != f"Item {num}" else "")
            sep = pd.Series(np.where(desc == "", "", "; "), dtype="string")
            desc = desc.where(~above[idx, j], desc + sep + name + " was answered " + _fmt(vals[idx, j]))
            sep = pd.Series(np.where(desc == "", "", "; "), dtype="string")
            desc = desc.where(~implied[idx, j], desc + sep + name + " must have been answered at least "
                              + _fmt(least[idx, j]))
        expl = (f"{inst.code} " + desc + f" (above {threshold:g}): ask about risk and follow the clinic's "
                "risk procedure today.")
        from_total = ~answered[idx]
        expl = expl.where(~from_total, f"{inst.code} total of " + _fmt(s.x[idx]) + " was stored without item "
                          "answers, so " + desc + f" (implied by the total: each of the other {inst.n_items - 1} "
                          f"items is at most {inst.item_max:g}; above {threshold:g}): ask about risk and follow "
                          "the clinic's risk procedure today.")
        parts.append(_part(s.base, idx, kind="risk_item", rule="risk_item", severity="urgent",
                           score=s.x[idx], baseline=np.full(len(idx), np.nan), explanation=expl))
    return parts


def _missed_part(frame: pd.DataFrame, s: _SeriesArrays, config: FlagConfig) -> pd.DataFrame | None:
    """Missed rows (patient level, ``instrument`` <NA>): a run of weeks without any questionnaire."""
    if config.missed is None:
        return None
    weeks = config.missed.weeks
    present = s.present
    # one row per patient and stored week with any score
    pw = pd.DataFrame({"p": s.pcode[present], "w": s.week[present], "t": frame["therapist_id"].array[present]})
    if pw.empty:
        return None
    pw = pw.drop_duplicates(["p", "w"], keep="last")
    runs = missed_runs(pw["p"].to_numpy(), pw["w"].to_numpy(), s.now_p, weeks=weeks)
    if runs.empty:
        return None
    # therapist of the last stored week before the run
    key = pw.set_index(["p", "w"])["t"]
    ther = key.reindex(pd.MultiIndex.from_arrays([runs["pcode"], runs["last_seen"]])).array
    m = len(runs)
    part = pd.DataFrame({
        "patient_id": pd.Series(s.pids[runs["pcode"].to_numpy()], dtype="string"),
        "therapist_id": pd.Series(ther, dtype="string"),
        "week": runs["week"].to_numpy(),
        "instrument": pd.Series([pd.NA] * m, dtype="string"),
    })
    expl = ("No questionnaire for " + str(weeks) + " weeks in a row (weeks " + _fmt(runs["first_missing"])
            + " to " + _fmt(runs["week"]) + "); the last one was in week " + _fmt(runs["last_seen"]) + ".")
    if weeks == 1:
        expl = "No questionnaire in week " + _fmt(runs["week"]) + "; the last one was in week " + \
            _fmt(runs["last_seen"]) + "."
    return _part(part, np.arange(m), kind="missed", rule="missed", severity="low",
                 score=np.full(m, np.nan), baseline=np.full(m, np.nan), explanation=expl)


def _add_symptom_context(out: pd.DataFrame, frame: pd.DataFrame, s: _SeriesArrays,
                         config: FlagConfig) -> pd.DataFrame:
    """``symptom_instrument`` and ``symptom_change_next_week`` for rupture and low-alliance rows.

    The symptom instrument is the first of ``config.symptom_preference`` (then the other
    symptom instruments alphabetically) that the patient has a stored score for by the
    flag's week (prospective); the change is score(t+1) - score(t), exactly one week apart.
    """
    out["symptom_instrument"] = pd.Series(pd.NA, index=out.index, dtype="string")
    out["symptom_change_next_week"] = np.nan
    alli = out["kind"].isin(["rupture", "low_alliance"]).to_numpy()
    itab = s.itab
    sym = [c for c in itab["code"] if not itab.set_index("code").loc[c, "alliance"]]
    if not alli.any() or not sym:
        return out
    pref = config.symptom_preference
    order = [c for c in pref if c in sym] + sorted(c for c in sym if c not in pref)
    rows = np.flatnonzero(alli)
    p_of = s.pids.get_indexer(out["patient_id"].iloc[rows].astype("string"))
    wk = out["week"].to_numpy()[rows]
    x, present, pcode = s.x, s.present, s.pcode
    inst_arr = frame["instrument"].to_numpy()
    chosen = np.full(len(rows), -1, dtype="int64")
    change = np.full(len(rows), np.nan)
    for j, code in enumerate(order):  # loop over symptom instruments (a handful)
        sel = present & (inst_arr == code)
        if not sel.any():
            continue
        firstw = pd.Series(s.week[sel]).groupby(pcode[sel]).min()
        fw = firstw.reindex(p_of).to_numpy(dtype="float64", na_value=np.nan)
        take = (chosen < 0) & ~np.isnan(fw) & (fw <= wk)
        if not take.any():
            continue
        lk = WeekLookup(pcode[sel], s.week[sel], x[sel])
        nxt = lk.at(p_of, wk, 1) - lk.at(p_of, wk, 0)
        chosen[take] = j
        change[take] = nxt[take]
    names = np.array(order + [""], dtype=object)[chosen]
    si = pd.Series(names, dtype="string")
    si[chosen < 0] = pd.NA
    out.loc[rows, "symptom_instrument"] = si.to_numpy()
    out.loc[rows, "symptom_change_next_week"] = change
    return out
