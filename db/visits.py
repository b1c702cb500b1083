"""When each account last opened a page, for "new since your last visit" (table ``page_visits``).

A visit is not patient data and does not move the data-revision counter (no cached page result
depends on it). The pages read the previous visit once per browser session and page and record
the new one at once, so the reference point stays put while the user filters and reruns.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.access import Actor
from db.models import PageVisit, utcnow

PAGES = ("my_patients", "caseload")


def last_visit(session: Session, *, actor: Actor, page: str) -> dt.datetime | None:
    """When ``actor`` last opened ``page`` (UTC), or ``None`` for a first visit."""
    at = session.scalar(select(PageVisit.at).where(PageVisit.account_id == actor.id, PageVisit.page == page))
    if at is not None and at.tzinfo is None:  # SQLite keeps no zone; every stored time is UTC
        at = at.replace(tzinfo=dt.UTC)
    return at


def record_visit(session: Session, *, actor: Actor, page: str, at: dt.datetime | None = None) -> dt.datetime | None:
    """Record that ``actor`` opens ``page`` now; returns the previous visit (``None`` for the first)."""
    if page not in PAGES:
        raise ValueError(f"Unknown page {page!r}; visits are kept for {', '.join(PAGES)}.")
    if not actor.id:
        return None  # the command line's system actor has no account to remember visits for
    previous = last_visit(session, actor=actor, page=page)
    row = session.get(PageVisit, (actor.id, page))
    if row is None:
        session.add(PageVisit(account_id=actor.id, page=page, at=at or utcnow()))
    else:
        row.at = at or utcnow()
    session.flush()
    return previous
