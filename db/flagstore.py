"""Flags as the clinic's one stored record (table ``flags``).

Data flows one way (STYLE.md): a write stores the scores *and* the flags that follow from them
in one transaction; every page, the report and the command line read the stored flags.

What is stored, and why it is enough
------------------------------------
A flag for week t depends on that patient's weeks <= t and the frozen rule set alone
(CLINICAL.md, "Prospective"; the reliable-change SDs are frozen parameters, ``db.parameters``),
so a write recomputes only the patients it touched (:func:`refresh_patients`), and a change of
rule set recomputes everybody once (:func:`refresh_all`). Stored is what the data decide:
``core.flags.compute_flags`` with each patient's "now" at their last stored week. What the
calendar decides is derived at read time from stored per-patient facts (``patients.last_week``,
start date, status, planned weeks), without touching the scores (``core.flag_time``):

* a rupture still ``open`` whose repair window has passed by the calendar reads ``unrepaired``;
* the trailing run of missed questionnaires (after the last stored week up to the current
  treatment week) is added as a ``missed`` row;
* a run of missed weeks inside the course reads as raised on the day its week became due by the
  calendar, when that is earlier than the questionnaire that closed it.

``raised_at`` is when the data that raised a flag arrived: the latest ``entered_at`` among the
patient's scores of weeks <= the flag's week (for a missed run inside the course, of the first
score after it). It is a function of the stored scores, so a recompute gives the same value.

Concurrency: every write locks the one-row ``data_revision`` counter first (``db.engine``), so
two writers of the same patient are serialised and the second recomputes from the first's
committed scores. ``refresh-flags --check`` (:func:`check`) compares stored with fresh.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from operator import itemgetter

import numpy as np
import pandas as pd
from sqlalchemy import Engine, Text, cast, delete, func, select, text
from sqlalchemy.orm import Session, aliased

from core import flag_time
from core.caseload import current_weeks
from core.flags import FLAG_COLUMNS, FlagConfig, compute_flags, empty_flags
from db.access import SYSTEM, Actor, visible_patients
from db.engine import bump_revision, session_factory, transaction
from db.models import Account, Patient, Score, Setting, StoredFlag
from db.notes import PATIENT_LEVEL
from db.parameters import ensure_rule_set, flag_config
from db.queries import date_objects as _date
from db.queries import decode_items, fetch_rows
from db.queries import utc_times as _utc

#: Setting that names the rule-set version every stored flag was computed under.
COMPUTED_FOR = "flags_rules_version"
#: Columns stored beside the ``core.flags`` ones.
STORED_EXTRA = ["administered_on", "rules_version", "raised_at"]
_STORED_FLAG_COLUMNS = [c for c in FLAG_COLUMNS if c != "therapist_id"]
_CHUNK = 500


# --------------------------------------------------------------------------- reading scores
def scores_for_flags(session: Session, *, patient_ids: list[int] | None = None) -> pd.DataFrame:
    """The scores (with items and arrival times) of ``patient_ids`` (all when ``None``).

    Internal to the write path, no access check: the caller is a write that already holds the
    patients. Columns: the core contract without ``therapist_id`` (``patient_id`` = code,
    ``instrument, week, score``, ``administered_on``, ``item_1 …``) plus ``_pid`` (internal id)
    and ``entered_at`` (UTC).
    """
    # no therapist: stored flags carry none (it is read from the patient), so the join is saved
    stmt = (select(Patient.id, Patient.code, Score.instrument, Score.week, Score.total,
                   Score.administered_on, Score.entered_at, cast(Score.items, Text))
            .join(Patient, Score.patient_id == Patient.id))
    cols = ["_pid", "patient_id", "instrument", "week", "score", "administered_on", "entered_at", "items"]
    if patient_ids is None:
        rows = fetch_rows(session, stmt)
    else:
        rows = []
        for start in range(0, len(patient_ids), _CHUNK):
            rows += fetch_rows(session, stmt.where(Score.patient_id.in_(patient_ids[start:start + _CHUNK])))
    # entered_at apart: pandas converts timezone-aware datetime objects (what psycopg returns)
    # one by one, ~2 s for a million rows; a write stamps all its rows with one time, so each
    # distinct value is converted once and spread back (the same values and dtype).
    at = cols.index("entered_at")
    others = [i for i in range(len(cols)) if i != at]
    frame = pd.DataFrame.from_records(list(map(itemgetter(*others), rows)),
                                      columns=[c for c in cols if c != "entered_at"])
    codes, distinct = pd.factorize(np.fromiter(map(itemgetter(at), rows), dtype=object, count=len(rows)),
                                   use_na_sentinel=False)
    stamps = _utc(pd.Series(distinct, dtype=object)).array
    frame.insert(cols.index("entered_at"), "entered_at", stamps.take(codes) if len(frame) else stamps)
    frame["week"] = frame["week"].astype("int64")
    frame["score"] = frame["score"].astype("float64")
    frame["administered_on"] = _date(frame["administered_on"])
    matrix = decode_items(frame.pop("items"))
    items = pd.DataFrame(matrix, columns=[f"item_{n + 1}" for n in range(matrix.shape[1])], index=frame.index)
    return pd.concat([frame, items], axis=1)


# --------------------------------------------------------------------------- computing
def _raised_at(flags: pd.DataFrame, scores: pd.DataFrame) -> pd.Series:
    """When the data that raised each flag arrived (see the module docstring)."""
    arrived = (scores.groupby(["patient_id", "week"], sort=True)["entered_at"].max()
               .groupby(level=0).cummax().rename("arrived").reset_index())
    arrived["week"] = arrived["week"].astype("int64")
    key = flags[["patient_id", "week", "kind"]].reset_index().astype({"week": "int64"})
    key["patient_id"] = key["patient_id"].astype(object)
    arrived["patient_id"] = arrived["patient_id"].astype(object)
    key = key.sort_values("week", kind="stable")
    arrived = arrived.sort_values("week", kind="stable")
    back = pd.merge_asof(key, arrived, on="week", by="patient_id", direction="backward")
    fwd = pd.merge_asof(key, arrived, on="week", by="patient_id", direction="forward", allow_exact_matches=False)
    out = back.set_index("index")["arrived"].where(key.set_index("index")["kind"] != "missed",
                                                   fwd.set_index("index")["arrived"])
    out = out.fillna(back.set_index("index")["arrived"])
    return out.reindex(flags.index)


def compute_stored(scores: pd.DataFrame, *, config: FlagConfig, rules_version: int) -> pd.DataFrame:
    """The stored form of the flags of ``scores`` (every patient's "now" at their last stored week).

    The ``core.flags`` columns plus ``administered_on`` (of the flag's week), ``rules_version``
    and ``raised_at``. Pure: the same scores and rule set give the same frame.
    """
    if scores.empty:
        out = empty_flags()
        return out.assign(administered_on=pd.Series(dtype=object), rules_version=pd.Series(dtype="int64"),
                          raised_at=pd.Series(pd.DatetimeIndex([], tz="UTC")))
    core_cols = [c for c in scores.columns if c not in ("_pid", "entered_at")]
    flags = compute_flags(scores[core_cols], config=config)
    dates = scores[["patient_id", "instrument", "week", "administered_on"]].drop_duplicates(
        ["patient_id", "instrument", "week"])
    flags = flags.merge(dates.astype({"patient_id": "string", "instrument": "string"}),
                        on=["patient_id", "instrument", "week"], how="left")
    flags["administered_on"] = flags["administered_on"].astype(object).where(flags["administered_on"].notna(), None)
    flags["rules_version"] = np.int64(rules_version)
    flags["raised_at"] = _raised_at(flags, scores)
    return flags


def _records(flags: pd.DataFrame, pids: dict[str, int]) -> tuple[list[str], list[tuple]]:
    """Column names and one tuple per flag, ``None`` for missing values (built column by column)."""
    frame = flags[_STORED_FLAG_COLUMNS + STORED_EXTRA]
    columns = list(frame.columns)
    values = []
    for c in columns:
        col = frame[c]
        if c == "patient_id":
            values.append(col.map(pids).astype("int64").tolist())
            continue
        if c == "instrument":
            col = col.fillna(PATIENT_LEVEL)
        if c == "raised_at":
            out = list(col.dt.to_pydatetime())
        else:
            out = col.astype(object).tolist()
        known = col.notna().to_numpy()
        values.append([v if k else None for v, k in zip(out, known, strict=True)])
    return columns, list(zip(*values, strict=True))


def _write(session: Session, flags: pd.DataFrame, pids: dict[str, int]) -> None:
    """Insert the flags through the driver (PostgreSQL ``COPY``, SQLite ``executemany``), in the
    caller's transaction, with values stored exactly as the columns' SQLAlchemy types store them."""
    columns, records = _records(flags, pids)
    if not records:
        return
    table = StoredFlag.__table__
    dialect = session.get_bind().dialect
    names = ", ".join(dialect.identifier_preparer.quote(c) for c in columns)  # "drop" is a keyword
    cursor = session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if dialect.name == "postgresql":
            with cursor.copy(f"COPY flags ({names}) FROM STDIN") as copy:
                for r in records:
                    copy.write_row(r)
            return
        procs = [table.c[c].type.bind_processor(dialect) for c in columns]
        caches: list[dict] = [{} for _ in columns]

        def convert(j: int, v):  # type: ignore[no-untyped-def]
            if v is None or procs[j] is None:
                return v
            cache = caches[j]
            if v not in cache:
                cache[v] = procs[j](v)
            return cache[v]

        rows = [tuple(convert(j, v) for j, v in enumerate(r)) for r in records]
        cursor.executemany(f"INSERT INTO flags ({names}) VALUES ({', '.join('?' * len(columns))})",
                           rows)
    finally:
        cursor.close()


def _set_facts(session: Session, patient_ids: list[int] | None = None) -> None:
    """The stored per-patient facts (last stored week, number of stored weeks) of ``patient_ids``
    (every patient when ``None``), from the scores, in one statement per chunk."""
    stmt = ("UPDATE patients SET last_week = (SELECT max(week) FROM scores WHERE scores.patient_id = patients.id), "
            "weeks_stored = (SELECT count(DISTINCT week) FROM scores WHERE scores.patient_id = patients.id)")
    if patient_ids is None:
        session.execute(text(stmt))
        return
    for start in range(0, len(patient_ids), _CHUNK):
        chunk = patient_ids[start:start + _CHUNK]
        session.execute(text(stmt + " WHERE id IN (" + ", ".join(str(int(p)) for p in chunk) + ")"))


def refresh_patients(session: Session, patient_ids: Iterable[int]) -> int:
    """Recompute and store the flags of these patients (internal ids), in the caller's transaction.

    Every write path calls it with the patients it touched, after writing their scores.
    Returns how many flags are stored for them now.
    """
    ids = sorted({int(p) for p in patient_ids})
    if not ids:
        return 0
    bump_revision(session)
    rule_set = ensure_rule_set(session)
    scores = scores_for_flags(session, patient_ids=ids)
    flags = compute_stored(scores, config=flag_config(rule_set), rules_version=rule_set.version)
    for start in range(0, len(ids), _CHUNK):
        session.execute(delete(StoredFlag).where(StoredFlag.patient_id.in_(ids[start:start + _CHUNK]))
                        .execution_options(synchronize_session=False))
    pids = dict(zip(scores["patient_id"], scores["_pid"], strict=True))
    _write(session, flags, pids)
    _set_facts(session, ids)
    return len(flags)


def refresh_all(session: Session) -> int:
    """Recompute every stored flag under the current rule set (after a change of rule set, a
    restore, or an upgrade); in the caller's transaction. Returns how many flags are stored."""
    bump_revision(session)
    rule_set = ensure_rule_set(session)
    scores = scores_for_flags(session)
    flags = compute_stored(scores, config=flag_config(rule_set), rules_version=rule_set.version)
    session.execute(delete(StoredFlag).execution_options(synchronize_session=False))
    pids = dict(zip(scores["patient_id"], scores["_pid"], strict=True))
    _write(session, flags, pids)
    _set_facts(session)
    row = session.get(Setting, COMPUTED_FOR)
    if row is None:
        session.add(Setting(key=COMPUTED_FOR, value=str(rule_set.version)))
    else:
        row.value = str(rule_set.version)
    session.flush()
    return len(flags)


def is_current(session: Session) -> bool:
    """True when the stored flags were computed under the current rule set (reads only)."""
    from db.parameters import current_rule_set

    rule_set = current_rule_set(session)
    stored = session.scalar(select(Setting.value).where(Setting.key == COMPUTED_FOR))
    return rule_set is not None and stored == str(rule_set.version)


def ensure_current(engine: Engine) -> bool:
    """Compute every flag once when they are not stored for the current rule set (first start
    after the upgrade that introduced stored flags, or a new database). Returns True when it
    stored any flag.

    Several app processes may start at once: the check is read-only, and the recompute takes
    the write lock first (the ``data_revision`` row) and checks again under it, so one process
    computes and the others find the work done.
    """
    with session_factory(engine)() as session:
        if is_current(session):
            return False
    with transaction(engine) as session:
        bump_revision(session)  # the write lock first: writers of the flags are serialised
        if is_current(session):
            return False
        return refresh_all(session) > 0


# --------------------------------------------------------------------------- reading flags
def read_stored(session: Session, *, actor: Actor | None, patient_code: str | None = None) -> pd.DataFrame:
    """The stored flags of the patients ``actor`` may see (default-deny, filtered in SQL).

    The ``core.flags.FLAG_COLUMNS`` (``therapist_id`` is the patient's therapist now) plus
    ``administered_on``, ``rules_version`` and ``raised_at``. Data-dependent facts only; see
    :func:`read_flags` for what a user sees.
    """
    therapist = aliased(Account)
    f = StoredFlag.__table__.c
    cols = [Patient.code, therapist.name] + [f[c] for c in _STORED_FLAG_COLUMNS if c != "patient_id"] + \
        [f[c] for c in STORED_EXTRA]
    stmt = (select(*cols).select_from(StoredFlag.__table__)
            .join(Patient, f.patient_id == Patient.id)
            .outerjoin(therapist, Patient.therapist_id == therapist.id)
            .where(f.patient_id.in_(visible_patients(actor))))
    if patient_code is not None:
        stmt = stmt.where(Patient.code == patient_code)
    names = ["patient_id", "therapist_id"] + [c for c in _STORED_FLAG_COLUMNS if c != "patient_id"] + STORED_EXTRA
    frame = pd.DataFrame.from_records(fetch_rows(session, stmt), columns=names)
    frame["instrument"] = frame["instrument"].where(frame["instrument"] != PATIENT_LEVEL, None)
    frame["confirmed"] = _nullable_bool(frame["confirmed"])  # 1/0/NULL on SQLite
    for c, d in FLAG_COLUMNS.items():
        frame[c] = frame[c].astype(d) if d not in ("float64",) else pd.to_numeric(frame[c]).astype("float64")
    frame["administered_on"] = _date(frame["administered_on"])
    frame["rules_version"] = frame["rules_version"].astype("int64")
    frame["raised_at"] = _utc(frame["raised_at"])
    return frame.sort_values(flag_time.SORT, kind="stable", na_position="last", ignore_index=True)


def _nullable_bool(values: pd.Series) -> pd.Series:
    v = values.astype(object)
    known = v.notna().to_numpy()
    out = pd.array([pd.NA] * len(v), dtype="boolean")
    out[known] = v[known].astype(bool).to_numpy()
    return pd.Series(out, index=values.index)


def patient_facts(session: Session, *, actor: Actor | None, patient_code: str | None = None) -> pd.DataFrame:
    """The stored per-patient facts the time-dependent kinds need, for the visible patients."""
    therapist = aliased(Account)
    stmt = (select(Patient.code, therapist.name, Patient.status, Patient.start_date, Patient.planned_weeks,
                   Patient.last_week)
            .outerjoin(therapist, Patient.therapist_id == therapist.id)
            .where(Patient.id.in_(visible_patients(actor))))
    if patient_code is not None:
        stmt = stmt.where(Patient.code == patient_code)
    frame = pd.DataFrame.from_records(fetch_rows(session, stmt), columns=[
        "patient_id", "therapist_id", "status", "start_date", "planned_weeks", "last_week"])
    frame["start_date"] = _date(frame["start_date"])
    return frame


def first_difference(stored: pd.DataFrame, fresh: pd.DataFrame) -> str | None:
    """The first patient (code) whose stored flags differ from ``fresh`` (both stored form), or None."""
    cols = _STORED_FLAG_COLUMNS + STORED_EXTRA
    a = stored[cols].sort_values(flag_time.SORT, kind="stable", na_position="last", ignore_index=True)
    b = fresh[cols].sort_values(flag_time.SORT, kind="stable", na_position="last", ignore_index=True)
    codes = sorted(set(a["patient_id"].dropna()) | set(b["patient_id"].dropna()))
    if len(a) == len(b):
        try:
            pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=False, rtol=1e-9)
            return None
        except AssertionError:
            pass
    for code in codes:  # only reached when something differs: find the first patient
        x = a[a["patient_id"] == code].reset_index(drop=True)
        y = b[b["patient_id"] == code].reset_index(drop=True)
        try:
            pd.testing.assert_frame_equal(x, y, check_dtype=False, check_exact=False, rtol=1e-9)
        except AssertionError:
            return str(code)
    return None


def check(session: Session) -> str | None:
    """``refresh-flags --check``: the first patient whose stored flags differ from a fresh
    computation under the current rule set (``None`` when all agree). Writes nothing."""
    rule_set = ensure_rule_set(session)
    scores = scores_for_flags(session)
    fresh = compute_stored(scores, config=flag_config(rule_set), rules_version=rule_set.version)
    stored = read_stored(session, actor=SYSTEM)
    stored = stored.assign(patient_id=stored["patient_id"].astype("string"))
    diff = first_difference(stored, fresh)
    if diff is not None:
        return diff
    facts = pd.DataFrame(session.execute(select(Patient.code, Patient.last_week)).all(), columns=["code", "last"])
    want = scores.groupby("patient_id")["week"].max()
    stored_last = pd.to_numeric(facts["last"], errors="coerce").fillna(-1).to_numpy()
    fresh_last = facts["code"].map(want).fillna(-1).to_numpy()
    wrong = facts.loc[stored_last != fresh_last, "code"]
    return str(wrong.min()) if len(wrong) else None


def stored_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(StoredFlag)) or 0)


def read_flags_stored(session: Session, *, actor: Actor | None, patient_code: str | None = None,
                      today: dt.date | None = None, config: FlagConfig | None = None) -> pd.DataFrame:
    """What a user sees: stored flags plus the time-dependent kinds derived for ``today``."""
    rule_set = ensure_rule_set(session)
    cfg = config or flag_config(rule_set)
    stored = read_stored(session, actor=actor, patient_code=patient_code)
    facts = patient_facts(session, actor=actor, patient_code=patient_code)
    weeks = current_weeks(facts, today=today or dt.date.today())
    return flag_time.derive(stored, facts, current_week=weeks, config=cfg)
