"""Write functions. Callers own the transaction: a failure anywhere rolls back everything.

Imports are all or nothing: :func:`plan_import` compares validated rows with the stored
scores (new, unchanged, conflicting), :func:`apply_import` writes them in the caller's
transaction, and every change is audited (a replaced value keeps its old value in the trail).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from core.validation import RowError
from db import audit
from db.access import Actor
from db.auth import hash_password
from db.models import ROLES, Account, FlagNote, Patient, Score, Setting, utcnow


class PermissionDenied(Exception):
    """The acting account may not do this."""


def _require_admin(actor: Actor) -> None:
    if actor.role != "admin" or not actor.active:
        raise PermissionDenied("Only an admin may do this; ask your clinic's admin.")


@dataclass(frozen=True)
class ImportPlan:
    """What an import would do, row by row (``rows`` carries a ``change`` column)."""

    rows: pd.DataFrame
    new: int
    unchanged: int
    conflicts: int
    errors: tuple[RowError, ...] = field(default_factory=tuple)


def _items_list(row: pd.Series, item_cols: list[str]) -> list[int] | None:
    values = [row[c] for c in item_cols]
    present = [v for v in values if not pd.isna(v)]
    if not present:
        return None
    last = max(i for i, v in enumerate(values) if not pd.isna(v))
    return [int(v) for v in values[: last + 1]]


def plan_import(session: Session, *, scores: pd.DataFrame, first_row: int = 2) -> ImportPlan:
    """Compare validated rows (core contract) with what is stored.

    A row is ``new`` (nothing stored for that patient, instrument and week), ``unchanged``
    (the same total and items are stored) or ``conflict`` (another value is stored).
    """
    frame = scores.copy()
    frame["file_row"] = np.arange(len(frame)) + first_row
    item_cols = sorted((c for c in frame.columns if c.startswith("item_")), key=lambda c: int(c[5:]))
    codes = frame["patient_id"].unique().tolist()
    stored_rows = []
    for start in range(0, len(codes), 500):
        chunk = codes[start:start + 500]
        stmt = (select(Patient.code, Score.instrument, Score.week, Score.total, Score.items)
                .join(Patient, Score.patient_id == Patient.id).where(Patient.code.in_(chunk)))
        stored_rows += session.execute(stmt).all()
    stored = pd.DataFrame(stored_rows, columns=["patient_id", "instrument", "week", "stored_total",
                                                "stored_items"])
    merged = frame.merge(stored, on=["patient_id", "instrument", "week"], how="left")
    frame["items_list"] = [_items_list(r, item_cols) for _, r in frame.iterrows()] if item_cols else None
    merged["items_list"] = frame["items_list"].to_numpy()
    has_stored = merged["stored_total"].notna()
    same_total = has_stored & (merged["stored_total"] - merged["score"]).abs().lt(1e-9)
    same_items = merged["items_list"].combine(
        merged["stored_items"], lambda a, b: (a or None) == (b or None) or a is None)
    change = np.where(~has_stored, "new", np.where(same_total & same_items, "unchanged", "conflict"))
    merged["change"] = change
    conflicts = merged[merged["change"] == "conflict"]
    errors = tuple(RowError(int(r), "score", f"patient {p} already has another {i} score stored for week {w}; "
                                             f"import with replace to overwrite it (the old value is kept "
                                             f"in the audit trail).")
                   for r, p, i, w in zip(conflicts["file_row"], conflicts["patient_id"],
                                         conflicts["instrument"], conflicts["week"], strict=True))
    return ImportPlan(rows=merged, new=int((change == "new").sum()),
                      unchanged=int((change == "unchanged").sum()),
                      conflicts=int((change == "conflict").sum()), errors=errors)


def _ensure_accounts(session: Session, names: list[str]) -> dict[str, int]:
    existing = dict(session.execute(select(Account.name, Account.id).where(Account.name.in_(names))).all())
    missing = [n for n in names if n not in existing]
    if missing:
        session.execute(insert(Account), [{"name": n, "role": "therapist", "active": True,
                                           "session_epoch": 0, "created_at": utcnow()} for n in missing])
        existing = dict(session.execute(select(Account.name, Account.id).where(Account.name.in_(names))).all())
    return existing


def _ensure_patients(session: Session, pairs: pd.DataFrame, therapist_ids: dict[str, int]) -> dict[str, int]:
    codes = pairs["patient_id"].tolist()
    existing: dict[str, int] = {}
    for start in range(0, len(codes), 500):
        chunk = codes[start:start + 500]
        existing.update(session.execute(select(Patient.code, Patient.id).where(Patient.code.in_(chunk))).all())
    new = pairs[~pairs["patient_id"].isin(list(existing))]
    if len(new):
        session.execute(insert(Patient), [
            {"code": p, "therapist_id": therapist_ids[t], "status": "active", "created_at": utcnow()}
            for p, t in zip(new["patient_id"], new["therapist_id"], strict=True)])
        for start in range(0, len(codes), 500):
            chunk = codes[start:start + 500]
            existing.update(session.execute(select(Patient.code, Patient.id)
                                            .where(Patient.code.in_(chunk))).all())
    return existing


def apply_import(session: Session, *, actor: Actor, plan: ImportPlan, replace: bool = False,
                 source: str = "import", filename: str | None = None) -> dict[str, int]:
    """Write a planned import in the caller's transaction; conflicts need ``replace``.

    Unknown therapists become therapist accounts without a password (an admin sets one with
    ``create-user``); unknown patients are created on that therapist's caseload. Returns the
    counts written.
    """
    if plan.conflicts and not replace:
        raise ValueError(f"{plan.conflicts} rows conflict with stored scores; nothing was written. "
                         f"Import with replace to overwrite them.")
    rows = plan.rows
    todo = rows[rows["change"] != "unchanged"]
    counts = {"new": plan.new, "unchanged": plan.unchanged, "replaced": 0}
    if todo.empty:
        audit.record(session, actor=actor, action="import", file=filename, **counts)
        return counts
    therapist_ids = _ensure_accounts(session, sorted(todo["therapist_id"].unique().tolist()))
    pairs = todo.drop_duplicates("patient_id")[["patient_id", "therapist_id"]]
    patient_ids = _ensure_patients(session, pairs, therapist_ids)
    now = utcnow()
    entered_by = actor.id if actor.id else None

    def _date(v: object) -> dt.date | None:
        return None if v is None or pd.isna(v) else v  # type: ignore[return-value]

    new = todo[todo["change"] == "new"]
    if len(new):
        session.execute(insert(Score), [
            {"patient_id": patient_ids[p], "instrument": i, "week": int(w), "total": float(s),
             "items": it, "administered_on": _date(d), "source": source, "entered_by": entered_by,
             "entered_at": now, "version": 1}
            for p, i, w, s, it, d in zip(new["patient_id"], new["instrument"], new["week"], new["score"],
                                         new["items_list"], new["administered_on"], strict=True)])
    conflicts = todo[todo["change"] == "conflict"]
    for r in conflicts.itertuples(index=False):
        session.execute(update(Score).where(Score.patient_id == patient_ids[r.patient_id],
                                            Score.instrument == r.instrument, Score.week == int(r.week))
                        .values(total=float(r.score), items=r.items_list, source=source, entered_by=entered_by,
                                entered_at=now, version=Score.version + 1))
        audit.record(session, actor=actor, action="change_score", patient_code=r.patient_id,
                     instrument=r.instrument, week=int(r.week), old=r.stored_total, new=float(r.score),
                     old_items=r.stored_items, new_items=r.items_list, reason="import --replace")
    counts["replaced"] = len(conflicts)
    audit.record(session, actor=actor, action="import", file=filename, patients=len(pairs), **counts)
    return counts


def create_account(session: Session, *, actor: Actor, name: str, role: str, password: str | None,
                   team: str | None = None, display_name: str | None = None,
                   email: str | None = None) -> Account:
    """Add an account, or give a password and role to one that an import created without them."""
    _require_admin(actor)
    if role not in ROLES:
        raise ValueError(f"The role {role!r} does not exist; use one of {', '.join(ROLES)}.")
    if not name or not name.replace(".", "").replace("_", "").replace("-", "").isalnum() or len(name) > 64:
        raise ValueError("An account name is 1-64 letters, digits, dots, dashes or underscores.")
    hashed = hash_password(password) if password is not None else None
    account = session.scalar(select(Account).where(Account.name == name))
    if account is not None and account.password_hash is not None:
        raise ValueError(f"The account {name} already exists; choose another name.")
    if account is None:
        account = Account(name=name, role=role, team=team, password_hash=hashed,
                          display_name=display_name, email=email, active=True, session_epoch=0)
        session.add(account)
    else:
        account.role, account.team, account.password_hash = role, team, hashed
        account.display_name = display_name or account.display_name
        account.email = email or account.email
    session.flush()
    audit.record(session, actor=actor, action="create_account", account=name, role=role, team=team)
    return account


def assign_patient(session: Session, *, actor: Actor, code: str, therapist: str) -> None:
    """Put patient ``code`` on ``therapist``'s caseload."""
    _require_admin(actor)
    patient = session.scalar(select(Patient).where(Patient.code == code))
    if patient is None:
        raise ValueError(f"There is no patient {code}; check the code (import the patient's scores first).")
    account = session.scalar(select(Account).where(Account.name == therapist))
    if account is None or account.role != "therapist":
        raise ValueError(f"There is no therapist account {therapist}; create it with create-user first.")
    old = patient.therapist.name if patient.therapist else None
    patient.therapist_id = account.id
    audit.record(session, actor=actor, action="assign", patient_code=code, old=old, new=therapist)


def set_patient_details(session: Session, *, actor: Actor, details: pd.DataFrame) -> None:
    """Set start date, status and planned weeks (columns patient_id, start_date, status, planned_weeks)."""
    _require_admin(actor)
    for r in details.itertuples(index=False):
        session.execute(update(Patient).where(Patient.code == r.patient_id).values(
            start_date=pd.Timestamp(r.start_date).date(), status=r.status, planned_weeks=int(r.planned_weeks)))


def set_setting(session: Session, *, actor: Actor, key: str, value: str) -> None:
    """Set a clinic-wide setting."""
    _require_admin(actor)
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value
    audit.record(session, actor=actor, action="setting", key=key, value=value)


def record_flag_action(session: Session, *, actor: Actor, patient_id: int, instrument: str, week: int,
                       kind: str, action: str, note: str) -> None:
    """Mark a flag addressed in feedback (with a note) or reopen it; audited."""
    session.add(FlagNote(patient_id=patient_id, instrument=instrument, week=week, kind=kind,
                         action=action, note=note, by_account=actor.id or None))
