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

Because a patient's flags and summary depend on that patient's rows alone, a clinic-wide
recompute (:func:`refresh_all`) runs on blocks of whole patients in threads
(:func:`compute_all`); :func:`check` computes in one pass, so ``refresh-flags --check`` also
checks that the blocks add up to the whole.

Concurrency: every write locks the one-row ``data_revision`` counter first (``db.engine``), so
two writers of the same patient are serialised and the second recomputes from the first's
committed scores. ``refresh-flags --check`` (:func:`check`) compares stored with fresh.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy import BigInteger, Engine, Integer, Text, cast, delete, func, select, text
from sqlalchemy.orm import Session, aliased

from core import clock, flag_time
from core.caseload import current_weeks
from core.flags import FLAG_COLUMNS, RULES_REVISION, FlagConfig, compute_flags, empty_flags
from db import summaries
from db.access import SYSTEM, Actor, visible_patients
from db.columnar import CHUNK as _CHUNK
from db.columnar import copy_csv, driver_values, insert_columns, per_distinct, score_columns, strings
from db.engine import bump_revision, session_factory, transaction
from db.models import Account, Patient, Setting, StoredFlag
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


# --------------------------------------------------------------------------- reading scores
def scores_for_flags(session: Session, *, patient_ids: list[int] | None = None) -> pd.DataFrame:
    """The scores (with items and arrival times) of ``patient_ids`` (all when ``None``).

    Internal to the write path, no access check: the caller is a write that already holds the
    patients. Columns: the core contract without ``therapist_id`` (``patient_id`` = code,
    ``instrument, week, score``, ``administered_on``, ``item_1 …``) plus ``_pid`` (internal id)
    and ``entered_at`` (UTC).

    Read through the caller's own connection (so a transaction that has just written scores
    sees them), column by column (:func:`db.columnar.score_columns`): ``COPY … TO STDOUT`` parsed by Arrow on
    PostgreSQL, the driver's tuples transposed on SQLite. Patient codes come from the
    ``patients`` table (10,000 rows), not from a join onto every score.
    """
    ids = None if patient_ids is None else [int(p) for p in patient_ids]
    cols = score_columns(session, ids)
    stmt = select(Patient.id, Patient.code)
    if ids is not None:
        stmt = stmt.where(Patient.id.in_(sorted(set(ids))))
    known = fetch_rows(session, stmt)
    pid = cols["_pid"]
    at = pd.Index(np.array([k for k, _ in known], dtype=np.int64)).get_indexer(pid)
    frame = pd.DataFrame({
        "_pid": pid,
        "patient_id": strings(pa.array([c for _, c in known], type=pa.string()).take(pa.array(at))),
        "instrument": strings(cols["instrument"]),
        "week": cols["week"],
        "score": cols["score"],
        "administered_on": per_distinct(cols["administered_on"], _date).astype(object),
        "entered_at": cols["entered_at"],
    })
    matrix = decode_items(pd.Series(cols["items"], dtype=object))
    items = pd.DataFrame(matrix, columns=[f"item_{n + 1}" for n in range(matrix.shape[1])], index=frame.index)
    return pd.concat([frame, items], axis=1)


