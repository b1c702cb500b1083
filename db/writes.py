"""Write functions. Callers own the transaction: a failure anywhere rolls back everything.

Imports are all or nothing: :func:`plan_import` compares validated rows with the stored
scores (new, unchanged, conflicting), :func:`apply_import` writes them in the caller's
transaction, and every change is audited (a replaced value keeps its old value in the trail).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Text, cast, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import InstrumentedAttribute, Session, aliased

from core import clock
from core.validation import RowError, ValidationResult
from db import audit, flagstore
from db.access import Actor, visible_patients
from db.auth import hash_password
from db.engine import bump_revision, transaction
from db.models import PATIENT_STATUSES, ROLES, Account, Patient, Score, Setting, utcnow


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
    #: Patients whose rows name another therapist than the one whose caseload they stay on
    #: (columns ``file_row, patient_id, therapist_id, kept_therapist``): an import never moves a
    #: stored patient, and a new patient goes to the first therapist the file names.
    other_therapists: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(
        columns=["file_row", "patient_id", "therapist_id", "kept_therapist"]))
    #: Rows of instruments with a risk item (PHQ-9) that come without item answers, by instrument:
    #: ``{code: (rows, of which the total implies the risk item)}``.
    risk_without_items: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: Patients of the file with no start date stored and no ``administered_on`` in the file: no
    #: treatment calendar, so missed questionnaires cannot be detected for them.
    without_calendar: tuple[str, ...] = ()
    #: Therapist account names of the file that no account has (the import creates them, without a
    #: password), each with the new patients the file would put on that caseload.
    new_accounts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: Patient codes of the file that are not stored (the import creates them).
    new_patients: tuple[str, ...] = ()

    def creation_note(self, *, limit: int = 5) -> str | None:
        """One sentence warning of the accounts (and their new patients) the import would create,
        for the preview and the CLI (a mistyped ``therapist.fridda`` looks like plain new rows
        otherwise), or ``None``."""
        if not self.new_accounts:
            return None
        parts = []
        for name, codes in list(self.new_accounts.items())[:limit]:
            listed = ", ".join(codes[:limit]) + (f" and {len(codes) - limit:,} more" if len(codes) > limit else "")
            parts.append(f"{name} (with {len(codes):,} new patient{'s' if len(codes) != 1 else ''}"
                         + (f": {listed})" if codes else ")"))
        more = f"; and {len(self.new_accounts) - limit:,} more" if len(self.new_accounts) > limit else ""
        n = len(self.new_accounts)
        return (f"This import will create {n:,} new therapist account{'s' if n != 1 else ''} that do"
                f"{'' if n != 1 else 'es'} not exist yet: {'; '.join(parts)}{more}. A new account has no password "
                f"until an admin sets one. If a name is mistyped, correct the file (or create the account first "
                f"with the right name) before importing.")

    def risk_note(self) -> str | None:
        """One sentence about :attr:`risk_without_items` for the preview and the CLI, or ``None``."""
        from core import instruments

        parts = []
        for code, (n, implied) in sorted(self.risk_without_items.items()):
            inst = instruments.get(code)
            items = " and ".join(f"item {i}" for i in inst.risk_items)
            parts.append(f"{n:,} {code} row{'s' if n != 1 else ''} come{'' if n != 1 else 's'} without item "
                         f"answers, so the risk question ({items}) cannot be checked for "
                         f"{'them' if n != 1 else 'it'}" + (f"; {implied:,} of them ha{'ve' if implied != 1 else 's'}"
                                                            f" a total that implies it and will raise a risk alert"
                                                            if implied else ""))
        if not parts:
            return None
        return ("; ".join(parts) + ". Import the item answers (item_1 … item_N columns) to have the risk "
                "question checked every week.")

    def calendar_note(self, *, limit: int = 5) -> str | None:
        """One sentence about :attr:`without_calendar` for the preview and the CLI, or ``None``."""
        n = len(self.without_calendar)
        if not n:
            return None
        shown = ", ".join(self.without_calendar[:limit]) + (f" and {n - limit:,} more" if n > limit else "")
        return (f"{n:,} patient{'s have' if n != 1 else ' has'} no treatment calendar ({shown}): the file has no "
                f"administered_on dates for {'them' if n != 1 else 'it'} and no start date is stored, so missed "
                f"questionnaires cannot be detected for {'them' if n != 1 else 'it'}. Add administered_on dates, "
                f"or set the start date on the admin page (Patients) or with manage.py set-patient CODE "
                f"--start-date YYYY-MM-DD.")

    def therapist_note(self, *, limit: int = 5) -> str | None:
        """One sentence about :attr:`other_therapists` for the preview and the CLI, or ``None``."""
        diff = self.other_therapists
        if diff.empty:
            return None
        n = diff["patient_id"].nunique()
        shown = "; ".join(f"{r.patient_id} (row {int(r.file_row)}: file {r.therapist_id}, stays with "
                          f"{r.kept_therapist})" for r in diff.head(limit).itertuples(index=False))
        more = f"; and {len(diff) - limit:,} more" if len(diff) > limit else ""
        return (f"{n:,} patient{'s' if n != 1 else ''} stay{'' if n != 1 else 's'} on the caseload "
                f"{'they are' if n != 1 else 'it is'} on, not that of the therapist the file names: {shown}{more}. "
                f"The scores are imported all the same; if the file is right, move the patients on the admin "
                f"page (Move patients) or with manage.py assign.")


#: Rows per INSERT batch (and per COPY flush on PostgreSQL).
BATCH_ROWS = int(os.environ.get("ALLIANCE_IMPORT_BATCH_ROWS", "50000"))


def _items_lists(frame: pd.DataFrame, item_cols: list[str]) -> pd.Series:
    """Item responses of each row as a list of ints (item 1 first), ``None`` without items.

    Vectorised: rows are grouped by the position of their last given item and each group is
    converted with one ``ndarray.tolist``.
    """
    out = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    if not item_cols or frame.empty:
        return out
    matrix = frame[item_cols].to_numpy(dtype="float64", na_value=np.nan)
    given = ~np.isnan(matrix)
    width = np.where(given.any(axis=1), matrix.shape[1] - np.argmax(given[:, ::-1], axis=1), 0)
    for n in np.unique(width[width > 0]):
        rows = np.flatnonzero(width == n)
        block = np.nan_to_num(matrix[rows, :n], nan=0).astype("int64").tolist()
        out.iloc[rows] = pd.Series(block, dtype=object).to_numpy()
    return out


def _stored_scores(session: Session, codes: list[str]) -> pd.DataFrame:
    """Stored totals and items of the patients ``codes`` (all stored scores when that is cheaper)."""
    cols = ["patient_id", "instrument", "week", "stored_total", "stored_items"]
    # Items as their stored JSON text (no per-row decoding); decoded only for conflicts.
    stmt = select(Patient.code, Score.instrument, Score.week, Score.total, cast(Score.items, Text)).join(
        Patient, Score.patient_id == Patient.id)
    if len(codes) > 2000:
        # Many patients: read every stored score through the driver (no per-row Row objects).
        cursor = session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(str(stmt.compile(dialect=session.get_bind().dialect)))
        frame = pd.DataFrame.from_records(cursor.fetchall(), columns=cols)
        cursor.close()
        return frame[frame["patient_id"].isin(codes)]
    rows: list[object] = []
    for start in range(0, len(codes), 500):
        rows += session.execute(stmt.where(Patient.code.in_(codes[start:start + 500]))).all()
    return pd.DataFrame(rows, columns=cols)


def _other_therapists(session: Session, frame: pd.DataFrame) -> pd.DataFrame:
    """Rows whose therapist differs from the caseload the patient stays on (see ImportPlan)."""
    pairs = frame.drop_duplicates(["patient_id", "therapist_id"])[["file_row", "patient_id", "therapist_id"]]
    cols = ["file_row", "patient_id", "therapist_id", "kept_therapist"]
    if pairs.empty:
        return pd.DataFrame(columns=cols)
    codes = pairs["patient_id"].unique().tolist()
    therapist = aliased(Account)
    stmt = select(Patient.code, therapist.name).outerjoin(therapist, Patient.therapist_id == therapist.id)
    if len(codes) > 2000:  # many patients: one read of every patient is cheaper than many IN lists
        found = session.execute(stmt).all()
    else:
        found = [r for start in range(0, len(codes), 500)
                 for r in session.execute(stmt.where(Patient.code.in_(codes[start:start + 500]))).all()]
    stored = pd.Series({code: name for code, name in found}, dtype=object)
    first_named = pairs.drop_duplicates("patient_id").set_index("patient_id")["therapist_id"]
    code = pairs["patient_id"]
    kept = code.map(stored).where(code.isin(stored.index), code.map(first_named)).fillna("(no therapist)")
    diff = pairs.assign(kept_therapist=kept.astype(str))
    return diff[diff["therapist_id"] != diff["kept_therapist"]][cols].reset_index(drop=True)


def plan_import(session: Session, *, actor: Actor, scores: pd.DataFrame, first_row: int = 2,
                unit: str = "row") -> ImportPlan:
    """Compare validated rows (core contract) with what is stored; admins only (``actor``).

    Planning reads the stored scores of every patient in the file, whoever's caseload they are
    on, so it is an admin's action like the import itself: any other actor gets
    :class:`PermissionDenied` before anything is read.

    A row is ``new`` (nothing stored for that patient, instrument and week), ``unchanged``
    (the same total is stored, and the same items when the row gives items) or ``conflict``
    (another value is stored). Vectorised: one merge, no loop over rows; a million rows plan
    in a few seconds.
    """
    _require_admin(actor)
    frame = scores.copy()
    frame.attrs = {}
    numbers = scores.attrs.get("file_rows")
    frame["file_row"] = (np.asarray(numbers, dtype="int64") if numbers is not None and len(numbers) == len(frame)
                         else np.arange(len(frame)) + first_row)
    item_cols = sorted((c for c in frame.columns if c.startswith("item_")), key=lambda c: int(c[5:]))
    frame["items_list"] = _items_lists(frame, item_cols)
    codes = frame["patient_id"].unique().tolist()
    stored = _stored_scores(session, codes)
    stored["week"] = stored["week"].astype("int64")
    merged = frame.merge(stored, on=["patient_id", "instrument", "week"], how="left", sort=False)
    has_stored = merged["stored_total"].notna().to_numpy()
    same_total = has_stored & (merged["stored_total"].astype("float64") - merged["score"]).abs().lt(1e-9).to_numpy()
    no_items = merged["items_list"].isna().to_numpy()
    if no_items.all():
        same_items = np.ones(len(merged), dtype=bool)
    else:  # json.dumps of a list of ints is its str(): compare the texts
        as_text = np.array([str(v) if v else "null" for v in merged["items_list"].to_numpy()], dtype=object)
        stored_text = merged["stored_items"].astype(object).where(merged["stored_items"].notna(), "null")
        same_items = no_items | (as_text == stored_text.to_numpy(dtype=object))
    change = np.where(~has_stored, "new", np.where(same_total & same_items, "unchanged", "conflict"))
    merged["change"] = change
    conflict_rows = change == "conflict"
    if conflict_rows.any():  # decode the stored items of conflicts only (they go to the audit trail)
        decoded = merged["stored_items"].astype(object).to_numpy(copy=True)
        for k in np.flatnonzero(conflict_rows):
            decoded[k] = json.loads(decoded[k]) if isinstance(decoded[k], str) else None
        merged["stored_items"] = pd.Series(decoded, index=merged.index, dtype=object)
    conflicts = merged[merged["change"] == "conflict"]
    errors = tuple(RowError(int(r), "score", f"patient {p} already has another {i} score stored for week {w}; "
                                             f"import with replace to overwrite it (the old value is kept "
                                             f"in the audit trail).", unit)
                   for r, p, i, w in zip(conflicts["file_row"], conflicts["patient_id"],
                                         conflicts["instrument"], conflicts["week"], strict=True))
    return ImportPlan(rows=merged, new=int((change == "new").sum()),
                      unchanged=int((change == "unchanged").sum()),
                      conflicts=int((change == "conflict").sum()), errors=errors,
                      other_therapists=_other_therapists(session, frame),
                      risk_without_items=_risk_without_items(frame),
                      without_calendar=_without_calendar(session, frame),
                      **_new_people(session, frame))


def _existing(session: Session, column: InstrumentedAttribute[str], values: list[str]) -> set[str]:
    """The ``values`` that ``column`` (``Account.name`` or ``Patient.code``) holds (chunks of 500)."""
    found: set[str] = set()
    for start in range(0, len(values), 500):
        found.update(session.scalars(select(column).where(column.in_(values[start:start + 500]))).all())
    return found


class _NewPeople(TypedDict):
    new_accounts: dict[str, tuple[str, ...]]
    new_patients: tuple[str, ...]


def _new_people(session: Session, frame: pd.DataFrame) -> _NewPeople:
    """``new_accounts`` and ``new_patients`` of :class:`ImportPlan` for the file's rows."""
    codes = frame["patient_id"].astype(str).unique().tolist()
    new_codes = sorted(set(codes) - _existing(session, Patient.code, codes))
    names = frame["therapist_id"].astype(str).unique().tolist()
    new_names = sorted(set(names) - _existing(session, Account.name, names))
    if not new_names:
        return {"new_accounts": {}, "new_patients": tuple(new_codes)}
    # a new patient goes on the first therapist the file names for it
    first = frame.drop_duplicates("patient_id")
    first = first[first["patient_id"].isin(new_codes) & first["therapist_id"].isin(new_names)]
    by_name = first.groupby("therapist_id")["patient_id"].agg(lambda c: tuple(sorted(c.astype(str))))
    return {"new_accounts": {n: by_name.get(n, ()) for n in new_names}, "new_patients": tuple(new_codes)}


