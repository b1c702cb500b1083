"""Who may see which patients: default-deny, and the only way to patient data.

Every read function in ``db.queries`` filters through :func:`visible_patients`. The rules:

* an **admin** sees every patient;
* a **supervisor** sees the patients on the caseloads of the active therapists in their own
  team (an account with no team sees no team);
* a **therapist** sees the patients on their own caseload (no caseload: nothing);
* anything else (an unknown role, an inactive account, no account) sees nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

from sqlalchemy import Select, false, select
from sqlalchemy.orm import Session

from db.models import Account, Patient


@dataclass(frozen=True)
class Actor:
    """The logged-in account on whose behalf a function acts."""

    id: int
    name: str
    role: str
    team: str | None = None
    active: bool = True
    session_epoch: int = 0
    #: A fingerprint of the patients this actor may see (see :func:`access_fingerprint`). It is
    #: part of every cache key that contains the actor, so a moved patient, a team change or a
    #: deactivated colleague never lets a cached result outlive the access it was computed under.
    scope: str = ""

    @classmethod
    def from_account(cls, account: Account) -> Actor:
        return cls(id=account.id, name=account.name, role=account.role, team=account.team,
                   active=account.active, session_epoch=account.session_epoch)


#: The actor used by command-line maintenance (init-db, seed-demo, import-scores): the data
#: manager at the console has the clinic's whole database in hand anyway.
SYSTEM = Actor(id=0, name="system", role="admin")


def visible_patients(actor: Actor | None) -> Select[int]:
    """A SELECT of the ``patients.id`` that ``actor`` may see (possibly none)."""
    ids = select(Patient.id)
    if actor is None or not actor.active:
        return ids.where(false())
    if actor.role == "admin":
        return ids
    if actor.role == "therapist":
        return ids.where(Patient.therapist_id == actor.id)
    if actor.role == "supervisor" and actor.team:
        team_therapists = select(Account.id).where(
            Account.team == actor.team, Account.active.is_(True), Account.role == "therapist"
        )
        return ids.where(Patient.therapist_id.in_(team_therapists))
    return ids.where(false())


def may_see_patient(session: Session, *, actor: Actor | None, code: str) -> int | None:
    """The internal id of patient ``code`` when ``actor`` may see it, else ``None``.

    ``None`` both for a patient that does not exist and for one the actor may not see, so
    that callers answer the two alike ("No such patient"). A code no patient can have (empty,
    longer than the column, or holding control characters such as NUL, which PostgreSQL refuses
    outright) is answered the same way without asking the database.
    """
    if not code or len(code) > 32 or not code.isprintable():
        return None
    stmt = select(Patient.id).where(Patient.code == code, Patient.id.in_(visible_patients(actor)))
    return session.scalar(stmt)


def access_fingerprint(session: Session, *, actor: Actor) -> str:
    """A short digest of the ids of the patients ``actor`` may see (changes whenever they change)."""
    ids = session.scalars(visible_patients(actor).order_by(Patient.id)).all()
    digest = hashlib.blake2b(digest_size=12)
    digest.update(",".join(map(str, ids)).encode("ascii"))
    return f"{len(ids)}:{digest.hexdigest()}"


def refresh_actor(session: Session, actor: Actor) -> Actor | None:
    """The actor as the database now has it; ``None`` when deactivated or logged out everywhere.

    The result carries the current role, team and :func:`access_fingerprint`, so the cached
    loaders that take the actor among their arguments recompute after any change of access.
    """
    account = session.get(Account, actor.id)
    if account is None or not account.active or account.session_epoch != actor.session_epoch:
        return None
    fresh = Actor.from_account(account)
    return replace(fresh, scope=access_fingerprint(session, actor=fresh))
