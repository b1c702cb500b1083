"""Safe CSV export: cells that a spreadsheet would run as a formula are escaped.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with
a single quote (OWASP, "CSV Injection"). Numbers are left as numbers: a negative number is
data, not a formula, and stays readable.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells cannot start a spreadsheet formula.

    Every column that is not numeric or boolean becomes text (``object``: ``str`` or ``None``).
    Each distinct value is escaped once (a million rows hold a few thousand distinct codes,
    names and dates)."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_numeric_dtype(out[col]) or pd.api.types.is_bool_dtype(out[col]):
            continue
        codes, distinct = pd.factorize(out[col], use_na_sentinel=True)
        text = pd.Series(distinct, dtype=object).astype("string")
        risky = text.str.startswith(FORMULA_START).fillna(False)
        escaped = text.where(~risky, "'" + text).astype(object).to_numpy()
        column = np.empty(len(codes), dtype=object)
        known = codes >= 0
        column[known] = escaped[codes[known]]
        column[~known] = None
        out[col] = pd.Series(column, index=out.index, dtype=object)
    return out


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV of ``frame`` with formulas escaped, no index.

    A frame of text and integer columns only (the weekly-scores export: a million rows) is
    written by Arrow's CSV writer, about five times faster than pandas'; Arrow writes nothing it
    would have to quote (``quoting_style="none"`` refuses a comma, quote or line break), and such a
    frame, or any other column type, goes to pandas, so the bytes are pandas' either way
    (tests/db/test_export.py compares them)."""
    escaped = escape_formulas(frame)
    fast = _arrow_csv(escaped)
    return fast if fast is not None else escaped.to_csv(index=False, lineterminator="\n").encode("utf-8")


def _arrow_csv(frame: pd.DataFrame) -> bytes | None:
    """``frame`` as pandas would write it, by Arrow, or ``None`` when Arrow cannot promise that."""
    import io

    import pyarrow as pa
    from pyarrow import csv

    plain = all(pd.api.types.is_integer_dtype(t) or pd.api.types.is_object_dtype(t) for t in frame.dtypes)
    names = [str(c) for c in frame.columns]
    if not plain or frame.empty or any(set(n) & set(',"\n\r') for n in names):
        return None
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if not all(pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_null(t) for t in table.schema.types):
            return None
        buffer = io.BytesIO()
        buffer.write((",".join(names) + "\n").encode("utf-8"))
        csv.write_csv(table, buffer, csv.WriteOptions(include_header=False, quoting_style="none"))
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # a value that needs quoting, or not text after all
        return None
    return buffer.getvalue()


def scores_for_export(scores: pd.DataFrame) -> pd.DataFrame:
    """Scores in the weekly-scores file format (CONTRACT.md), item columns trimmed to those used."""
    cols = ["patient_id", "therapist_id", "week", "instrument", "score", "administered_on"]
    items = [c for c in scores.columns if c.startswith("item_") and scores[c].notna().any()]
    out = scores[cols + items].copy()
    for c in items:
        out[c] = out[c].astype("Int64")
    out["score"] = general_format(out["score"].to_numpy(dtype=np.float64))
    # by patient, week, instrument: integer keys (each column's distinct values ranked once)
    patient, _ = pd.factorize(out["patient_id"], sort=True)
    instrument, _ = pd.factorize(out["instrument"], sort=True)
    order = np.lexsort((instrument, out["week"].to_numpy(), patient))
    return out.take(order).reset_index(drop=True)


def general_format(values: np.ndarray) -> np.ndarray:
    """``f"{v:g}"`` of every value, vectorised for the whole numbers scores nearly always are
    (below 10**6 ``g`` writes them as plain integers); the others one by one."""
    whole = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 1e6) & ~np.signbit(values)
    out = np.empty(len(values), dtype=object)
    distinct, at = np.unique(values[whole].astype(np.int64), return_inverse=True)  # a few hundred scores
    out[whole] = np.array([str(v) for v in distinct.tolist()], dtype=object)[at]
    out[~whole] = [f"{v:g}" for v in values[~whole]]
    return out


