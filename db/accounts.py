"""Account administration: deactivate and reactivate, re-role, teams, e-mail, password resets,
moving patients between caseloads, and the audit trail as admins read it.

Every function here is for admins only (:class:`db.writes.PermissionDenied` otherwise), runs in
the caller's transaction and writes one audit row per change (who, what, old and new value,
reason). Two rules keep patients from falling out of sight:

* a therapist who still has patients on their caseload can be neither deactivated nor given
  another role: move the patients first (:func:`move_patients`);
* the last active admin can be neither deactivated nor given another role, and an admin cannot
  deactivate or re-role their own account (another admin does that).

A password reset, a deactivation and a role change end every login session of the account in
the same transaction (``db.sessions.revoke_account_sessions``): every browser it is logged in
from shows the login form at its next click, and a pending download or fragment gets nothing. A
password reset and a deactivation also bump the account's ``session_epoch``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

import pandas as pd
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from db import audit
from db.access import Actor
from db.auth import hash_password
from db.models import ROLES, Account, AuditEvent, Patient
from db.sessions import revoke_account_sessions
from db.writes import PermissionDenied, _require_admin

__all__ = ["PermissionDenied", "account_table", "audit_trail", "deactivate_account", "move_patients",
           "reactivate_account", "reset_password", "set_email", "set_role", "set_team"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
AUDIT_COLUMNS = ["id", "at", "actor", "action", "patient_code", "detail"]


def _account(session: Session, name: str) -> Account:
    account = session.scalar(select(Account).where(Account.name == name))
    if account is None:
        raise ValueError(f"There is no account {name!r}; check the name in the accounts table.")
    return account


def _caseload_size(session: Session, account: Account) -> int:
    return session.scalar(select(func.count()).select_from(Patient).where(Patient.therapist_id == account.id)) or 0


def _other_active_admins(session: Session, account: Account) -> int:
    return session.scalar(select(func.count()).select_from(Account).where(
        Account.role == "admin", Account.active.is_(True), Account.id != account.id)) or 0


def _guard_removal(session: Session, *, actor: Actor, account: Account, what: str) -> None:
    """Refuse changes that would orphan patients or leave the clinic without an admin."""
    if account.id == actor.id:
        raise ValueError(f"You cannot {what} your own account; ask another admin to do it.")
    if account.role == "admin" and account.active and _other_active_admins(session, account) == 0:
        raise ValueError(f"{account.name} is the only active admin; make another account admin before you "
                         f"{what} this one.")
    if account.role == "therapist":
        n = _caseload_size(session, account)
        if n:
            raise ValueError(f"{account.name} still has {n} patient{'s' if n != 1 else ''} on their caseload; "
                             f"move them to another therapist first (Move patients).")


def _reason(reason: str | None) -> str | None:
    reason = (reason or "").strip()
    return reason[:500] or None


def deactivate_account(session: Session, *, actor: Actor, name: str, reason: str | None = None) -> None:
    """Deactivate account ``name``: it can no longer log in and is logged out everywhere.

    Parameters
    ----------
    session : Session
        The caller's transaction.
    actor : Actor
        An active admin.
    name : str
        The account to deactivate.
    reason : str, optional
        Why (kept in the audit trail).
    """
    _require_admin(actor)
    account = _account(session, name)
    if not account.active:
        raise ValueError(f"The account {name} is already deactivated.")
    _guard_removal(session, actor=actor, account=account, what="deactivate")
    account.active = False
    account.session_epoch = (account.session_epoch or 0) + 1
    revoke_account_sessions(session, account_id=account.id, reason="deactivated")
    audit.record(session, actor=actor, action="deactivate_account", account=name, reason=_reason(reason))


def reactivate_account(session: Session, *, actor: Actor, name: str, reason: str | None = None) -> None:
    """Let a deactivated account log in again (with its old password, or reset it first)."""
    _require_admin(actor)
    account = _account(session, name)
    if account.active:
        raise ValueError(f"The account {name} is already active.")
    account.active = True
    audit.record(session, actor=actor, action="reactivate_account", account=name, reason=_reason(reason))


def set_role(session: Session, *, actor: Actor, name: str, role: str, reason: str | None = None) -> None:
    """Give account ``name`` another role (therapist, supervisor or admin).

    Every login session of the account ends (it logs in again, and gets the new role's menu).
    """
    _require_admin(actor)
    if role not in ROLES:
        raise ValueError(f"The role {role!r} does not exist; use one of {', '.join(ROLES)}.")
    account = _account(session, name)
    if account.role == role:
        return
    _guard_removal(session, actor=actor, account=account, what="change the role of")
    old = account.role
    account.role = role
    revoke_account_sessions(session, account_id=account.id, reason="role changed")
    audit.record(session, actor=actor, action="set_role", account=name, old=old, new=role, reason=_reason(reason))


def set_team(session: Session, *, actor: Actor, name: str, team: str | None, reason: str | None = None) -> None:
    """Put account ``name`` in ``team`` (``None`` or empty: no team, so a supervisor sees nobody)."""
    _require_admin(actor)
    account = _account(session, name)
    team = (team or "").strip() or None
    if team is not None and len(team) > 64:
        raise ValueError("A team name is at most 64 characters; choose a shorter one.")
    if account.team == team:
        return
    old = account.team
    account.team = team
    audit.record(session, actor=actor, action="set_team", account=name, old=old, new=team, reason=_reason(reason))


def set_email(session: Session, *, actor: Actor, name: str, email: str | None) -> None:
    """Set the e-mail address by which single sign-on matches this account (``None``: no SSO)."""
    _require_admin(actor)
    account = _account(session, name)
    email = (email or "").strip().lower() or None
    if email is not None:
        if len(email) > 254 or not _EMAIL.match(email):
            raise ValueError(f"{email!r} is not an e-mail address; write it like name@clinic.org.")
        other = session.scalar(select(Account.name).where(func.lower(Account.email) == email,
                                                           Account.id != account.id))
        if other is not None:
            raise ValueError(f"The e-mail address {email} already belongs to the account {other}; "
                             f"each address can log in to one account only.")
    if account.email == email:
        return
    old = account.email
    account.email = email
    # a new address is a new identity to vouch for it: the next single sign-on binds again
    unbound = account.sso_subject is not None
    account.sso_issuer = account.sso_subject = None
    detail: dict[str, Any] = {"sso_unbound": True} if unbound else {}
    audit.record(session, actor=actor, action="set_email", account=name, old=old, new=email, **detail)


def reset_password(session: Session, *, actor: Actor, name: str, password: str) -> None:
    """Give account ``name`` a new password and log it out everywhere.

    The password must meet the policy (``db.auth.check_password_policy``: length, not common,
    not the demo password outside the demo clinic); only the fact of the reset is audited, never
    the password or its hash.
    """
    from db.queries import is_demo

    _require_admin(actor)
    account = _account(session, name)
    account.password_hash = hash_password(password, demo=is_demo(session))
    account.session_epoch = (account.session_epoch or 0) + 1
    revoke_account_sessions(session, account_id=account.id, reason="password reset")
    audit.record(session, actor=actor, action="reset_password", account=name)


def move_patients(session: Session, *, actor: Actor, codes: list[str], therapist: str,
                  reason: str | None = None) -> int:
    """Put the patients ``codes`` on ``therapist``'s caseload; all or nothing.

    Returns the number of patients that changed caseload (one ``assign`` audit row each, with the
    old and the new therapist). Unknown codes and a therapist account that is not an active
    therapist are refused before anything changes.
    """
    _require_admin(actor)
    codes = list(dict.fromkeys(c.strip() for c in codes if c and c.strip()))
    if not codes:
        raise ValueError("Choose at least one patient to move.")
    target = _account(session, therapist)
    if target.role != "therapist" or not target.active:
        raise ValueError(f"{therapist} is not an active therapist account; patients can only be put on an "
                         f"active therapist's caseload.")
    patients = session.scalars(select(Patient).where(Patient.code.in_(codes))).all()
    missing = sorted(set(codes) - {p.code for p in patients})
    if missing:
        raise ValueError(f"There is no patient {', '.join(missing[:5])}"
                         f"{' …' if len(missing) > 5 else ''}; nothing was moved. Check the codes.")
    names = dict(session.execute(select(Account.id, Account.name)).all())
    moved = 0
    for patient in sorted(patients, key=lambda p: p.code):
        if patient.therapist_id == target.id:
            continue
        old = names.get(patient.therapist_id) if patient.therapist_id else None
        patient.therapist_id = target.id
        audit.record(session, actor=actor, action="assign", patient_code=patient.code, old=old, new=therapist,
                     reason=_reason(reason))
        moved += 1
    session.flush()
    return moved


def account_table(session: Session, *, actor: Actor) -> pd.DataFrame:
    """Every account with its role, team, state, caseload size and last login (admins only).

    Columns: ``name, display_name, email, role, team, active, has_password, sso_linked, patients,
    last_login`` (``sso_linked``: a single sign-on identity is bound to the account, ``db.auth``).
    """
    _require_admin(actor)
    caseload = (select(Patient.therapist_id, func.count().label("n")).group_by(Patient.therapist_id).subquery())
    last_login = (select(AuditEvent.actor, func.max(AuditEvent.at).label("at"))
                  .where(AuditEvent.action == "login").group_by(AuditEvent.actor).subquery())
    stmt = (select(Account.name, Account.display_name, Account.email, Account.role, Account.team, Account.active,
                   Account.password_hash.is_not(None), Account.sso_subject.is_not(None),
                   func.coalesce(caseload.c.n, 0), last_login.c.at)
            .outerjoin(caseload, caseload.c.therapist_id == Account.id)
            .outerjoin(last_login, last_login.c.actor == Account.name)
            .order_by(Account.role, Account.name))
    cols = ["name", "display_name", "email", "role", "team", "active", "has_password", "sso_linked", "patients",
            "last_login"]
    frame = pd.DataFrame(session.execute(stmt).all(), columns=cols)
    frame["active"] = frame["active"].astype(bool)
    frame["has_password"] = frame["has_password"].astype(bool)
    frame["sso_linked"] = frame["sso_linked"].astype(bool)
    frame["patients"] = frame["patients"].astype("int64")
    frame["last_login"] = pd.to_datetime(frame["last_login"], utc=True)
    return frame


def audit_trail(session: Session, *, actor: Actor, since: dt.date | None = None, until: dt.date | None = None,
                who: str | None = None, action: str | None = None, patient_code: str | None = None,
                limit: int = 1000) -> pd.DataFrame:
    """The audit trail, newest first, filtered (admins only).

    ``since``/``until`` are UTC dates (inclusive); ``who``, ``action`` and ``patient_code`` match
    exactly (``patient_code`` also finds the ``view_caseload_list`` rows that listed the patient);
    at most ``limit`` rows.
    """
    _require_admin(actor)
    stmt = select(AuditEvent.id, AuditEvent.at, AuditEvent.actor, AuditEvent.action, AuditEvent.patient_code,
                  AuditEvent.detail).order_by(AuditEvent.id.desc()).limit(max(1, min(int(limit), 100_000)))
    if since is not None:
        stmt = stmt.where(AuditEvent.at >= dt.datetime.combine(since, dt.time(), dt.UTC))
    if until is not None:
        stmt = stmt.where(AuditEvent.at < dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), dt.UTC))
    if who:
        stmt = stmt.where(AuditEvent.actor == who.strip())
    if action:
        stmt = stmt.where(AuditEvent.action == action)
    if patient_code:  # the patient's own rows, and the list views (My patients) that showed them
        code = patient_code.strip()
        stmt = stmt.where(or_(AuditEvent.patient_code == code,
                              and_(AuditEvent.action == "view_caseload_list",
                                   AuditEvent.detail.contains(json.dumps(code), autoescape=True))))
    frame = pd.DataFrame(session.execute(stmt).all(), columns=AUDIT_COLUMNS)
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame


def audit_actions(session: Session, *, actor: Actor) -> list[str]:
    """The distinct actions in the trail (for a filter menu; admins only)."""
    _require_admin(actor)
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))
