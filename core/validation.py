"""The one validator for every way scores come in (CSV, Excel, weekly entry, FHIR).

It checks a weekly-scores table (CONTRACT.md) cell by cell and collects **every** problem in
the file, each naming the file row, the column and the reason in plain words, never echoing
a health value beyond the patient code. Checks, in order:

* required columns present (``patient_id, therapist_id, week, instrument, score``; ``score``
  may be left empty on rows whose items are all given);
* ``patient_id`` and ``therapist_id`` non-empty, printable, at most 32/64 characters;
* ``week`` a whole number from 1 to ``MAX_WEEK``;
* ``instrument`` a code of the registry;
* ``score`` a number within the instrument's total range;
* ``item_N`` whole numbers within the item range, only for items the instrument has, all or
  none of an instrument's items; when items are given the score is their sum and a given
  ``score`` must agree;
* ``administered_on`` an ISO date (YYYY-MM-DD);
* no two rows for the same patient, instrument and week (conflicts with *stored* scores are
  checked by the database layer, which knows them).

Rows are numbered as a spreadsheet shows them: the header is row 1, the first data row is
row 2.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core import instruments

REQUIRED = ("patient_id", "therapist_id", "week", "instrument", "score")
OPTIONAL = ("administered_on",)
ITEM_RE = re.compile(r"^item_([1-9][0-9]*)$")
_CODE_RE = r"^[A-Za-z0-9][A-Za-z0-9._@-]*$"
FIRST_DATA_ROW = 2
#: The largest treatment week accepted (project choice: ten years of weekly questionnaires).
MAX_WEEK = 520
#: Default size limit of an uploaded or imported file.
MAX_BYTES = 50 * 1024 * 1024


@dataclass(frozen=True)
class RowError:
    """One problem: file row (header = 1), column, and a plain-language reason."""

    row: int
    column: str
    reason: str
    #: What ``row`` counts: ``"row"`` for CSV/Excel rows, ``"resource"`` for FHIR resources.
    unit: str = "row"

    def __str__(self) -> str:
        where = f"{self.unit} {self.row}" if self.row else "file"
        return f"{where}, column {self.column}: {self.reason}"


@dataclass(frozen=True)
class ValidationResult:
    """The typed rows (core column contract) and every problem found."""

    scores: pd.DataFrame
    errors: tuple[RowError, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.errors


def _num(cells: pd.Series) -> pd.Series:
    """Numbers from text cells as plain float64, NaN where the cell is not a number."""
    return pd.to_numeric(cells, errors="coerce").astype("float64")


def _errors_for(mask: pd.Series, rows: pd.Series, column: str, reason: str) -> list[RowError]:
    return [RowError(int(r), column, reason) for r in rows[mask.to_numpy()]]


def validate_scores(raw: pd.DataFrame, *, first_row: int = FIRST_DATA_ROW, unit: str = "row") -> ValidationResult:
    """Validate a weekly-scores table read as text (every cell a string, empty = missing).

    Parameters
    ----------
    raw
        The file as read, one column per header cell, cells as strings. Not modified.
    first_row
        The number of the first data row in messages (2 for a file with a header row).
    unit
        What a row is called in messages (``"row"``; ``"resource"`` for FHIR).

    Returns
    -------
    ValidationResult
        ``scores`` in the core column contract (empty when there are errors) and ``errors``.
    """
    frame = raw.copy()
    frame.attrs = {}
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    errors: list[RowError] = []
    dup_cols = frame.columns[frame.columns.duplicated()].unique().tolist()
    if dup_cols:
        return ValidationResult(_empty(), tuple(RowError(1, c, "this column appears twice in the header; "
                                                             "keep one.") for c in dup_cols))
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        return ValidationResult(_empty(), tuple(
            RowError(1, c, "this required column is missing from the header; the header needs "
                           + ", ".join(REQUIRED) + ".") for c in missing))
    item_cols = {c: int(m.group(1)) for c in frame.columns if (m := ITEM_RE.match(c))}
    unknown = [c for c in frame.columns if c not in REQUIRED + OPTIONAL and c not in item_cols]
    errors += [RowError(1, c, "this column is not part of the weekly-scores format; remove or rename it "
                              "(known: " + ", ".join(REQUIRED + OPTIONAL) + ", item_1 … item_N).")
               for c in unknown]
    if frame.empty:
        return ValidationResult(_empty(), tuple(errors) + (
            RowError(first_row, "-", "the file has a header but no data rows; add at least one score."),))

    text = frame.astype("string").fillna("").apply(lambda s: s.str.strip())
    numbers = raw.attrs.get("file_rows")
    if numbers is None or len(numbers) != len(frame):
        numbers = np.arange(len(frame)) + first_row
    rows = pd.Series(np.asarray(numbers, dtype="int64"), index=frame.index)

    for col, limit in (("patient_id", 32), ("therapist_id", 64)):
        val = text[col]
        errors += _errors_for(val.eq(""), rows, col, "is empty; every row needs one.")
        bad = val.ne("") & (~val.str.match(_CODE_RE) | val.str.len().gt(limit))
        errors += _errors_for(bad, rows, col, f"must be a code of letters, digits and . _ - @ "
                                              f"(at most {limit} characters, no spaces).")

    week_num = _num(text["week"])
    week_ok = (week_num.notna() & np.isfinite(week_num) & (week_num == np.floor(week_num)) & (week_num >= 1)
               & (week_num <= MAX_WEEK))
    errors += _errors_for(text["week"].eq(""), rows, "week", "is empty; give the treatment week (1, 2, …).")
    errors += _errors_for(text["week"].ne("") & ~week_ok, rows, "week",
                          f"must be a whole number from 1 to {MAX_WEEK} (the treatment week).")

    reg = instruments.registry()
    code = text["instrument"]
    known = code.isin(list(reg))
    errors += _errors_for(~known, rows, "instrument",
                          "is not a known instrument code; use one of " + ", ".join(sorted(reg)) + ".")

    score_num = _num(text["score"])
    score_given = text["score"].ne("")
    errors += _errors_for(score_given & score_num.isna(), rows, "score", "is not a number.")

    items = pd.DataFrame(index=frame.index)
    for col, _n in sorted(item_cols.items(), key=lambda kv: kv[1]):
        cell = text[col]
        num = _num(cell)
        bad = cell.ne("") & (num.isna() | (num != np.floor(num)))
        errors += _errors_for(bad, rows, col, "must be a whole number (the item response).")
        items[col] = num.where(~bad)

    total = pd.Series(np.nan, index=frame.index)
    for inst_code, idx in frame[known].groupby(code[known]).groups.items():
        inst = reg[str(inst_code)]
        sub_rows = rows.loc[idx]
        have = [c for c in inst.items if c in items.columns]
        extra = [c for c, n in item_cols.items() if n > inst.n_items]
        for col in extra:
            filled = text.loc[idx, col].ne("")
            errors += _errors_for(filled, sub_rows, col, f"{inst.code} has only {inst.n_items} items; "
                                                         f"leave this cell empty.")
        block = items.loc[idx, have] if have else pd.DataFrame(index=idx)
        n_given = block.notna().sum(axis=1) if have else pd.Series(0, index=idx)
        partial = (n_given > 0) & (n_given < inst.n_items)
        errors += _errors_for(partial, sub_rows, "item_1",
                              f"{inst.code} needs all {inst.n_items} item responses or none; "
                              f"this row has only some.")
        for col in have:
            out = block[col].notna() & ((block[col] < inst.item_min) | (block[col] > inst.item_max))
            errors += _errors_for(out, sub_rows, col,
                                  f"is outside {inst.code}'s item range {inst.item_min}–{inst.item_max}.")
        complete = n_given == inst.n_items
        item_total = block.sum(axis=1, min_count=1) if have else pd.Series(np.nan, index=idx)
        s = score_num.loc[idx]
        out_range = s.notna() & ((s < inst.total_min) | (s > inst.total_max))
        errors += _errors_for(out_range, sub_rows, "score",
                              f"is outside {inst.code}'s range {inst.total_min:g}–{inst.total_max:g}.")
        disagree = complete & s.notna() & ((s - item_total).abs() > 1e-9)
        errors += _errors_for(disagree, sub_rows, "score",
                              "does not equal the sum of the item responses; correct the score or the items, "
                              "or leave the score empty to have it computed.")
        no_score = ~score_given.loc[idx] & ~complete
        errors += _errors_for(no_score, sub_rows, "score",
                              "is empty and the items are not all given; give the total or every item.")
        total.loc[idx] = s.where(s.notna(), item_total.where(complete))

    if "administered_on" in frame.columns:
        cell = text["administered_on"]
        date = pd.to_datetime(cell.where(cell.ne("")), format="%Y-%m-%d", errors="coerce")
        errors += _errors_for(cell.ne("") & date.isna(), rows, "administered_on",
                              "must be a date written YYYY-MM-DD.")
    else:
        date = pd.Series(pd.NaT, index=frame.index)

    key = pd.DataFrame({"p": text["patient_id"], "i": code, "w": week_num})
    dup = key.duplicated(keep=False) & week_ok & known & text["patient_id"].ne("")
    if dup.any():
        first = rows.groupby([key["p"], key["i"], key["w"]]).transform("min")
        for r, f, p, i in zip(rows[dup], first[dup], key["p"][dup], key["i"][dup], strict=True):
            if r != f:
                errors.append(RowError(int(r), "week", f"patient {p} already has {i} for this week in "
                                                       f"row {int(f)}; keep one of the two rows."))

    if errors:
        errors = [RowError(e.row, e.column, e.reason, unit) for e in errors]
        return ValidationResult(_empty(), tuple(sorted(set(errors), key=lambda e: (e.row, e.column))))
    out = pd.DataFrame({
        "patient_id": text["patient_id"].astype(str),
        "therapist_id": text["therapist_id"].astype(str),
        "instrument": code.astype(str),
        "week": week_num.astype("int64"),
        "score": total.astype("float64"),
        "administered_on": date.dt.date,
    })
    width = max(item_cols.values(), default=0)
    for n in range(1, width + 1):
        col = f"item_{n}"
        out[col] = items[col].astype("float64") if col in items.columns else np.nan
    out = out.reset_index(drop=True)
    if numbers is not None and not np.array_equal(rows.to_numpy(), np.arange(len(rows)) + first_row):
        out.attrs["file_rows"] = rows.to_numpy()
    return ValidationResult(out)


def _empty() -> pd.DataFrame:
    return pd.DataFrame({
        "patient_id": pd.Series(dtype=str), "therapist_id": pd.Series(dtype=str),
        "instrument": pd.Series(dtype=str), "week": pd.Series(dtype="int64"),
        "score": pd.Series(dtype="float64"), "administered_on": pd.Series(dtype=object),
    })


def _locate(data: bytes, pos: int) -> tuple[int, str]:
    """File row (header = 1) and column name of byte ``pos`` in a CSV file."""
    row = data.count(b"\n", 0, pos) + 1
    line_start = data.rfind(b"\n", 0, pos) + 1
    header = data.split(b"\n", 1)[0].replace(b"\x00", b"").decode("utf-8-sig", errors="replace")
    delimiter = ";" if header.count(";") > header.count(",") else ","
    names = [c.strip() for c in header.rstrip("\r").split(delimiter)]
    index = data[line_start:pos].count(delimiter.encode())
    return row, names[index] if index < len(names) else f"#{index + 1}"


def read_scores_csv(data: bytes, *, max_bytes: int = MAX_BYTES) -> pd.DataFrame:
    """Read a weekly-scores CSV (UTF-8 with or without BOM; comma or semicolon) as text cells.

    The delimiter is the one the header row uses most (``;`` or ``,``). Rows that are
    entirely empty are skipped.

    Raises
    ------
    ValueError
        With a plain sentence naming the row (and column where there is one) for files
        that cannot be read at all: too large, NUL bytes, not UTF-8, empty, bad quoting,
        a row with more or fewer cells than the header.
    """
    import csv
    import io

    if len(data) > max_bytes:
        raise ValueError(f"The file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB. "
                         f"Split it into smaller files.")
    if b"\x00" in data:
        row, column = _locate(data, data.index(b"\x00"))
        raise ValueError(f"row {row}, column {column}: the file contains NUL bytes, so it is not a text CSV "
                         f"file; export it again as CSV (UTF-8).")
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        offset = 3 if data.startswith(b"\xef\xbb\xbf") else 0
        row, column = _locate(data, exc.start + offset)
        raise ValueError(f"row {row}, column {column}: the file is not UTF-8 text (a byte here cannot be "
                         f"read); save it as CSV UTF-8 and import it again.") from exc
    if not content.strip():
        raise ValueError("row 1, column -: the file is empty; it needs a header row and at least one score.")
    header = content.splitlines()[0]
    delimiter = ";" if header.count(";") > header.count(",") else ","
    if '"' not in content:
        return _fast_table(content, delimiter)
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, strict=True)
    rows: list[list[str]] = []
    numbers: list[int] = []
    try:
        for record in reader:
            rows.append(record)
            numbers.append(reader.line_num)
    except csv.Error as exc:
        raise ValueError(f"row {reader.line_num}, column -: the file is not valid CSV here ({exc}); check "
                         f"its quotes.") from exc
    return _table(rows, numbers)


def _fast_table(content: str, delimiter: str) -> pd.DataFrame:
    """A quote-free CSV read with pandas' C parser; ragged rows found by counting delimiters."""
    import io

    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    counts = np.fromiter((line.count(delimiter) for line in lines), dtype="int64", count=len(lines))
    width = int(counts[0]) + 1
    ragged = np.flatnonzero(counts[1:] != width - 1) + 1
    for k in ragged:
        if lines[k].replace(delimiter, "").strip():
            head = [c.strip() for c in lines[0].rstrip("\r").split(delimiter)]
            n = int(counts[k]) + 1
            column = head[n] if n < width else f"#{width + 1} (beyond the header)"
            raise ValueError(f"row {k + 1}, column {column}: this row has {n} cells but the header has "
                             f"{width}; every row needs one cell per column.")
    frame = pd.read_csv(io.StringIO(content), sep=delimiter, dtype="string", keep_default_na=False,
                        na_filter=False, skip_blank_lines=False, index_col=False, engine="c", quoting=3)
    frame.columns = [str(c).strip() for c in frame.columns]
    return _drop_blank(frame, np.arange(len(frame)) + FIRST_DATA_ROW)


