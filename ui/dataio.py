"""Glue for the weekly-entry and import pages: each call is one transaction through ``db``.

Nothing here is cached: entry and import must see the database as it is now (the version
check and the preview depend on it). Access control and validation live in ``db`` and
``core``; this module only opens sessions and shapes results for display.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd
import streamlit as st

from core import instruments
from core.validation import MAX_BYTES, MB, RowError, ValidationResult, more_problems, size_problem
from db import audit
from db.access import Actor
from db.engine import session_factory, transaction
from db.entry import NoSuchPatient, StaleEntry, StoredEntry, read_entry, save_entry
from db.writes import ConcurrentWrite, ImportPlan, import_retrying, is_fhir, plan_import, read_upload
from ui.session import get_engine

MAX_UPLOAD_MB = MAX_BYTES // MB
CHANGE_LABELS = {"new": "new", "unchanged": "unchanged (already stored)", "conflict": "conflict (another value stored)"}


def instrument_choices() -> dict[str, str]:
    """Registry code -> "CODE: name" for the questionnaire selector."""
    return {code: f"{code}: {inst.name}" for code, inst in sorted(instruments.registry().items())}


def load_entry(actor: Actor, code: str, instrument: str, week: int) -> StoredEntry | None | NoSuchPatient:
    """The stored questionnaire, ``None`` when the week is empty, or a :class:`NoSuchPatient`.

    Showing a stored questionnaire is audited (``view_score``) once per browser session and
    questionnaire version, not at every rerun while the user types.
    """
    with session_factory(get_engine())() as session:
        try:
            stored = read_entry(session, actor=actor, code=code, instrument=instrument, week=week)
        except NoSuchPatient as exc:
            return exc
    if stored is not None:
        _audit_score_view(actor, code, instrument, week, stored.version)
    return stored


def _audit_score_view(actor: Actor, code: str, instrument: str, week: int, version: int) -> None:
    key = (code, instrument, week, version)
    seen: set[tuple[str, str, int, int]] = st.session_state.setdefault("audited_score_views", set())
    if key in seen:
        return
    with transaction(get_engine()) as session:
        audit.record(session, actor=actor, action="view_score", patient_code=code, instrument=instrument, week=week,
                     version=version)
    seen.add(key)


def save_weekly_entry(actor: Actor, *, code: str, instrument: str, week: int, items: list[int | None] | None,
                      total: float | None, administered_on: dt.date | None, read_version: int | None,
                      reason: str | None) -> tuple[bool, str, int | None]:
    """Save; returns ``(ok, message, version)``, the message a sentence for the user."""
    try:
        with transaction(get_engine()) as session:
            what, version = save_entry(session, actor=actor, code=code, instrument=instrument, week=week,
                                       items=items, total=total, administered_on=administered_on,
                                       read_version=read_version, reason=reason)
    except (ValueError, StaleEntry, NoSuchPatient) as exc:
        return False, str(exc), None
    words = {"new": "Saved", "changed": "Changed", "unchanged": "Nothing changed: the same values are stored for"}
    return True, f"{words[what]} {instrument} week {week} for patient {code}.", version


@dataclass(frozen=True)
class Preview:
    """What an upload would do, or why it cannot be imported.

    ``errors`` lists the first problems (at most ``core.validation.MAX_REPORTED_ERRORS``);
    ``n_problems`` counts them all and ``more`` says how many are not listed.
    """

    errors: pd.DataFrame
    rows: pd.DataFrame
    new: int = 0
    unchanged: int = 0
    conflicts: int = 0
    n_problems: int = 0
    more: str | None = None
    therapist_note: str | None = None
    #: Risk-instrument rows without item answers (``ImportPlan.risk_note``).
    risk_note: str | None = None
    #: Patients left without a treatment calendar (``ImportPlan.calendar_note``).
    calendar_note: str | None = None
    #: Therapist accounts (and their patients) the import would create (``ImportPlan.creation_note``).
    creation_note: str | None = None

    @property
    def ok(self) -> bool:
        return self.errors.empty


def _error_table(errors: tuple[RowError, ...] | list[RowError]) -> pd.DataFrame:
    return pd.DataFrame([{"where": f"{e.unit} {e.row}" if e.row else "file", "column": e.column,
                          "problem": e.reason} for e in errors], columns=["where", "column", "problem"])


def _refusal(problem: str) -> Preview:
    return Preview(errors=pd.DataFrame([{"where": "file", "column": "-", "problem": problem}]),
                   rows=pd.DataFrame(), n_problems=1)


def _problems(result: ValidationResult) -> Preview:
    return Preview(errors=_error_table(result.errors), rows=pd.DataFrame(), n_problems=result.n_errors,
                   more=more_problems(result))


def _read(session, actor: Actor, name: str, data: bytes) -> ValidationResult | Preview:  # type: ignore[no-untyped-def]
    """The validated upload, or the preview that says why it cannot be imported."""
    if len(data) > MAX_BYTES:
        return _refusal(size_problem(len(data), MAX_BYTES))
    try:
        result = read_upload(session, actor=actor, data=data, name=name)
    except ValueError as exc:
        return _refusal(str(exc))
    return result if result.ok else _problems(result)


def _where(name: str, data: bytes) -> dict[str, object]:
    fhir = is_fhir(data, name)
    return {"first_row": 1 if fhir else 2, "unit": "resource" if fhir else "row"}


def _plan(session, actor: Actor, name: str, data: bytes) -> tuple[Preview, ImportPlan | None]:  # type: ignore[no-untyped-def]
    result = _read(session, actor, name, data)
    if isinstance(result, Preview):
        return result, None
    plan = plan_import(session, actor=actor, scores=result.scores, **_where(name, data))  # type: ignore[arg-type]
    shown = plan.rows[["file_row", "change", "patient_id", "therapist_id", "week", "instrument", "score",
                       "stored_total"]].copy()
    # a conflict shows the stored value beside the file's; other rows leave it blank
    shown["stored_total"] = shown["stored_total"].where(shown["change"].eq("conflict"))
    shown = shown.rename(columns={"stored_total": "stored_score"})
    shown["change"] = shown["change"].map(CHANGE_LABELS)
    order = shown["change"].map({CHANGE_LABELS["conflict"]: 0, CHANGE_LABELS["new"]: 1}).fillna(2)
    shown = shown.assign(_o=order).sort_values(["_o", "file_row"], kind="stable").drop(columns="_o")
    return Preview(errors=_error_table([]), rows=shown.reset_index(drop=True), new=plan.new,
                   unchanged=plan.unchanged, conflicts=plan.conflicts,
                   therapist_note=plan.therapist_note(), risk_note=plan.risk_note(),
                   creation_note=plan.creation_note(),
                   calendar_note=plan.calendar_note()), plan


#: What a non-admin is told when they try to import (the page guard normally stops them first).
ADMINS_ONLY = "Only an admin may import scores; ask your clinic's admin."


def preview_upload(actor: Actor, name: str, data: bytes) -> Preview:
    """Validate and plan an upload without writing anything (the transaction is rolled back);
    admins only (``db.writes.plan_import`` refuses anyone else)."""
    if actor.role != "admin":
        return _refusal(ADMINS_ONLY)
    with session_factory(get_engine())() as session:
        preview, _ = _plan(session, actor, name, data)
        session.rollback()
    return preview


def run_upload(actor: Actor, name: str, data: bytes, *, replace: bool) -> tuple[bool, str]:
    """Import an upload all or nothing; ``(ok, message)``.

    The file is read and validated first; then :func:`db.writes.import_retrying` plans and writes
    it in one transaction, as the command line does, and plans again when a simultaneous import
    or entry of the same scores committed first (the database's unique rule refuses the loser,
    which would otherwise surface as an uncaught ``IntegrityError``).
    """
    if actor.role != "admin":
        return False, ADMINS_ONLY
    engine = get_engine()
    with session_factory(engine)() as session:
        result = _read(session, actor, name, data)
        session.rollback()
    if isinstance(result, Preview):
        return False, (f"The file has {result.n_problems:,} problem{'s' if result.n_problems != 1 else ''}; "
                       f"nothing was written. Fix {'them' if result.n_problems != 1 else 'it'} and upload the "
                       f"file again.")
    source = "fhir" if is_fhir(data, name) else "import"
    try:
        plan = import_retrying(engine, actor=actor, scores=result.scores, replace=replace, filename=name,
                               source=source, **_where(name, data))  # type: ignore[arg-type]
    except ConcurrentWrite as exc:
        return False, str(exc)
    except ValueError as exc:
        return False, str(exc)
    if plan.conflicts and not replace:
        rows = f"{plan.conflicts} rows conflict" if plan.conflicts != 1 else "1 row conflicts"
        return False, (f"{rows} with stored scores; nothing was written. Tick \"Replace conflicting scores\" to "
                       f"overwrite them (the old values stay in the audit trail).")
    replaced = plan.conflicts if replace else 0
    return True, f"Imported {name}: {plan.new} new, {plan.unchanged} unchanged, {replaced} replaced."
