"""Bulk reads of the scores table column by column, for the whole-clinic paths (issue 19).

A million ``Row`` objects (or a join that repeats the patient code and the therapist's name on
every score) cost more than the data: these readers fetch the ``scores`` table alone, on the
caller's own connection (a transaction that has just written sees its rows), and hand back
arrays. PostgreSQL: ``COPY (SELECT …) TO STDOUT`` in CSV, parsed by Arrow (no Python object per
value). SQLite: the driver's tuples, transposed with the cyclic garbage collector paused. The
callers map the internal patient id to the code from the ``patients`` table (10,000 rows).

No access check here: callers are ``db.queries.read_scores`` (which passes the ids the actor may
see) and the write path of ``db.flagstore`` (which holds its patients). The filters are built
into the SQL text from integers and instrument codes checked against :data:`_CODE`, never from
free text.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from sqlalchemy.orm import Session

from db.queries import utc_times as _utc

#: Ids per ``IN (…)`` list.
CHUNK = 500
#: What an instrument code may look like (``WAI-SR``, ``PHQ-9``, a clinic's ``ORS.v2``).
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
NAMES = ["_pid", "instrument", "week", "score", "administered_on", "entered_at", "items"]
_SOURCES = {"_pid": "patient_id", "instrument": "instrument", "week": "week", "score": "total",
            "administered_on": "administered_on", "entered_at": "entered_at", "items": "items"}
_PG_SOURCES = {**_SOURCES, "administered_on": "administered_on::text",
               "entered_at": "(extract(epoch FROM entered_at) * 1000000)::bigint", "items": "items::text"}


def score_columns(session: Session, ids: Sequence[int] | None, *, instruments: Sequence[str] | None = None,
                  max_week: int | None = None, items: bool = True, entered: bool = True) -> dict:
    """The scores of patients ``ids`` (all when ``None``) as arrays keyed by :data:`NAMES`.

    ``instruments`` / ``max_week`` keep those instruments / weeks <= N; ``items=False`` /
    ``entered=False`` leave the item lists / arrival times unread (``None`` / ``NaT``).
    ``entered_at`` is UTC; ``administered_on`` is an Arrow string array (ISO dates as stored, null
    where none: no Python object per row), ``items`` as stored (JSON text or ``None``).
    """
    sqlite = session.get_bind().dialect.name != "postgresql"
    conditions = []
    if instruments is not None:
        bad = [c for c in instruments if not _CODE.fullmatch(str(c))]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an instrument code; name instruments by their code, e.g. WAI-SR.")
        # SQLite: "+instrument" keeps the planner off the (instrument, week) index, which made a
        # whole-clinic read of five instruments visit every row through the index in random order
        # (3.4-4.3 s instead of a 1.4 s scan); a caseload's read keeps the patient index.
        listed = ", ".join(f"'{c}'" for c in instruments) or "NULL"
        conditions.append(("+" if sqlite else "") + f"instrument IN ({listed})")
    if max_week is not None:
        conditions.append(f"week <= {int(max_week)}")
    wheres = [conditions]
    if ids is not None:
        ids = [int(p) for p in ids]
        chunks = [ids[k:k + CHUNK] for k in range(0, len(ids), CHUNK)] or [[]]
        wheres = [[f"patient_id IN ({', '.join(str(p) for p in c) or 'NULL'})", *conditions] for c in chunks]
    where = [(" WHERE " + " AND ".join(w)) if w else "" for w in wheres]
    raw = session.connection().connection.dbapi_connection
    if not sqlite:
        return _pg_score_columns(raw, where, items=items, entered=entered)
    return _sqlite_score_columns(raw, where, items=items, entered=entered)


def strings(values: pa.Array | pa.ChunkedArray | np.ndarray) -> pd.Series:
    """Text values (an Arrow array, or a NumPy array of ``str``) as pandas' ``str`` dtype."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.to_pandas()  # Arrow-backed: no Python object per value
    return pd.Series(pd.array(values, dtype="str"))