def weekly_scores_csv(scores: pd.DataFrame) -> bytes:
    """The weekly-scores export (CONTRACT.md) of ``scores`` whose item answers are the stored
    JSON text (column ``items``, ``db.queries.read_scores(items_as_text=True)``): the same bytes as
    :func:`to_csv_bytes` of :func:`scores_for_export` of the decoded frame, in a fraction of the time.

    Every line is assembled by Arrow's string kernels: each text column escaped once per distinct
    value, each score formatted once per distinct value, the item lists turned from ``[1, 2, 3]``
    into ``1,2,3`` plus the empty cells up to the widest list, without a float matrix, a nullable
    integer column per item or a Python object per row (a million rows in ~1 s less, bench/processes.py).
    A text value a CSV cell would have to quote, or item text that is not a list of whole numbers,
    goes the general way (:func:`to_csv_bytes` of the decoded frame: quoted, or its error).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from core.item_text import decode_items

    cols = ["patient_id", "therapist_id", "week", "instrument", "score", "administered_on"]
    items = pa.array(np.asarray(scores["items"], dtype=object), type=pa.string(), from_pandas=True)
    given = pc.invert(pc.fill_null(pc.is_in(items, pa.array(["null", "[]"])), True))
    listed = pc.replace_substring_regex(pc.if_else(given, items, pa.scalar(None, pa.string())), r"\s", "")
    fragment = pc.utf8_slice_codeunits(listed, 1, -1)  # "[1,2,3]" -> "1,2,3"
    well_formed = pc.all(pc.fill_null(pc.match_substring_regex(listed, r"^\[[0-9]+(,[0-9]+)*\]$"), True)).as_py()
    texts = {c: _distinct_escaped(scores[c]) for c in ("patient_id", "therapist_id", "instrument", "administered_on")}
    score = general_format(scores["score"].to_numpy(dtype=np.float64))
    texts["score"] = _distinct_escaped(pd.Series(score, dtype=object))
    if not well_formed or any(t is None for t in texts.values()):
        matrix = decode_items(scores["items"])
        decoded = pd.DataFrame(matrix, columns=[f"item_{k + 1}" for k in range(matrix.shape[1])], index=scores.index)
        return to_csv_bytes(scores_for_export(pd.concat([scores.drop(columns="items"), decoded], axis=1)))
    count = pc.add(pc.count_substring(fragment, ","), 1)  # answers per list, null where none
    width = int(pc.max(count).as_py() or 0)
    patient, _ = pd.factorize(scores["patient_id"], sort=True)
    instrument, _ = pd.factorize(scores["instrument"], sort=True)
    order = pa.array(np.lexsort((instrument, scores["week"].to_numpy(), patient)))
    fields = [texts["patient_id"], texts["therapist_id"], pc.cast(pa.array(scores["week"].to_numpy()), pa.string()),
              texts["instrument"], texts["score"], texts["administered_on"]]
    if width:
        empty_cells = pc.subtract(pa.scalar(width), pc.max_element_wise(pc.fill_null(count, 0), 1))
        pad = pc.binary_repeat(pa.scalar(","), empty_cells)
        fields.append(pc.binary_join_element_wise(pc.fill_null(fragment, ""), pad, ""))
    header = ",".join(cols + [f"item_{k + 1}" for k in range(width)]) + "\n"
    if not len(scores):
        return header.encode("utf-8")
    lines = pc.binary_join_element_wise(*[pc.take(f, order) for f in fields], ",")
    lines = pc.binary_join_element_wise(lines, pa.scalar(""), "\n").cast(pa.large_string())
    offsets, data = lines.buffers()[1], lines.buffers()[2]
    first, last = np.frombuffer(offsets, dtype=np.int64)[[lines.offset, lines.offset + len(lines)]]
    return header.encode("utf-8") + data.to_pybytes()[first:last]


def _distinct_escaped(values: pd.Series) -> Any:  # a pyarrow string Array, or None
    """Each value's CSV text (formula-escaped as :func:`escape_formulas` does, blank where missing)
    as an Arrow string array, computed once per distinct value; ``None`` when one would need quoting."""
    import pyarrow as pa

    codes, distinct = pd.factorize(values, use_na_sentinel=True)
    frame = escape_formulas(pd.DataFrame({"v": pd.Series(distinct, dtype=object)}))
    text = ["" if v is None else str(v) for v in frame["v"].tolist()] + [""]
    if any(set(t) & set(',"\n\r') for t in text):
        return None
    return pa.array(text, type=pa.string()).take(pa.array(np.where(codes >= 0, codes, len(text) - 1)))