def _risk_without_items(frame: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """``{instrument: (rows without item answers, of which the total implies the risk item)}``."""
    from core import instruments

    out = {}
    for code in frame["instrument"].unique().tolist():  # loop over instruments
        inst = instruments.registry().get(code)
        if inst is None or not inst.risk_items:
            continue
        rows = frame["instrument"].eq(code).to_numpy() & frame["items_list"].isna().to_numpy()
        if rows.any():
            least = frame["score"].to_numpy(dtype="float64")[rows] - inst.others_max
            out[code] = (int(rows.sum()), int((least > 0).sum()))
    return out


def _stored_start_dates(session: Session, codes: list[str]) -> dict[str, dt.date | None]:
    """The stored start date of each known patient of ``codes`` (chunks of 500 codes)."""
    known: dict[str, dt.date | None] = {}
    for start in range(0, len(codes), 500):
        chunk = codes[start:start + 500]
        known.update(session.execute(select(Patient.code, Patient.start_date).where(Patient.code.in_(chunk))).all())
    return known


def _without_calendar(session: Session, frame: pd.DataFrame) -> tuple[str, ...]:
    """Patients of the file with no stored start date and no ``administered_on`` or ``start_date`` in the file."""
    dated: set[str] = set()
    for col in ("administered_on", "start_date"):  # either gives the patient a start date
        if col in frame:
            dated |= set(frame.loc[frame[col].notna(), "patient_id"].unique().tolist())
    undated = sorted(set(frame["patient_id"].unique().tolist()) - dated)
    if not undated:
        return ()
    known = _stored_start_dates(session, undated)
    return tuple(c for c in undated if known.get(c) is None)


def start_dates_from(rows: pd.DataFrame) -> pd.Series:
    """Each patient's treatment start implied by their dated rows: the earliest of
    ``administered_on - 7 * (week - 1)`` (index ``patient_id``; patients without a date left out)."""
    dated = rows[rows["administered_on"].notna()] if "administered_on" in rows else rows.iloc[0:0]
    if dated.empty:
        return pd.Series(dtype=object)
    day = pd.to_datetime(dated["administered_on"]) - pd.to_timedelta(7 * (dated["week"].astype("int64") - 1), unit="D")
    return day.groupby(dated["patient_id"]).min().dt.date


#: The weekly-scores file's calendar columns and the patient fields they set.
_CALENDAR_FIELDS = {"start_date": "start_date", "patient_status": "status", "status_since": "status_since"}


def _apply_calendars(session: Session, *, actor: Actor, rows: pd.DataFrame) -> int:
    """Set what the file's ``start_date``, ``patient_status`` and ``status_since`` columns give
    (one value per patient, checked by the validator); returns how many patients changed.

    Read and compared in bulk (chunks of 500 codes), written with one executemany; one
    ``patient_details`` audit row per changed patient, as ``set_patient_calendar`` writes. A
    status change without ``status_since`` is dated today.
    """
    cols = [c for c in _CALENDAR_FIELDS if c in rows.columns]
    if not cols:
        return 0
    given = rows[["patient_id", *cols]].groupby("patient_id", sort=True)[cols].first().dropna(how="all")
    if given.empty:
        return 0
    codes = given.index.tolist()
    stored: list[tuple] = []
    for start in range(0, len(codes), 500):
        stored += session.execute(select(Patient.id, Patient.code, Patient.start_date, Patient.status,
                                         Patient.status_since).where(Patient.code.in_(codes[start:start + 500]))).all()
    old = pd.DataFrame(stored, columns=["id", "patient_id", "start_date", "status", "status_since"]).set_index(
        "patient_id").reindex(given.index)
    new = old.copy()
    for col in cols:
        value = given[col]
        new[_CALENDAR_FIELDS[col]] = value.where(value.notna(), old[_CALENDAR_FIELDS[col]])
    moved = new["status"].ne(old["status"]) & ("status_since" not in cols or given["status_since"].isna())
    new.loc[moved, "status_since"] = clock.today()
    fields = ["start_date", "status", "status_since"]
    differs = pd.concat([~((new[f] == old[f]) | (new[f].isna() & old[f].isna())) for f in fields], axis=1)
    differs.columns = fields
    changed = differs.any(axis=1)
    if not changed.any():
        return 0
    todo = new[changed]
    session.execute(update(Patient), [{"id": int(r.id), "start_date": r.start_date, "status": r.status,
                                       "status_since": r.status_since} for r in todo.itertuples()])
    for code in todo.index:  # one audit row per changed patient (as a replaced score gets one)
        detail: dict[str, Any] = {f: {"old": old.at[code, f], "new": new.at[code, f]} for f in fields
                                  if differs.at[code, f]}
        audit.record(session, actor=actor, action="patient_details", patient_code=code, reason="import", **detail)
    return int(changed.sum())


def _fill_start_dates(session: Session, rows: pd.DataFrame, patient_ids: dict[str, int]) -> int:
    """Give patients without a stored start date the one their dated rows imply; returns how many."""
    implied = start_dates_from(rows)
    if implied.empty:
        return 0
    stored = _stored_start_dates(session, implied.index.tolist())
    todo = [(patient_ids[c], d) for c, d in implied.items() if c in patient_ids and stored.get(c) is None]
    for start in range(0, len(todo), 500):
        chunk = todo[start:start + 500]
        session.execute(update(Patient), [{"id": pid, "start_date": day} for pid, day in chunk])
    return len(todo)


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
        now = utcnow()
        session.execute(insert(Patient), [
            {"code": p, "therapist_id": therapist_ids[t], "status": "active", "created_at": now}
            for p, t in zip(new["patient_id"], new["therapist_id"], strict=True)])
        for start in range(0, len(codes), 500):
            chunk = codes[start:start + 500]
            existing.update(session.execute(select(Patient.code, Patient.id)
                                            .where(Patient.code.in_(chunk))).all())
    return existing


def _insert_new(session: Session, new: pd.DataFrame, patient_ids: dict[str, int], *, source: str,
                entered_by: int | None, now: dt.datetime) -> None:
    """Insert new scores in batches (PostgreSQL: ``COPY``), all in the caller's transaction."""
    bump_revision(session)  # COPY and the driver's executemany go around the session events
    pid = new["patient_id"].map(patient_ids).astype("int64").to_numpy()
    weeks = new["week"].astype("int64").to_numpy()
    totals = new["score"].astype("float64").to_numpy()
    dates = new["administered_on"].astype(object).where(new["administered_on"].notna(), None).to_numpy()
    items = new["items_list"].to_numpy()
    codes = new["instrument"].astype(str).to_numpy()
    if session.get_bind().dialect.name == "postgresql":
        cursor = session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        copy_sql = ("COPY scores (patient_id, instrument, week, total, items, administered_on, source, "
                    "entered_by, entered_at, version) FROM STDIN")
        for start in range(0, len(new), BATCH_ROWS):
            stop = min(start + BATCH_ROWS, len(new))
            with cursor.copy(copy_sql) as copy:
                for k in range(start, stop):
                    copy.write_row((int(pid[k]), codes[k], int(weeks[k]), float(totals[k]),
                                    json.dumps(items[k]) if items[k] else None, dates[k], source,
                                    entered_by, now, 1))
        return
    # SQLite: the driver's executemany with values stored exactly as SQLAlchemy's column types
    # store them (their bind processors, applied once per distinct value), in the same
    # connection and transaction as the rest of the import.
    dialect = session.get_bind().dialect
    table = Score.__table__

    def processor(column: str) -> Callable[[Any], Any]:
        proc = table.c[column].type.bind_processor(dialect)
        return proc or (lambda v: v)

    stamp = processor("entered_at")(now)
    as_date = processor("administered_on")
    date_text = {d: as_date(d) for d in set(dates.tolist()) if d is not None}
    date_text[None] = None
    null_items = processor("items")(None)
    cursor = session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    cursor.execute("PRAGMA cache_size=-262144")  # up to 256 MB of page cache while the indexes grow
    sql = ("INSERT INTO scores (patient_id, instrument, week, total, items, administered_on, source, "
           "entered_by, entered_at, version) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)")
    pid_list, week_list, total_list = pid.tolist(), weeks.tolist(), totals.tolist()
    for start in range(0, len(new), BATCH_ROWS):
        stop = min(start + BATCH_ROWS, len(new))
        cursor.executemany(sql, [
            (pid_list[k], codes[k], week_list[k], total_list[k],
             json.dumps(items[k]) if items[k] else null_items, date_text[dates[k]], source, entered_by, stamp)
            for k in range(start, stop)])
    cursor.close()


def apply_import(session: Session, *, actor: Actor, plan: ImportPlan, replace: bool = False,
                 source: str = "import", filename: str | None = None) -> dict[str, int]:
    """Write a planned import in the caller's transaction; conflicts need ``replace``.

    Unknown therapists become therapist accounts without a password (an admin sets one with
    ``create-user``); unknown patients are created on that therapist's caseload. New scores
    are inserted in batches of ``BATCH_ROWS`` (PostgreSQL: ``COPY``); a replaced score is
    updated and its old value recorded in the audit trail. Nothing is committed here: the
    caller's transaction makes the import all or nothing. Returns the counts written.
    """
    _require_admin(actor)
    if plan.conflicts and not replace:
        raise ValueError(f"{plan.conflicts} rows conflict with stored scores; nothing was written. "
                         f"Import with replace to overwrite them.")
    rows = plan.rows
    todo = rows[rows["change"] != "unchanged"]
    counts: dict[str, Any] = {"new": plan.new, "unchanged": plan.unchanged, "replaced": 0}  # Any: audit detail
    if todo.empty:
        counts["calendars"] = _apply_calendars(session, actor=actor, rows=rows)
        audit.record(session, actor=actor, action="import", file=filename, **counts)
        return counts
    therapist_ids = _ensure_accounts(session, sorted(todo["therapist_id"].unique().tolist()))
    pairs = todo.drop_duplicates("patient_id")[["patient_id", "therapist_id"]]
    patient_ids = _ensure_patients(session, pairs, therapist_ids)
    now = utcnow()
    entered_by = actor.id if actor.id else None

    new = todo[todo["change"] == "new"]
    if len(new):
        _insert_new(session, new, patient_ids, source=source, entered_by=entered_by, now=now)
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
    counts["calendars"] = _apply_calendars(session, actor=actor, rows=rows)  # the file's own calendar columns
    _fill_start_dates(session, todo, patient_ids)  # the treatment calendar of undated patients
    # the flags of the patients this import touched, in the same transaction (db.flagstore)
    flagstore.refresh_patients(session, [patient_ids[c] for c in pairs["patient_id"]])
    audit.record(session, actor=actor, action="import", file=filename, patients=len(pairs), **counts)
    return counts


def is_fhir(data: bytes, name: str) -> bool:
    """True for FHIR JSON: a name ending ``.json`` or content starting with ``{``."""
    return name.lower().endswith(".json") or data.lstrip(b"\xef\xbb\xbf \r\n\t")[:1] == b"{"


def read_upload(session: Session, *, actor: Actor, data: bytes, name: str,
                max_bytes: int | None = None) -> ValidationResult:
    """Read and validate an uploaded file: weekly-scores CSV or Excel, or FHIR JSON.

    FHIR (a name ending ``.json`` or content starting with ``{``): QuestionnaireResponse
    resources (:func:`core.fhir.read_responses`); an empty therapist is filled with the
    patient's therapist and an empty week from ``authored`` and the patient's start date,
    for patients the actor may see. Every path ends in the one validator.

    Raises
    ------
    ValueError
        When the file cannot be read at all (the message names the row or resource).
    """
    from core import fhir, validation

    limit = validation.MAX_BYTES if max_bytes is None else max_bytes
    if is_fhir(data, name):
        table, structural = fhir.read_responses(data, max_bytes=limit)
        codes = [c for c in table["patient_id"].unique().tolist() if c]
        known = pd.DataFrame(columns=["code", "therapist", "start_date"])
        if codes:
            therapist = aliased(Account)
            stmt = (select(Patient.code, therapist.name, Patient.start_date)
                    .outerjoin(therapist, Patient.therapist_id == therapist.id)
                    .where(Patient.code.in_(codes), Patient.id.in_(visible_patients(actor))))
            known = pd.DataFrame(session.execute(stmt).all(), columns=["code", "therapist", "start_date"])
        by_code = known.set_index("code")
        table = fhir.fill_weeks(table, start_dates=by_code["start_date"])
        stored_therapist = table["patient_id"].map(by_code["therapist"]).astype("string").fillna("")
        table["therapist_id"] = table["therapist_id"].where(table["therapist_id"].ne(""), stored_therapist)
        result = validation.validate_scores(table.drop(columns="authored"), first_row=1, unit="resource")
        if structural:
            errors, count = validation.limit_errors(list(structural) + list(result.errors),
                                                    count=len(structural) + result.n_errors)
            return ValidationResult(result.scores.iloc[0:0], errors, count)
        return result
    raw = validation.read_scores_file(data, name=name, max_bytes=limit)
    return validation.validate_scores(raw)


def create_account(session: Session, *, actor: Actor, name: str, role: str, password: str | None,
                   team: str | None = None, display_name: str | None = None,
                   email: str | None = None) -> Account:
    """Add an account, or give a password and role to one that an import created without them.

    The password must meet ``db.auth.check_password_policy`` (the demo clinic's public password
    only on the demo clinic's database, ``db.queries.is_demo``).
    """
    from db.queries import is_demo

    _require_admin(actor)
    if role not in ROLES:
        raise ValueError(f"The role {role!r} does not exist; use one of {', '.join(ROLES)}.")
    if not name or not name.replace(".", "").replace("_", "").replace("-", "").isalnum() or len(name) > 64:
        raise ValueError("An account name is 1-64 letters, digits, dots, dashes or underscores.")
    hashed = hash_password(password, demo=is_demo(session)) if password is not None else None
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


def set_patient_calendar(session: Session, *, actor: Actor, code: str, start_date: dt.date | None = None,
                         status: str | None = None, status_since: dt.date | None = None,
                         planned_weeks: int | None = None, therapist: str | None = None,
                         reason: str | None = None, create: bool = False) -> dict[str, tuple[object, object]]:
    """Set a patient's treatment calendar (admins only): start date, status (with the day it began),
    planned weeks (0: no planned end), therapist. ``None`` leaves a field as it is. With ``create`` an unknown code is
    added as a new patient (with no scores yet).

    The calendar decides which weeks are expected, so which questionnaires count as missed and when
    a repair window has passed (``core.caseload.current_weeks``). A status change without
    ``status_since`` is dated today. Returns the changed fields as ``{field: (old, new)}``; each
    change is one ``patient_details`` audit row (``create_patient`` for a new patient).
    """
    _require_admin(actor)
    code = (code or "").strip()
    if not code or len(code) > 32 or not code.isprintable():
        raise ValueError("A patient code is 1 to 32 printable characters, such as P00042; check the code.")
    patient = session.scalar(select(Patient).where(Patient.code == code))
    if patient is None and not create:
        raise ValueError(f"There is no patient {code}; check the code, or add the patient first.")
    if status is not None and status not in PATIENT_STATUSES:
        raise ValueError(f"{status!r} is not a patient status; use one of {', '.join(PATIENT_STATUSES)}.")
    if planned_weeks is not None and not 0 <= int(planned_weeks) <= 520:
        raise ValueError("Planned weeks must be a whole number from 1 to 520, or 0 for no planned end.")
    today = clock.today()
    if start_date is not None and start_date > today + dt.timedelta(days=366):
        raise ValueError(f"The start date {start_date:%Y-%m-%d} is more than a year ahead; check the year.")
    account = None
    if therapist is not None:
        account = session.scalar(select(Account).where(Account.name == therapist))
        if account is None or account.role != "therapist" or not account.active:
            raise ValueError(f"{therapist} is not an active therapist account; choose one from the list "
                             "(or add the account first).")
    if patient is None:
        patient = Patient(code=code, status="active")
        session.add(patient)
        session.flush()
        audit.record(session, actor=actor, action="create_patient", patient_code=code, reason=reason or None)
    if status is not None and status != patient.status and status_since is None:
        status_since = today
    start = patient.start_date if start_date is None else start_date
    since = status_since if status_since is not None else patient.status_since
    if start is not None and since is not None and since < start:
        raise ValueError(f"The status cannot begin ({since:%Y-%m-%d}) before the treatment started "
                         f"({start:%Y-%m-%d}); check both dates.")
    wanted = {"start_date": start_date, "status": status, "status_since": status_since,
              "planned_weeks": None if planned_weeks is None else int(planned_weeks),
              "therapist": therapist}
    changed: dict[str, tuple[object, object]] = {}
    for field_name, new in wanted.items():
        if new is None:
            continue
        if field_name == "planned_weeks" and new == 0:  # 0: no planned end
            new = None
        old = (patient.therapist.name if patient.therapist else None) if field_name == "therapist" else \
            getattr(patient, field_name)
        if old == new:
            continue
        changed[field_name] = (old, new)
        if field_name == "therapist":
            patient.therapist_id = account.id  # type: ignore[union-attr]
        else:
            setattr(patient, field_name, new)
    if changed:
        session.flush()
        detail: dict[str, Any] = {k: {"old": o, "new": n} for k, (o, n) in changed.items()}
        audit.record(session, actor=actor, action="patient_details", patient_code=code, reason=reason or None,
                     **detail)
    return changed


def set_setting(session: Session, *, actor: Actor, key: str, value: str) -> None:
    """Set a clinic-wide setting."""
    _require_admin(actor)
    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value))
    else:
        row.value = value
    audit.record(session, actor=actor, action="setting", key=key, value=value)