def per_distinct(values: pa.Array | pa.ChunkedArray | np.ndarray,
                 convert: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """``convert`` applied once per distinct value (a write stamps all its rows alike); ``values``
    an Arrow array or a NumPy array of objects."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        encoded = pa.chunked_array([values]) if isinstance(values, pa.Array) else values
        encoded = encoded.dictionary_encode(null_encoding="encode").combine_chunks()  # a null: one more value
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        distinct = encoded.dictionary.to_numpy(zero_copy_only=False)
    else:
        codes, distinct = pd.factorize(np.asarray(values, dtype=object), use_na_sentinel=False)
    converted = convert(pd.Series(distinct, dtype=object))
    return pd.Series(converted.array.take(codes) if len(codes) else converted.array[:0])


def _select(sources: dict[str, str], items: bool, entered: bool) -> str:
    skip = {n for n, wanted in (("items", items), ("entered_at", entered)) if not wanted}
    return "SELECT " + ", ".join("NULL" if n in skip else sources[n] for n in NAMES) + " FROM scores"


#: Rows per batch of the SQLite read: each batch's tuples become arrays before the next is fetched.
BATCH = 65_536

#: Each column of a batch (a tuple of the driver's values) as an array.
_BATCH_ARRAYS: dict[str, Callable[[tuple], Any]] = {
    "_pid": lambda c: np.array(c, dtype=np.int64), "week": lambda c: np.array(c, dtype=np.int64),
    "score": lambda c: np.array(c, dtype=np.float64), "administered_on": lambda c: pa.array(c, type=pa.string()),
    "items": lambda c: np.array(c, dtype=object), "instrument": lambda c: pa.array(c, type=pa.string()),
    "entered_at": lambda c: pa.array(c, type=pa.string())}


def _sqlite_score_columns(raw: Any, where: list[str], *, items: bool, entered: bool) -> dict:  # raw: sqlite3
    # The driver's tuples, BATCH rows at a time, each batch transposed into arrays before the next
    # is fetched: one fetchall of 898k rows held ~300 MB of tuples and their values at once, the
    # high-water mark of an admin's caseload in the server (issue 19); a batch holds ~20 MB.
    # The cyclic garbage collector is paused meanwhile (fresh tuples otherwise trigger full
    # collections: the transpose took 0.73 s instead of 0.21 s).
    # Not ADBC: its SQLite driver links a second copy of SQLite into the process, and two copies
    # on one file break each other's POSIX locks ("disk I/O error" in the tests; sqlite.org,
    # "How To Corrupt An SQLite Database File", 2.2.1).
    sql = _select(_SOURCES, items, entered)
    unread = {n for n, wanted in (("items", items), ("entered_at", entered)) if not wanted}  # NULL columns
    parts: dict[str, list[Any]] = {n: [] for n in NAMES}
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        cursor = raw.cursor()
        try:
            for w in where:
                cursor.execute(sql + w)
                while rows := cursor.fetchmany(BATCH):
                    for name, column in zip(NAMES, zip(*rows, strict=True), strict=True):
                        if name not in unread:
                            parts[name].append(_BATCH_ARRAYS[name](column))
                    del rows
        finally:
            cursor.close()
    finally:
        if was_enabled:
            gc.enable()

    def joined(name: str) -> Any:
        chunks = parts[name] or [_BATCH_ARRAYS[name](())]
        if isinstance(chunks[0], pa.Array):
            return pa.concat_arrays(chunks)
        return np.concatenate(chunks)

    pid = joined("_pid")
    return {
        "_pid": pid, "instrument": joined("instrument"), "week": joined("week"),
        "score": joined("score"), "administered_on": joined("administered_on"),
        "entered_at": per_distinct(joined("entered_at"), _utc).array if entered
        else pd.DatetimeIndex(np.full(len(pid), np.datetime64("NaT", "us"))).tz_localize("UTC").array,
        "items": joined("items") if items else np.full(len(pid), None, dtype=object),
    }


def copy_csv(raw: Any, statements: Sequence[tuple[str, Any]], types: dict[str, pa.DataType], *,
             newlines_in_values: bool = False) -> pa.Table | None:  # raw: psycopg
    """The rows of SELECT ``statements`` (PostgreSQL; each with its bound parameters or ``None``)
    by ``COPY (…) TO STDOUT`` in CSV, parsed by Arrow into the columns ``types`` names, in order:
    no Python object per value. An empty unquoted field is NULL, a quoted empty one ``""``.
    ``None`` when there is no row. ``newlines_in_values`` for text that may hold line breaks."""
    from pyarrow import csv

    buffer = bytearray()
    with raw.cursor() as cursor:
        for sql, params in statements:
            with cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv)", params) as copy:
                for block in copy:
                    buffer += block
    if not buffer:
        return None
    return csv.read_csv(pa.BufferReader(bytes(buffer)), read_options=csv.ReadOptions(column_names=list(types)),
                        parse_options=csv.ParseOptions(newlines_in_values=newlines_in_values),
                        convert_options=csv.ConvertOptions(column_types=types, strings_can_be_null=True,
                                                           quoted_strings_can_be_null=False))


def _pg_score_columns(raw: Any, where: list[str], *, items: bool, entered: bool) -> dict:  # raw: psycopg
    # Times as whole microseconds since the epoch (exact), dates and item lists as text.
    sql = _select(_PG_SOURCES, items, entered)
    types = {"_pid": pa.int64(), "instrument": pa.string(), "week": pa.int64(), "score": pa.float64(),
             "administered_on": pa.string(), "entered_at": pa.int64(), "items": pa.string()}
    table = copy_csv(raw, [(sql + w, None) for w in where], types)
    if table is None:
        empty = np.array([], dtype=object)
        return {"_pid": np.array([], dtype=np.int64), "instrument": empty, "week": np.array([], dtype=np.int64),
                "score": np.array([], dtype=np.float64), "administered_on": pa.array([], type=pa.string()),
                "entered_at": pd.array([], dtype="datetime64[us, UTC]"), "items": empty}
    col = {n: table.column(n) for n in NAMES}
    return {
        "_pid": col["_pid"].to_numpy(),
        "instrument": col["instrument"],
        "week": col["week"].to_numpy(),
        "score": col["score"].to_numpy(),
        "administered_on": col["administered_on"].combine_chunks(),
        "entered_at": pd.to_datetime(col["entered_at"].to_numpy(), unit="us", utc=True).as_unit("us").array,
        "items": col["items"].to_numpy(zero_copy_only=False),
    }


def driver_values(column: pd.Series) -> list:
    """A column as the driver takes it: Python numbers, text, dates and (aware) datetimes, with
    NaN, NaT and missing values as ``None``."""
    values = list(column.dt.to_pydatetime()) if isinstance(column.dtype, pd.DatetimeTZDtype) \
        else column.astype(object).tolist()
    known = column.notna().to_numpy()
    return [v if k else None for v, k in zip(values, known, strict=True)]


def _csv_rows(columns: dict[str, list]) -> bytes:
    """The rows as PostgreSQL's ``COPY … WITH (FORMAT csv)`` reads them, written by Arrow (no
    Python call per value): every value quoted, a NULL an empty unquoted field (so an empty text
    stays empty), floats in their shortest exact form, aware times in UTC with a ``Z``."""
    from pyarrow import csv

    table = pa.table({c: pa.array(values) for c, values in columns.items()})
    sink = pa.BufferOutputStream()
    csv.write_csv(table, sink, write_options=csv.WriteOptions(include_header=False, quoting_style="all_valid"))
    return sink.getvalue().to_pybytes()


def insert_columns(session: Session, table: Any, columns: dict[str, list]) -> None:
    """Insert rows given column by column (``None`` for NULL) into ``table`` through the driver, in
    the caller's transaction: PostgreSQL ``COPY … FROM STDIN`` in CSV (:func:`_csv_rows`), SQLite one
    ``executemany``. Values are stored exactly as the columns' SQLAlchemy types store them (each
    distinct value through the type's bind processor once); an ORM ``insert`` of the same rows
    cost 2-3 times as much (47,388 flags, 10,000 summaries in every ``refresh-flags``)."""
    if not columns or not len(next(iter(columns.values()))):
        return
    dialect = session.get_bind().dialect
    names = ", ".join(dialect.identifier_preparer.quote(c) for c in columns)  # "drop" is a keyword
    cursor = session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if dialect.name == "postgresql":
            with cursor.copy(f"COPY {table.name} ({names}) FROM STDIN WITH (FORMAT csv)") as copy:
                copy.write(_csv_rows(columns))
            return
        columns = dict(columns)
        for c, values in columns.items():
            proc = table.c[c].type.bind_processor(dialect)
            if proc is not None:
                cache = {v: proc(v) for v in set(values) if v is not None}
                columns[c] = [None if v is None else cache[v] for v in values]
        cursor.executemany(f"INSERT INTO {table.name} ({names}) VALUES ({', '.join('?' * len(columns))})",
                           list(zip(*columns.values(), strict=True)))
    finally:
        cursor.close()