def _drop_blank(frame: pd.DataFrame, numbers: np.ndarray) -> pd.DataFrame:
    """Drop entirely empty rows; remember each remaining row's file row in ``attrs['file_rows']``."""
    if len(frame) and len(frame.columns):
        empty = frame.fillna("").apply(lambda s: s.str.strip().eq("")).all(axis=1).to_numpy()
        frame, numbers = frame[~empty].reset_index(drop=True), numbers[~empty]
    numbers = np.asarray(numbers, dtype="int64")
    if not np.array_equal(numbers, np.arange(len(numbers)) + FIRST_DATA_ROW):
        frame.attrs["file_rows"] = numbers  # only when blank rows were skipped
    return frame


def _table(rows: list[list[str]], numbers: list[int] | None = None) -> pd.DataFrame:
    """Header + body rows as a text frame; ragged rows are an error naming the row."""
    head = [cell.strip() for cell in rows[0]]
    if not any(head):
        raise ValueError("row 1, column -: the first row is empty; it must be the header "
                         "(patient_id, therapist_id, week, instrument, score, …).")
    file_rows = np.asarray(numbers if numbers is not None else range(1, len(rows) + 1), dtype="int64")
    width = len(head)
    lengths = np.fromiter(map(len, rows), dtype="int64", count=len(rows))
    blank = []
    for k in np.flatnonzero(lengths[1:] != width) + 1:  # only rows whose length differs: usually none
        row = rows[k]
        if not any(cell.strip() for cell in row):
            blank.append(int(k))
            continue
        column = head[len(row)] if len(row) < width else f"#{width + 1} (beyond the header)"
        raise ValueError(f"row {file_rows[k]}, column {column}: this row has {len(row)} cells but the "
                         f"header has {width}; every row needs one cell per column.")
    keep = np.setdiff1d(np.arange(1, len(rows)), blank)
    body = [rows[k] for k in keep]
    columns = list(zip(*body, strict=True)) if body else [()] * width
    frame = pd.DataFrame({i: pd.array(np.array(col, dtype=object), dtype="string")
                          for i, col in enumerate(columns)})
    frame.columns = head
    return _drop_blank(frame, file_rows[keep])