class ConcurrentWrite(Exception):
    """Another writer kept changing the same scores; nothing of this import was written."""


def _race_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "a concurrent writer got there first": SQLAlchemy's, and the drivers' own
    (the fast insert paths, COPY and executemany on the raw cursor, raise those unwrapped)."""
    import sqlite3

    errors: list[type[BaseException]] = [IntegrityError, OperationalError, sqlite3.IntegrityError,
                                         sqlite3.OperationalError]
    try:
        import psycopg

        errors += [psycopg.IntegrityError, psycopg.OperationalError]
    except ImportError:  # pragma: no cover - psycopg is a pinned dependency
        pass
    return tuple(errors)


def import_retrying(engine: Engine, *, actor: Actor, scores: pd.DataFrame, replace: bool = False,
                    filename: str | None = None, source: str = "import", first_row: int = 2,
                    unit: str = "row", attempts: int = 4) -> ImportPlan:
    """Plan and write an import in one transaction, retried when a concurrent writer got there first.

    Two imports (or an import and a weekly entry) of the same new scores can both plan them as
    new; the database's unique rule lets one commit and makes the other fail with a unique
    violation (or, on PostgreSQL, a deadlock/serialisation error). The import is all or
    nothing, so retrying is safe: the new plan sees the other writer's rows as unchanged or as
    conflicts. Returns the plan that was applied, or, when it has conflicts and ``replace`` is
    off, the plan with nothing written (the caller reports ``plan.errors``).

    Raises
    ------
    ConcurrentWrite
        When every attempt lost a race; nothing was written.
    """
    for attempt in range(1, attempts + 1):
        try:
            with transaction(engine) as session:
                plan = plan_import(session, actor=actor, scores=scores, first_row=first_row, unit=unit)
                if plan.conflicts and not replace:
                    return plan
                apply_import(session, actor=actor, plan=plan, replace=replace, filename=filename, source=source)
                return plan
        except _race_errors() as exc:
            if attempt == attempts:
                raise ConcurrentWrite(
                    f"Other imports or entries kept changing the same scores at the same moment ({attempts} "
                    f"attempts); nothing of {filename or 'this import'} was written. Run it again.") from exc
            time.sleep(random.uniform(0.05, 0.2) * attempt)
    raise ConcurrentWrite("No attempt was made; give attempts of 1 or more.")
