"""The clinic's frozen rule parameters: versioned, with the provenance of every number.

A flag must not depend on who views it or on another patient's arrival (CLINICAL.md,
"Reliable change"), so no rule takes a number from whatever scores are being looked at. Every
such number is a stored parameter of a **rule set** (table ``rule_sets``), one version per change:

* version 1 is written on a database's first start (:func:`ensure_rule_set`): for each
  instrument of the registry its reliable-change SD and r with their source ("literature:
  Hatcher & Gillaspy (2006) ..."). An instrument without a published SD (SPIN) gets none on a new
  clinic, so its reliable change is off until the clinic freezes its own; a database that already
  holds scores when it is upgraded freezes its own week-1 SD at once, so the flags it showed
  before the upgrade stay as they were.
* :func:`freeze_own_sd` (``manage.py freeze-parameters``, the admin page) writes a new version
  with the clinic's own week-1 SD of the chosen instruments ("this clinic's week-1 SD, 412
  patients, frozen on 2026-12-01") and the caller recomputes every stored flag once
  (``db.flagstore.refresh_all``), in the same transaction.

:func:`flag_config` turns a rule set into the ``core.flags.FlagConfig`` that raises the flags.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import instruments as reg
from core.flags import (
    DEFAULT_CONFIG,
    RULE_CLASSES,
    FlagConfig,
    RuleSettings,
    alliance_course_default,
    apply_settings,
    reliable_change_of,
    subscale_course_default,
)
from db import audit
from db.access import Actor
from db.models import RuleSet, Score, utcnow

if TYPE_CHECKING:
    import pandas as pd

#: Fewest week-1 scores from which a clinic may freeze its own SD of an instrument.
MIN_PATIENTS = 30


@dataclass(frozen=True)
class RuleSetInfo:
    """One stored rule set: its version, parameters per instrument and who wrote it when."""

    version: int
    instruments: dict[str, dict]
    created_at: dt.datetime
    created_by: str
    note: str
    #: Per alliance instrument, the frozen expected course of ``below_expected`` (week_means,
    #: within_sd, prior_weeks, source); an instrument left out uses the literature default.
    course: dict[str, dict] = field(default_factory=dict)
    #: The clinic's rule settings that differ from the release's defaults ({rule: {param: value}},
    #: {rule: None} = off), see ``core.flags.apply_settings``.
    rules: RuleSettings = field(default_factory=dict)


def _literature(inst: reg.Instrument) -> dict:
    source = inst.reference or "the instrument's definition"
    if inst.reliable_change is not None:
        return {"sd": inst.sd, "r": inst.reliability, "rc": float(inst.reliable_change),
                "source": f"literature: a published reliable change of {inst.reliable_change:g} points ({source})"}
    if inst.sd is not None:
        return {"sd": float(inst.sd), "r": inst.reliability, "rc": None,
                "source": f"literature: SD {inst.sd:g}, r {inst.reliability:g} ({source})"}
    return {"sd": None, "r": inst.reliability, "rc": None,
            "source": f"no published SD: reliable change of {inst.code} is off until the clinic freezes its "
                      f"own week-1 SD (manage.py freeze-parameters --instrument {inst.code})"}


def week1_sds(session: Session) -> dict[str, tuple[int, float]]:
    """Per instrument: how many week-1 scores the clinic has and their sample SD (ddof 1)."""
    stmt = select(Score.instrument, func.count(), func.avg(Score.total), func.avg(Score.total * Score.total)) \
        .where(Score.week == 1).group_by(Score.instrument)
    out = {}
    for code, n, mean, mean_sq in session.execute(stmt).all():
        n = int(n)
        if n < 2:
            continue
        var = max(float(mean_sq) - float(mean) ** 2, 0.0) * n / (n - 1)
        out[str(code)] = (n, math.sqrt(var))
    return out


def _own_sd(code: str, n: int, sd: float, r: float | None, *, day: dt.date, why: str) -> dict:
    return {"sd": round(sd, 6), "r": r, "rc": None,
            "source": f"this clinic's week-1 SD, {n} patients, frozen on {day.isoformat()}{why}"}


def _write(session: Session, *, instruments: dict[str, dict], by: str, note: str,
           course: dict[str, dict] | None = None, rules: RuleSettings | None = None) -> RuleSetInfo:
    """A new rule set; ``course`` and ``rules`` default to those of the rule set in force."""
    current = current_rule_set(session)
    course = (current.course if current else {}) if course is None else course
    rules = (current.rules if current else {}) if rules is None else rules
    version = int(session.scalar(select(func.max(RuleSet.version))) or 0) + 1
    row = RuleSet(version=version, created_at=utcnow(), created_by=by,
                  params=json.dumps({"instruments": instruments, "course": course, "rules": rules}, sort_keys=True),
                  note=note)
    session.add(row)
    session.flush()
    return _info(row)


def _info(row: RuleSet) -> RuleSetInfo:
    params = json.loads(row.params)
    return RuleSetInfo(version=row.version, instruments=params["instruments"], created_at=row.created_at,
                       created_by=row.created_by, note=row.note, course=params.get("course", {}),
                       rules=params.get("rules", {}))


def current_rule_set(session: Session) -> RuleSetInfo | None:
    """The newest rule set (``None`` before :func:`ensure_rule_set` has run)."""
    row = session.scalar(select(RuleSet).order_by(RuleSet.version.desc()).limit(1))
    return None if row is None else _info(row)


def rule_sets(session: Session) -> list[RuleSetInfo]:
    """Every rule set, oldest first (the history of the clinic's parameters)."""
    return [_info(r) for r in session.scalars(select(RuleSet).order_by(RuleSet.version)).all()]


def ensure_rule_set(session: Session) -> RuleSetInfo:
    """The current rule set, writing version 1 first when there is none (see the module docstring)."""
    current = current_rule_set(session)
    if current is not None:
        return current
    params = {code: _literature(inst) for code, inst in sorted(reg.registry().items())}
    own = week1_sds(session)
    today = utcnow().date()
    for code, p in params.items():
        if p["sd"] is None and p["rc"] is None and code in own:
            n, sd = own[code]
            params[code] = _own_sd(code, n, sd, p["r"], day=today, why=" (at the upgrade to stored flags, so the "
                                   "flags shown before it stay as they were)")
    return _write(session, instruments=params, by="system", note="first rule set")


def flag_config(rule_set: RuleSetInfo, base: FlagConfig = DEFAULT_CONFIG) -> FlagConfig:
    """The ``FlagConfig`` of a rule set: ``base`` with the frozen SD and r of every instrument.

    An instrument added to the registry after the rule set was written gets its registry values
    (``rc_params`` falls back to them); one no longer in the registry is left out.
    """
    triples = []
    known = reg.registry()
    for code, p in sorted(rule_set.instruments.items()):
        if code not in known or p.get("rc") is not None:
            continue  # a published reliable change wins (the registry says so too)
        triples.append((code, p.get("sd"), p.get("r")))
    course = tuple((code, tuple(p["week_means"]), float(p["within_sd"]), float(p["prior_weeks"]))
                   for code, p in sorted(rule_set.course.items())
                   if code.partition(":")[0] in known and "week_means" in p)
    symptoms = tuple((code, p["time"], float(p["slope"]), float(p["intake_slope"]), float(p["intake_mean"]),
                      float(p["slope_sd"]), float(p["resid_sd"]))
                     for code, p in sorted(rule_set.course.items()) if code in known and "slope" in p)
    cfg = replace(base, rc_params=tuple(triples), alliance_course=course or None, symptom_course=symptoms or None)
    return apply_settings(cfg, rule_set.rules) if rule_set.rules else cfg


def course_defaults(rule_set: RuleSetInfo | None = None) -> dict[str, dict]:
    """The literature default of each instrument's expected course: alliance (``below_expected``)
    and, for a symptom instrument with published week means and a reliable change under
    ``rule_set``, symptoms (``not_on_track``)."""
    from core.course import literature_symptom_course

    out = {}
    cfg = flag_config(rule_set) if rule_set is not None else None
    for code, inst in sorted(reg.registry().items()):
        if inst.kind != "symptom" or cfg is None:
            continue
        c = literature_symptom_course(code, rc=reliable_change_of(cfg, code))
        if c is not None:
            out[code] = {"time": c.time, "slope": c.slope, "intake_slope": c.intake_slope,
                         "intake_mean": c.intake_mean, "slope_sd": c.slope_sd, "resid_sd": c.resid_sd,
                         "source": c.source}
    for code, inst in sorted(reg.registry().items()):
        if inst.kind != "alliance":
            continue
        means, s0, d0 = alliance_course_default(inst)
        out[code] = {"week_means": list(means), "within_sd": round(s0, 4), "prior_weeks": d0,
                     "source": f"literature: week means of {inst.week_means_source or 'none (a flat course)'}; "
                               f"within-person SD = the standard error of measurement SD*sqrt(1-r); "
                               f"{d0:g} prior weeks (a project choice)"}
        for name in sorted(inst.subscales):
            m_s, s_s, d_s = subscale_course_default(inst, name, (means, s0, d0))
            share = f"{len(inst.subscales[name])}/{inst.n_items}"
            out[f"{code}:{name}"] = {"week_means": list(m_s), "within_sd": round(s_s, 4), "prior_weeks": d_s,
                                     "source": f"default: {code}'s course times {share} of the items, its SD times "
                                               f"sqrt({share}) (a project choice)"}
    return out


def _score_frame(session: Session, codes: list[str]) -> pd.DataFrame:
    """The stored totals of ``codes`` as a core scores frame (patient_id, instrument, week, score)."""
    import pandas as pd

    rows = session.execute(select(Score.patient_id, Score.instrument, Score.week, Score.total)
                           .where(Score.instrument.in_(codes))).all()
    frame = pd.DataFrame(rows, columns=["patient_id", "instrument", "week", "score"])
    return frame.astype({"patient_id": "string", "instrument": "string", "week": "int64", "score": "float64"})


def freeze_course(session: Session, *, actor: Actor, instruments: list[str] | None = None,
                  today: dt.date | None = None) -> RuleSetInfo:
    """Write a new rule set with the clinic's own expected courses (``core.course``).

    ``instruments`` defaults to every alliance instrument with enough data, and then also every
    symptom instrument with ``core.course.MIN_COURSES`` completed courses (``not_on_track``). The caller recomputes
    the stored flags (``db.flagstore.refresh_all``) in the same transaction.

    Raises
    ------
    PermissionError
        The actor is not an admin.
    ValueError
        An unknown or non-alliance instrument, or too few patients (core.course.MIN_PATIENTS).
    """
    import pandas as pd

    from core.course import estimate_alliance_course, estimate_symptom_course

    if actor.role != "admin" or not actor.active:
        raise PermissionError("Only an admin may freeze the clinic's parameters; ask your clinic's admin.")
    current = ensure_rule_set(session)
    alliance = [c for c, i in sorted(reg.registry().items()) if i.kind == "alliance"]
    symptoms = [] if instruments else [c for c, i in sorted(reg.registry().items()) if i.kind == "symptom"]
    chosen = instruments or alliance
    for code in chosen:
        if code not in alliance:
            raise ValueError(f"{code} is not an alliance instrument; the expected course is frozen for "
                             f"{', '.join(alliance)}.")
    rows = session.execute(select(Score.patient_id, Score.instrument, Score.week, Score.total, Score.items)
                           .where(Score.instrument.in_(chosen))).all()
    frame = pd.DataFrame([r[:4] for r in rows], columns=["patient_id", "instrument", "week", "score"])
    frame["patient_id"] = frame["patient_id"].astype("string")
    frame["instrument"] = frame["instrument"].astype("string")
    frame["week"] = frame["week"].astype("int64")
    frame["score"] = frame["score"].astype("float64")
    width = max((reg.get(c).n_items for c in chosen), default=0)
    items = pd.DataFrame([list(r[4]) + [None] * (width - len(r[4])) if r[4] else [None] * width for r in rows],
                         columns=[f"item_{j + 1}" for j in range(width)], dtype="float64")
    frame = pd.concat([frame, items], axis=1)
    day = (today or utcnow().date()).isoformat()
    course = dict(current.course)
    done = []
    for code in chosen:
        try:
            estimates = estimate_alliance_course(frame, code)
        except ValueError:
            if instruments:  # asked for by name: say why not
                raise
            continue
        for est in estimates:
            course[est.instrument] = {
                "week_means": list(est.week_means), "within_sd": est.within_sd, "prior_weeks": est.prior_weeks,
                "source": f"this clinic's course, {est.n_patients} patients and {est.n_scores} scores, frozen on {day}"}
        done.append(code)
    if not done:
        raise ValueError(f"No alliance instrument has {MIN_PATIENTS} patients with three or more weeks yet; keep "
                         f"the literature default until more weeks are stored.")
    if symptoms:  # the expected symptom courses of not_on_track, where the clinic has enough completed courses
        sym_frame = _score_frame(session, symptoms)
        for code in symptoms:
            try:
                sym = estimate_symptom_course(sym_frame, code, day=day)
            except ValueError:
                continue
            course[code] = {"time": sym.time, "slope": sym.slope, "intake_slope": sym.intake_slope,
                            "intake_mean": sym.intake_mean, "slope_sd": sym.slope_sd, "resid_sd": sym.resid_sd,
                            "source": sym.source}
            done.append(code)
    info = _write(session, instruments=current.instruments, by=actor.name, course=course,
                  note=f"froze the clinic's own expected course of {', '.join(done)}")
    audit.record(session, actor=actor, action="setting", key="rule_set", value=str(info.version),
                 course={c: p["source"] for c, p in course.items() if c.partition(":")[0] in done})
    return info


def parse_value(text: str) -> object:
    """A rule setting typed on the command line or the admin page: a number, true/false or none."""
    t = text.strip()
    low = t.lower()
    if low in ("none", "off", "null", ""):
        return None
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no"):
        return False
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t


def set_rule(session: Session, *, actor: Actor, rule: str, param: str | None, value: object,
             reason: str) -> RuleSetInfo:
    """Write a new rule set with one rule setting changed (``param`` None: ``value`` is "on"/"off"
    for a rule, or the value of a plain setting such as ``rupture_requires``). Validated by
    ``core.flags.apply_settings``; audited. The caller recomputes the stored flags.

    Raises
    ------
    PermissionError
        The actor is not an admin.
    ValueError
        An unknown rule or parameter, a value the rule cannot work with, or no reason.
    """
    if actor.role != "admin" or not actor.active:
        raise PermissionError("Only an admin may change the rule settings; ask your clinic's admin.")
    if not reason or not reason.strip():
        raise ValueError("Say why the setting changes (--reason); the reason is kept with the rule set.")
    current = ensure_rule_set(session)
    rules = json.loads(json.dumps(current.rules))
    if rule not in RULE_CLASSES:
        raise ValueError(f"There is no rule {rule!r}; the rules are {', '.join(sorted(RULE_CLASSES))}.")
    if RULE_CLASSES[rule] is None:
        rules[rule] = value
        what = f"{rule} = {value}"
    elif param is None:
        if value is None or value is False:
            rules[rule] = None
            what = f"{rule} off"
        else:
            base = rules.get(rule)
            rules[rule] = base if isinstance(base, dict) else {}
            what = f"{rule} on"
    else:
        base = rules.get(rule)
        entry = dict(base) if isinstance(base, dict) else {}
        entry[param] = value
        rules[rule] = entry
        what = f"{rule}.{param} = {value}"
    flag_config(replace(current, rules=rules))  # raises ValueError on a setting that cannot work
    info = _write(session, instruments=current.instruments, by=actor.name, rules=rules,
                  note=f"{what} ({reason.strip()})")
    audit.record(session, actor=actor, action="setting", key="rule_set", value=str(info.version),
                 change=what, reason=reason.strip())
    return info


def rule_settings_table(rule_set: RuleSetInfo) -> list[dict]:
    """Every rule parameter: its release default and the value in force (``rule``, ``param``,
    ``default``, ``value``, ``changed``)."""
    from dataclasses import fields as dc_fields

    cfg = flag_config(rule_set)
    rows = []
    for name, cls in RULE_CLASSES.items():
        if cls is None:
            d, v = getattr(DEFAULT_CONFIG, name), getattr(cfg, name)
            rows.append({"rule": name, "param": "", "default": d, "value": v, "changed": d != v})
            continue
        d_rule, v_rule = getattr(DEFAULT_CONFIG, name), getattr(cfg, name)
        rows.append({"rule": name, "param": "(on/off)", "default": "on" if d_rule else "off",
                     "value": "on" if v_rule else "off", "changed": (d_rule is None) != (v_rule is None)})
        for f in dc_fields(cls):
            d = getattr(d_rule or cls(), f.name)
            v = getattr(v_rule, f.name) if v_rule is not None else None
            rows.append({"rule": name, "param": f.name, "default": d, "value": v if v_rule is not None else "–",
                         "changed": v_rule is not None and d != v})
    return rows


def freeze_own_sd(session: Session, *, actor: Actor, instruments: list[str] | None = None,
                  min_patients: int = MIN_PATIENTS, today: dt.date | None = None) -> RuleSetInfo:
    """Write a new rule set with the clinic's own week-1 SD of ``instruments`` frozen.

    ``instruments`` defaults to every instrument whose registry definition has no SD and no
    published reliable change (SPIN). The caller recomputes the stored flags
    (``db.flagstore.refresh_all``) in the same transaction.

    Raises
    ------
    PermissionError
        The actor is not an admin.
    ValueError
        An unknown instrument, one with a published reliable change (nothing to freeze), or
        fewer than ``min_patients`` week-1 scores.
    """
    if actor.role != "admin" or not actor.active:
        raise PermissionError("Only an admin may freeze the clinic's parameters; ask your clinic's admin.")
    current = ensure_rule_set(session)
    params = {k: dict(v) for k, v in current.instruments.items()}
    registry = reg.registry()
    if instruments is None:
        instruments = [c for c, i in sorted(registry.items()) if i.sd is None and i.reliable_change is None]
    own = week1_sds(session)
    day = today or utcnow().date()
    for code in instruments:
        if code not in registry:
            raise ValueError(f"There is no instrument {code}; known instruments are {', '.join(sorted(registry))}.")
        if registry[code].reliable_change is not None:
            raise ValueError(f"{code} has a published reliable change of {registry[code].reliable_change:g} points; "
                             f"there is no SD to freeze for it.")
        n, sd = own.get(code, (0, float("nan")))
        if n < min_patients or not np.isfinite(sd) or sd <= 0:
            raise ValueError(f"The clinic has {n} week-1 {code} scores; freezing its own SD needs at least "
                             f"{min_patients}. Import more intake data first, or keep the current value.")
        r = params.get(code, {}).get("r", registry[code].reliability)
        params[code] = _own_sd(code, n, sd, r, day=day, why="")
    info = _write(session, instruments=params, by=actor.name, note=f"froze the clinic's own SD of "
                  f"{', '.join(instruments)}")
    audit.record(session, actor=actor, action="setting", key="rule_set", value=str(info.version),
                 instruments={c: params[c]["source"] for c in instruments})
    return info