# --------------------------------------------------------------------------- computing
def _keys(scores: pd.DataFrame, flags: pd.DataFrame, by: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """One int64 key per row of ``scores`` and of ``flags``: ``group * span + week offset``, the
    group numbering the distinct values of ``by`` in ``scores`` (a flag whose ``by`` values no
    score has gets group -1). Sorting keys sorts by group, then week; ``key // span`` is the group."""
    s_group = np.zeros(len(scores), dtype=np.int64)
    f_group = np.zeros(len(flags), dtype=np.int64)
    for column in by:
        codes, distinct = pd.factorize(scores[column])
        f_codes = pd.Index(distinct).get_indexer(flags[column].astype(object).where(flags[column].notna(), None))
        s_group = s_group * (len(distinct) + 1) + codes
        f_group = np.where((f_group < 0) | (f_codes < 0), -1, f_group * (len(distinct) + 1) + f_codes)
    s_week = scores["week"].to_numpy(dtype=np.int64)
    f_week = flags["week"].to_numpy(dtype=np.int64)
    low = min(s_week.min(), f_week.min())
    span = int(max(s_week.max(), f_week.max()) - low + 1)
    return s_group * span + (s_week - low), np.where(f_group < 0, -1, f_group * span + (f_week - low)), span


def _raised_at(flags: pd.DataFrame, scores: pd.DataFrame) -> pd.Series:
    """When the data that raised each flag arrived (see the module docstring).

    ``arrived`` of a patient's week is the latest ``entered_at`` of that week or an earlier one
    (a running maximum); a flag takes it from its own week or the nearest stored week before it,
    a ``missed`` run from the first stored week after it (else as the others). Both lookups are
    ``searchsorted`` over sorted (patient, week) keys (:func:`_keys`).
    """
    stamps = scores["entered_at"]
    if flags.empty or scores.empty:
        return pd.Series(pd.array([pd.NaT] * len(flags), dtype=stamps.dtype), index=flags.index)
    s_key, f_key, span = _keys(scores, flags, ["patient_id"])
    per_week = pd.Series(stamps.to_numpy(dtype="datetime64[us]").view(np.int64)).groupby(s_key).max()
    keys = per_week.index.to_numpy(dtype=np.int64)
    arrived = per_week.groupby(keys // span).cummax().to_numpy()
    known = f_key >= 0
    patient = np.where(known, f_key // span, -1)
    back = np.searchsorted(keys, f_key, side="right") - 1
    fwd = back + 1
    has_back = known & (back >= 0) & (keys[np.clip(back, 0, None)] // span == patient)
    has_fwd = known & (fwd < len(keys)) & (keys[np.clip(fwd, None, len(keys) - 1)] // span == patient)
    use_fwd = has_fwd & (flags["kind"].to_numpy(dtype=object) == "missed")
    pick = np.where(use_fwd, fwd, back)
    found = use_fwd | has_back
    micros = np.where(found, arrived[np.clip(pick, 0, len(keys) - 1)], np.iinfo(np.int64).min)
    out = pd.Series(micros.view("datetime64[us]"), index=flags.index).dt.tz_localize("UTC")
    return out.astype(stamps.dtype)


def _administered_on(flags: pd.DataFrame, scores: pd.DataFrame) -> np.ndarray:
    """The date the flag's own score was filled in (first score of its patient, instrument and
    week; ``None`` for patient-level flags and undated scores), by ``searchsorted`` over sorted
    (patient, instrument, week) keys (:func:`_keys`)."""
    if flags.empty or scores.empty:
        return np.full(len(flags), None, dtype=object)
    s_key, f_key, _ = _keys(scores, flags, ["patient_id", "instrument"])
    order = np.argsort(s_key, kind="stable")
    ordered = s_key[order]
    at = np.clip(np.searchsorted(ordered, f_key, side="left"), 0, len(ordered) - 1)
    found = (f_key >= 0) & (ordered[at] == f_key)
    dates = scores["administered_on"].to_numpy(dtype=object)[order[at]]  # a new array (fancy indexing)
    dates[~found | pd.isna(dates)] = None
    return dates


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
    flags = flags.reset_index(drop=True)
    flags["administered_on"] = _administered_on(flags, scores)
    flags["rules_version"] = np.int64(rules_version)
    flags["raised_at"] = _raised_at(flags, scores)
    return flags


#: Below this many scores a recompute runs in the calling thread (one write's patients).
PARALLEL_ROWS = 100_000


def compute_all(scores: pd.DataFrame, *, config: FlagConfig, rules_version: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`compute_stored` and ``db.summaries.compute`` of ``scores``: the flags and the
    per-patient summaries a write stores.

    A patient's flags and summary depend on that patient's rows alone (module docstring), so a
    large recompute (``refresh-flags``, a rule-set change: ``PARALLEL_ROWS`` scores or more) runs
    on blocks of whole patients in threads, one per core: numpy, pandas and scipy release the
    interpreter lock in their kernels, and the flags of the blocks, concatenated in patient
    order, are the flags of the whole (tested).
    """
    if len(scores) < PARALLEL_ROWS:
        return compute_stored(scores, config=config, rules_version=rules_version), summaries.compute(scores)
    import os
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(os.cpu_count() or 1, 4))
    codes, distinct = pd.factorize(scores["patient_id"], sort=True)
    bounds = np.linspace(0, len(distinct), workers + 1).astype(np.int64)
    blocks = [scores[(codes >= lo) & (codes < hi)] for lo, hi in zip(bounds[:-1], bounds[1:], strict=True) if hi > lo]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="flags") as pool:
        summary = pool.submit(summaries.compute, scores)
        parts = list(pool.map(lambda b: compute_stored(b, config=config, rules_version=rules_version), blocks))
        return pd.concat(parts, ignore_index=True), summary.result()


def _columns(flags: pd.DataFrame, pids: dict[str, int]) -> dict[str, list]:
    """The stored columns of ``flags`` as lists, ``None`` for missing values."""
    frame = flags[_STORED_FLAG_COLUMNS + STORED_EXTRA]
    out = {}
    for c in frame.columns:
        col = frame[c]
        if c == "patient_id":
            out[c] = col.map(pids).astype("int64").tolist()
            continue
        if c == "instrument":
            col = col.fillna(PATIENT_LEVEL)
        out[c] = driver_values(col)
    return out


def _write(session: Session, flags: pd.DataFrame, pids: dict[str, int]) -> None:
    """Insert the flags through the driver (:func:`db.columnar.insert_columns`), in the caller's
    transaction."""
    if not flags.empty:
        insert_columns(session, StoredFlag.__table__, _columns(flags, pids))


def _facts(scores: pd.DataFrame) -> pd.DataFrame:
    """Per patient of ``scores`` (index ``_pid``, the internal id): ``last_week``, the latest stored
    week, and ``weeks``, the number of distinct stored weeks."""
    return scores.groupby("_pid")["week"].agg(last_week="max", weeks="nunique")


def _set_facts(session: Session, fresh: pd.DataFrame, patient_ids: list[int] | None = None) -> None:
    """The stored per-patient facts (last stored week, number of stored weeks) of ``patient_ids``
    (every patient when ``None``) as ``fresh`` (:func:`_facts` of every score row of those
    patients, as :func:`scores_for_flags` read them in this transaction). Only the patients whose facts
    changed are updated (one ``executemany``); a patient without a score gets ``NULL`` and 0.
    (An ``UPDATE … FROM`` an aggregate of the scores table cost 0.3-0.4 s of every PostgreSQL
    ``refresh-flags`` for no change.)"""
    stmt = select(Patient.id, Patient.last_week, Patient.weeks_stored)
    ids = None if patient_ids is None else sorted({int(p) for p in patient_ids})
    stmts = [stmt] if ids is None else \
        [stmt.where(Patient.id.in_(ids[k:k + _CHUNK])) for k in range(0, len(ids), _CHUNK)]
    current = pd.DataFrame([r for st in stmts for r in fetch_rows(session, st)],
                           columns=["id", "last_week", "weeks_stored"])
    if current.empty:
        return
    want = fresh.reindex(current["id"].to_numpy())
    last = want["last_week"].to_numpy(dtype="float64")
    count = want["weeks"].fillna(0).to_numpy(dtype="int64")
    stored_last = pd.to_numeric(current["last_week"], errors="coerce").to_numpy(dtype="float64")
    stored_count = pd.to_numeric(current["weeks_stored"], errors="coerce").to_numpy(dtype="float64")
    same_last = (stored_last == last) | (np.isnan(stored_last) & np.isnan(last))
    changed = ~same_last | (stored_count != count)
    if not changed.any():
        return
    rows = [{"i": int(i), "w": None if np.isnan(w) else int(w), "n": int(n)}
            for i, w, n in zip(current["id"].to_numpy()[changed], last[changed], count[changed], strict=True)]
    session.execute(text("UPDATE patients SET last_week = :w, weeks_stored = :n WHERE id = :i"), rows)


def _pid_map(scores: pd.DataFrame) -> dict[str, int]:
    """Patient code -> internal id, from ``scores_for_flags`` (one pair per patient, not per row:
    zipping the 898k rows of a 10,000-patient clinic took 0.6 s)."""
    pairs = scores[["patient_id", "_pid"]].drop_duplicates("patient_id")
    return dict(zip(pairs["patient_id"].tolist(), pairs["_pid"].astype("int64").tolist(), strict=True))


def refresh_patients(session: Session, patient_ids: Iterable[int]) -> int:
    """Recompute and store the flags of these patients (internal ids), in the caller's transaction.

    Every write path calls it with the patients it touched, after writing their scores.
    The alert e-mails owed for the urgent and high flags this write raised are queued in the
    same transaction (``db.notifications.enqueue_new``): exactly once per flag, none for a flag
    that was already stored. Returns how many flags are stored for them now.
    """
    from db import notifications  # here: db.notifications imports db.writes, which imports this module

    ids = sorted({int(p) for p in patient_ids})
    if not ids:
        return 0
    bump_revision(session)
    rule_set = ensure_rule_set(session)
    scores = scores_for_flags(session, patient_ids=ids)
    flags, summary = compute_all(scores, config=flag_config(rule_set), rules_version=rule_set.version)
    before = notifications.stored_events(session, ids)
    for start in range(0, len(ids), _CHUNK):
        session.execute(delete(StoredFlag).where(StoredFlag.patient_id.in_(ids[start:start + _CHUNK]))
                        .execution_options(synchronize_session=False))
    pids = _pid_map(scores)
    _write(session, flags, pids)
    summaries.write(session, summary, pids, ids)
    facts = _facts(scores)
    _set_facts(session, facts, ids)
    notifications.enqueue_new(session, before=before, flags=flags, pids=pids, latest_week=facts["last_week"])
    return len(flags)


def refresh_all(session: Session) -> int:
    """Recompute every stored flag under the current rule set (after a change of rule set, a
    restore, or an upgrade); in the caller's transaction. Returns how many flags are stored.

    Queues no alert e-mail: a new rule set or a restore is not new data, and a clinic-wide
    recompute must not mail every open alert again."""
    bump_revision(session)
    rule_set = ensure_rule_set(session)
    scores = scores_for_flags(session)
    flags, summary = compute_all(scores, config=flag_config(rule_set), rules_version=rule_set.version)
    session.execute(delete(StoredFlag).execution_options(synchronize_session=False))
    pids = _pid_map(scores)
    _write(session, flags, pids)
    summaries.write(session, summary, pids, None)
    _set_facts(session, _facts(scores))
    row = session.get(Setting, COMPUTED_FOR)
    if row is None:
        session.add(Setting(key=COMPUTED_FOR, value=_computed_for(rule_set.version)))
    else:
        row.value = _computed_for(rule_set.version)
    session.flush()
    return len(flags)


def _computed_for(version: int) -> str:
    """What ``COMPUTED_FOR`` holds: the rule-set version, the rules' code revision
    (``core.flags.RULES_REVISION``) and the summaries' (``db.summaries.SUMMARY_REVISION``),
    e.g. ``"2/r3/s1"``."""
    return f"{version}/r{RULES_REVISION}/s{summaries.SUMMARY_REVISION}"


def is_current(session: Session) -> bool:
    """True when the stored flags were computed under the current rule set and the current code
    of the rules (reads only). A release that changes what a rule raises bumps
    ``core.flags.RULES_REVISION``, so its first start recomputes every stored flag once."""
    from db.parameters import current_rule_set

    rule_set = current_rule_set(session)
    stored = session.scalar(select(Setting.value).where(Setting.key == COMPUTED_FOR))
    return rule_set is not None and stored == _computed_for(rule_set.version)


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
def read_stored(session: Session, *, actor: Actor | None, patient_code: str | None = None,
                without_kinds: Sequence[str] = ()) -> pd.DataFrame:
    """The stored flags of the patients ``actor`` may see (default-deny, filtered in SQL).

    The ``core.flags.FLAG_COLUMNS`` (``therapist_id`` is the patient's therapist now) plus
    ``administered_on``, ``rules_version`` and ``raised_at``. Data-dependent facts only; see
    :func:`read_flags` for what a user sees. ``without_kinds`` leaves those kinds out in SQL
    (the caseload scan has no use for the improvements, 60% of a clinic's flags).
    """
    therapist = aliased(Account)
    f = StoredFlag.__table__.c
    postgresql = session.get_bind().dialect.name == "postgresql"
    names = ["patient_id", "therapist_id"] + [c for c in _STORED_FLAG_COLUMNS if c != "patient_id"] + STORED_EXTRA
    # PostgreSQL: COPY in CSV, parsed by Arrow (no Python object per value, db/columnar.py): the
    # flag's booleans as 0/1, its day as text, its arrival as whole microseconds since the epoch
    as_copied = {"confirmed": cast(f.confirmed, Integer), "administered_on": cast(f.administered_on, Text),
                 "raised_at": cast(func.extract("epoch", f.raised_at) * 1000000, BigInteger)} if postgresql else {}
    cols: list[Any] = [Patient.code, therapist.name] + [as_copied.get(c, f[c]) for c in names[2:]]
    stmt = (select(*cols).select_from(StoredFlag.__table__)
            .join(Patient, f.patient_id == Patient.id)
            .outerjoin(therapist, Patient.therapist_id == therapist.id)
            .where(f.patient_id.in_(visible_patients(actor))))
    if patient_code is not None:
        stmt = stmt.where(Patient.code == patient_code)
    if without_kinds:
        stmt = stmt.where(f.kind.not_in(list(without_kinds)))
    frame = _copied(session, stmt, names) if postgresql else \
        pd.DataFrame.from_records(fetch_rows(session, stmt), columns=names)
    frame["instrument"] = frame["instrument"].where(frame["instrument"] != PATIENT_LEVEL, None)
    frame["confirmed"] = _nullable_bool(frame["confirmed"])  # 1/0/NULL on SQLite
    for c, d in FLAG_COLUMNS.items():
        frame[c] = frame[c].astype(d) if d not in ("float64",) else pd.to_numeric(frame[c]).astype("float64")
    frame["administered_on"] = _date(frame["administered_on"])
    frame["rules_version"] = frame["rules_version"].astype("int64")
    frame["raised_at"] = _utc(frame["raised_at"])
    return frame.sort_values(flag_time.SORT, kind="stable", na_position="last", ignore_index=True)


#: Arrow types of the stored flags as :func:`read_stored` copies them from PostgreSQL.
_COPY_TYPES = {"week": pa.int64(), "score": pa.float64(), "baseline": pa.float64(), "drop": pa.float64(),
               "drop_sd": pa.float64(), "subscale_drop": pa.float64(), "symptom_change_next_week": pa.float64(),
               "confirmed": pa.int64(), "repaired_week": pa.int64(), "rules_version": pa.int64(),
               "raised_at": pa.int64()}


def _copied(session: Session, stmt: Any, names: list[str]) -> pd.DataFrame:
    """The rows of ``stmt`` (PostgreSQL) by ``COPY`` into Arrow (:func:`db.columnar.copy_csv`), as
    the frame the driver's rows would give (``None`` where NULL, texts as objects), except
    ``raised_at``, already UTC times. Bound values travel as parameters, never as SQL text."""
    compiled = stmt.compile(dialect=session.get_bind().dialect, compile_kwargs={"render_postcompile": True})
    types = {n: _COPY_TYPES.get(n, pa.string()) for n in names}
    table = copy_csv(session.connection().connection.dbapi_connection, [(str(compiled), compiled.params)], types,
                     newlines_in_values=True)
    if table is None:
        table = pa.table({n: pa.array([], type=t) for n, t in types.items()})
    out = {}
    for n in names:
        column = table.column(n)
        if n == "raised_at":
            out[n] = pd.to_datetime(column.to_numpy(), unit="us", utc=True)
        elif n in ("week", "rules_version") or pa.types.is_floating(column.type):
            out[n] = column.to_numpy()
        else:  # texts and nullable integers: objects, None where NULL
            out[n] = np.array(column.to_pylist(), dtype=object)
    return pd.DataFrame(out, columns=names)


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
                   Patient.last_week, Patient.status_since)
            .outerjoin(therapist, Patient.therapist_id == therapist.id)
            .where(Patient.id.in_(visible_patients(actor))))
    if patient_code is not None:
        stmt = stmt.where(Patient.code == patient_code)
    frame = pd.DataFrame.from_records(fetch_rows(session, stmt), columns=[
        "patient_id", "therapist_id", "status", "start_date", "planned_weeks", "last_week", "status_since"])
    frame["start_date"] = _date(frame["start_date"])
    frame["status_since"] = _date(frame["status_since"])
    return frame


def first_difference(stored: pd.DataFrame, fresh: pd.DataFrame, *, columns: list[str] | None = None,
                     order: list[str] | None = None) -> str | None:
    """The first patient (code) whose stored rows differ from ``fresh`` (both stored form), or None.

    ``columns`` / ``order``: what to compare and sort by; the stored flags' by default (the
    per-patient summaries pass theirs, ``db.summaries.STORED`` by ``patient_id``)."""
    cols = columns or _STORED_FLAG_COLUMNS + STORED_EXTRA
    keys = order or flag_time.SORT
    a = stored[cols].sort_values(keys, kind="stable", na_position="last", ignore_index=True)
    b = fresh[cols].sort_values(keys, kind="stable", na_position="last", ignore_index=True)
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
    computation under the current rule set (``None`` when all agree). Writes nothing. The fresh
    computation is one pass over every patient (not :func:`compute_all`'s blocks)."""
    rule_set = ensure_rule_set(session)
    scores = scores_for_flags(session)
    fresh = compute_stored(scores, config=flag_config(rule_set), rules_version=rule_set.version)
    stored = read_stored(session, actor=SYSTEM)
    stored = stored.assign(patient_id=stored["patient_id"].astype("string"))
    diff = first_difference(stored, fresh)
    if diff is not None:
        return diff
    diff = first_difference(summaries.read_stored(session, actor=SYSTEM), summaries.compute(scores),
                            columns=summaries.STORED, order=["patient_id"])
    if diff is not None:
        return diff
    facts = pd.DataFrame(session.execute(select(Patient.id, Patient.code, Patient.last_week,
                                                Patient.weeks_stored)).all(), columns=["id", "code", "last", "weeks"])
    want = _facts(scores).reindex(facts["id"].to_numpy())
    stored_last = pd.to_numeric(facts["last"], errors="coerce").fillna(-1).to_numpy()
    fresh_last = want["last_week"].fillna(-1).to_numpy()
    stored_weeks = pd.to_numeric(facts["weeks"], errors="coerce").fillna(-1).to_numpy()
    fresh_weeks = want["weeks"].fillna(0).to_numpy()
    wrong = facts.loc[(stored_last != fresh_last) | (stored_weeks != fresh_weeks), "code"]
    return str(wrong.min()) if len(wrong) else None


def stored_count(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(StoredFlag)) or 0)


def read_flags_stored(session: Session, *, actor: Actor | None, patient_code: str | None = None,
                      today: dt.date | None = None, config: FlagConfig | None = None,
                      without_kinds: Sequence[str] = ()) -> pd.DataFrame:
    """What a user sees: stored flags plus the time-dependent kinds derived for ``today``
    (``without_kinds``: see :func:`read_stored`)."""
    rule_set = ensure_rule_set(session)
    cfg = config or flag_config(rule_set)
    stored = read_stored(session, actor=actor, patient_code=patient_code, without_kinds=without_kinds)
    facts = patient_facts(session, actor=actor, patient_code=patient_code)
    weeks = current_weeks(facts, today=today or clock.today())
    return flag_time.derive(stored, facts, current_week=weeks, config=cfg)