def read_scores_xlsx(data: bytes, *, max_bytes: int = MAX_BYTES) -> pd.DataFrame:
    """Read the first sheet of an Excel workbook (.xlsx) in the weekly-scores format as text cells.

    Numbers that Excel stores as floats but that are whole (``3.0``) become ``"3"``; dates
    become ``YYYY-MM-DD``. Raises ``ValueError`` for files that are not a readable workbook.
    """
    import datetime as dt
    import io
    import zipfile

    import openpyxl

    if len(data) > max_bytes:
        raise ValueError(f"The file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB. "
                         f"Split it into smaller files.")
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise ValueError("row 1, column -: the file is not a readable Excel workbook (.xlsx); save it again "
                         "from Excel as .xlsx, or export it as CSV UTF-8.") from exc

    def cell(v: object) -> str:
        if v is None:
            return ""
        if isinstance(v, bool):
            return str(v)
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        if isinstance(v, dt.datetime):
            return v.date().isoformat() if v.time() == dt.time() else v.isoformat()
        if isinstance(v, dt.date):
            return v.isoformat()
        return str(v)

    try:
        rows = [[cell(v) for v in r] for r in book.worksheets[0].iter_rows(values_only=True)]
    finally:
        book.close()
    while rows and not any(rows[-1]):
        rows.pop()
    if not rows:
        raise ValueError("row 1, column -: the workbook's first sheet is empty; it needs a header row and at "
                         "least one score.")
    width = max(len(r) for r in rows)
    head_width = max((i + 1 for i, v in enumerate(rows[0]) if v.strip()), default=0)
    for number, r in enumerate(rows[1:], start=FIRST_DATA_ROW):
        extra = [i for i in range(head_width, len(r)) if r[i].strip()]
        if extra:
            raise ValueError(f"row {number}, column #{extra[0] + 1} (beyond the header): this row has a value in a "
                             f"column without a header; give it a header or remove the value.")
    rows = [(r + [""] * width)[:head_width] for r in rows]
    return _table(rows)


def read_scores_file(data: bytes, *, name: str, max_bytes: int = MAX_BYTES) -> pd.DataFrame:
    """Read a CSV or Excel weekly-scores file as text cells (Excel when named .xlsx or a zip)."""
    if name.lower().endswith(".xlsx") or data[:4] == b"PK\x03\x04":
        return read_scores_xlsx(data, max_bytes=max_bytes)
    return read_scores_csv(data, max_bytes=max_bytes)


def summarise_items(instrument: str, responses: list[float | None]) -> tuple[float | None, dict[str, float | None]]:
    """Total and subscale scores of one questionnaire while it is being entered.

    ``responses`` holds item 1 first, ``None`` for an item not yet answered. The total is
    the sum of the items when all are answered (else ``None``); a subscale likewise needs
    all of its items.
    """
    inst = instruments.get(instrument)
    values = list(responses) + [None] * (inst.n_items - len(responses))
    total = float(sum(values)) if all(v is not None for v in values) else None  # type: ignore[arg-type]
    subs = {}
    for name, numbers in inst.subscales.items():
        part = [values[i - 1] for i in numbers]
        subs[name] = float(sum(part)) if all(v is not None for v in part) else None  # type: ignore[arg-type]
    return total, subs
