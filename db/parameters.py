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
from dataclasses import dataclass, replace

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import instruments as reg
from core.flags import DEFAULT_CONFIG, FlagConfig
from db import audit
from db.access import Actor
from db.models import RuleSet, Score, utcnow

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


def _write(session: Session, *, instruments: dict[str, dict], by: str, note: str) -> RuleSetInfo:
    version = int(session.scalar(select(func.max(RuleSet.version))) or 0) + 1
    row = RuleSet(version=version, created_at=utcnow(), created_by=by,
                  params=json.dumps({"instruments": instruments}, sort_keys=True), note=note)
    session.add(row)
    session.flush()
    return _info(row)


def _info(row: RuleSet) -> RuleSetInfo:
    return RuleSetInfo(version=row.version, instruments=json.loads(row.params)["instruments"],
                       created_at=row.created_at, created_by=row.created_by, note=row.note)


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
    return replace(base, rc_params=tuple(triples))


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
