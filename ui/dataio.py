"""Glue for the weekly-entry and import pages: each call is one transaction through ``db``.

Nothing here is cached: entry and import must see the database as it is now (the version
check and the preview depend on it). Access control and validation live in ``db`` and
``core``; this module only opens sessions and shapes results for display.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from core import instruments
from core.validation import MAX_BYTES, RowError
from db.access import Actor
from db.engine import session_factory, transaction
from db.entry import NoSuchPatient, StaleEntry, StoredEntry, read_entry, save_entry
from db.writes import ImportPlan, apply_import, is_fhir, plan_import, read_upload
from ui.session import get_engine

MAX_UPLOAD_MB = MAX_BYTES // (1024 * 1024)
CHANGE_LABELS = {"new": "new", "unchanged": "unchanged (already stored)", "conflict": "conflict (another value stored)"}


def instrument_choices() -> dict[str, str]:
    """Registry code -> "CODE: name" for the questionnaire selector."""
    return {code: f"{code}: {inst.name}" for code, inst in sorted(instruments.registry().items())}


def load_entry(actor: Actor, code: str, instrument: str, week: int) -> StoredEntry | None | NoSuchPatient:
    """The stored questionnaire, ``None`` when the week is empty, or a :class:`NoSuchPatient`."""
    with session_factory(get_engine())() as session:
        try:
            return read_entry(session, actor=actor, code=code, instrument=instrument, week=week)
        except NoSuchPatient as exc:
            return exc


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
    """What an upload would do, or why it cannot be imported."""

    errors: pd.DataFrame
    rows: pd.DataFrame
    new: int = 0
    unchanged: int = 0
    conflicts: int = 0

    @property
    def ok(self) -> bool:
        return self.errors.empty


def _error_table(errors: tuple[RowError, ...] | list[RowError]) -> pd.DataFrame:
    return pd.DataFrame([{"where": f"{e.unit} {e.row}" if e.row else "file", "column": e.column,
                          "problem": e.reason} for e in errors], columns=["where", "column", "problem"])


def _plan(session, actor: Actor, name: str, data: bytes) -> tuple[Preview, ImportPlan | None]:  # type: ignore[no-untyped-def]
    try:
        result = read_upload(session, actor=actor, data=data, name=name)
    except ValueError as exc:
        return Preview(errors=pd.DataFrame([{"where": "file", "column": "-", "problem": str(exc)}]),
                       rows=pd.DataFrame()), None
    if not result.ok:
        return Preview(errors=_error_table(result.errors), rows=pd.DataFrame()), None
    fhir = is_fhir(data, name)
    plan = plan_import(session, scores=result.scores, first_row=1 if fhir else 2, unit="resource" if fhir else "row")
    shown = plan.rows[["file_row", "change", "patient_id", "therapist_id", "week", "instrument", "score"]].copy()
    shown["change"] = shown["change"].map(CHANGE_LABELS)
    order = shown["change"].map({CHANGE_LABELS["conflict"]: 0, CHANGE_LABELS["new"]: 1}).fillna(2)
    shown = shown.assign(_o=order).sort_values(["_o", "file_row"], kind="stable").drop(columns="_o")
    return Preview(errors=_error_table([]), rows=shown.reset_index(drop=True), new=plan.new,
                   unchanged=plan.unchanged, conflicts=plan.conflicts), plan


def preview_upload(actor: Actor, name: str, data: bytes) -> Preview:
    """Validate and plan an upload without writing anything (the transaction is rolled back)."""
    if len(data) > MAX_BYTES:
        return Preview(errors=pd.DataFrame([{"where": "file", "column": "-", "problem":
                                             f"The file is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_MB} MB. "
                                             f"Split it into smaller files."}]), rows=pd.DataFrame())
    with session_factory(get_engine())() as session:
        preview, _ = _plan(session, actor, name, data)
        session.rollback()
    return preview


def run_upload(actor: Actor, name: str, data: bytes, *, replace: bool) -> tuple[bool, str]:
    """Import an upload all or nothing; ``(ok, message)``. Re-plans inside the writing transaction."""
    if actor.role != "admin":
        return False, "Only an admin may import scores; ask your clinic's admin."
    try:
        with transaction(get_engine()) as session:
            preview, plan = _plan(session, actor, name, data)
            if plan is None:
                raise ValueError(f"The file has {len(preview.errors)} problems; nothing was written. Fix them and "
                                 f"upload it again.")
            if plan.conflicts and not replace:
                raise ValueError(f"{plan.conflicts} rows conflict with stored scores; nothing was written. Tick "
                                 f"\"Replace conflicting scores\" to overwrite them (the old values stay in the "
                                 f"audit trail).")
            source = "fhir" if is_fhir(data, name) else "import"
            counts = apply_import(session, actor=actor, plan=plan, replace=replace, source=source, filename=name)
    except ValueError as exc:
        return False, str(exc)
    return True, (f"Imported {name}: {counts['new']} new, {counts['unchanged']} unchanged, {counts['replaced']} "
                  f"replaced.")
