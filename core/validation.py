"""The one validator for every way scores come in (CSV, Excel, weekly entry, FHIR).

It checks a weekly-scores table (CONTRACT.md) cell by cell and collects **every** problem in
the file, each naming the file row, the column and the reason in plain words, never echoing
a health value beyond the patient code. Checks, in order:

* required columns present (``patient_id, therapist_id, week, instrument, score``; ``score``
  may be left empty on rows whose items are all given);
* ``patient_id`` and ``therapist_id`` non-empty, printable, at most 32/64 characters;
* ``week`` a whole number from 1 to ``MAX_WEEK``, written with digits only (``2.0`` and ``1e1``
  are refused: a week is counted, never measured);
* ``instrument`` a code of the registry;
* ``score`` a number within the instrument's total range, and a whole number for instruments
  whose total is a sum of whole item responses (every instrument of the registry);
* ``item_N`` whole numbers within the item range, only for items the instrument has, all or
  none of an instrument's items; when items are given the score is their sum and a given
  ``score`` must agree;
* ``administered_on`` an ISO date (YYYY-MM-DD);
* the patient's calendar, optional: ``start_date`` and ``status_since`` ISO dates,
  ``patient_status`` one of ``PATIENT_STATUSES``; every row of a patient that gives one gives the
  same value (an empty cell says nothing);
* no two rows for the same patient, instrument and week (conflicts with *stored* scores are
  checked by the database layer, which knows them).

Rows are numbered as a spreadsheet shows them: the header is row 1, the first data row is
row 2. Every problem is counted, but at most ``MAX_REPORTED_ERRORS`` are kept (the first ones
by row), so a file with millions of bad cells costs no more than a file with a hundred.

Reading is bounded too: a file of at most ``MAX_BYTES``; a workbook whose parts would inflate
beyond ``MAX_INFLATED_BYTES`` (or compress suspiciously well) is refused before it is opened;
at most ``MAX_ROWS`` rows (Excel's own limit) and, in a workbook, ``MAX_CELLS`` cells.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core import instruments

REQUIRED = ("patient_id", "therapist_id", "week", "instrument", "score")
OPTIONAL = ("administered_on", "start_date", "patient_status", "status_since")
#: Optional per-patient columns (the treatment calendar): one value per patient in a file.
PATIENT_COLUMNS = ("start_date", "patient_status", "status_since")
#: Patient statuses an import may set (``db.models.PATIENT_STATUSES``).
PATIENT_STATUSES = ("active", "paused", "completed", "dropped_out", "discharged")
ITEM_RE = re.compile(r"^item_([1-9][0-9]*)$")
_CODE_RE = r"^[A-Za-z0-9][A-Za-z0-9._@-]*$"
FIRST_DATA_ROW = 2
#: The largest treatment week accepted (project choice: ten years of weekly questionnaires).
MAX_WEEK = 520
#: One megabyte as Streamlit counts ``server.maxUploadSize`` (and as every size message here does).
MB = 1024 * 1024
#: Default size limit of an uploaded or imported file: 50 MB (docs/data-formats.md).
MAX_BYTES = 50 * MB
#: An Excel workbook is a zip archive: the most its parts may unpack to, in total (a sheet of
#: 860,000 five-column rows is about 200 MB).
MAX_INFLATED_BYTES = 200 * MB
#: The highest compression ratio a part larger than ``RATIO_FLOOR`` may have (Excel's sheets
#: compress 5-20 times; zip bombs thousands of times).
MAX_RATIO = 100
RATIO_FLOOR = MB
#: Excel's own limit of rows in a sheet (the header included); CSV files are held to it too.
MAX_ROWS = 1_048_576
#: The most cells a sheet may span (rows x columns as written): 900,000 rows of six columns, or
#: 400,000 with item responses. It bounds the work a sheet of very wide rows could make.
MAX_CELLS = 10_000_000
#: Problems listed per file; the others are counted ("… and N more").
MAX_REPORTED_ERRORS = 100


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
    """The typed rows (core column contract) and the problems found.

    ``errors`` holds the first problems by row (at most ``MAX_REPORTED_ERRORS`` from
    :func:`validate_scores`); ``error_count`` counts them all (``None``: ``len(errors)``).
    """

    scores: pd.DataFrame
    errors: tuple[RowError, ...] = field(default_factory=tuple)
    error_count: int | None = None

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def n_errors(self) -> int:
        """How many problems the file has, listed or not."""
        return len(self.errors) if self.error_count is None else max(self.error_count, len(self.errors))


def size_problem(n_bytes: int, limit: int) -> str:
    """The sentence for a file over the size limit, in the unit the docs and the upload box use."""
    def size(n: int) -> str:
        return f"{n / MB:.0f} MB" if n % MB == 0 else (f"{n / MB:.1f} MB" if n >= MB // 10 else f"{n:,} bytes")

    return f"The file is {size(n_bytes)}; the limit is {size(limit)}. Split it into smaller files."


def more_problems(result: ValidationResult) -> str | None:
    """The line that ends a truncated list of problems, or ``None`` when every problem is listed."""
    hidden = result.n_errors - len(result.errors)
    if hidden <= 0:
        return None
    listed = len(result.errors)
    return (f"… and {hidden:,} more problem{'s' if hidden != 1 else ''} (only the first "
            f"{'one is' if listed == 1 else f'{listed} are'} listed); correct these, then check the file again.")


def limit_errors(errors: list[RowError], *, count: int | None = None,
                 limit: int = MAX_REPORTED_ERRORS) -> tuple[tuple[RowError, ...], int]:
    """The first ``limit`` problems by row and column, and how many there are in all."""
    unique = sorted(set(errors), key=lambda e: (e.row, e.column))
    total = len(unique) if count is None else count - (len(errors) - len(unique))
    return tuple(unique[:limit]), max(total, min(len(unique), limit))


class _Problems:
    """Every problem of a file, counted; at most ``keep`` kept per check.

    Each check finds its rows in file order, so the first ``keep`` problems of the whole file
    (by row) are always among the kept ones, however many millions there are.
    """

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.kept: list[RowError] = []
        self.count = 0

    def add(self, mask: pd.Series, rows: pd.Series, column: str, reason: str) -> None:
        hit = rows[np.asarray(mask, dtype=bool)]
        self.count += len(hit)
        self.kept += [RowError(int(r), column, reason) for r in hit.iloc[:self.keep]]

    def extend(self, errors: list[RowError], *, count: int | None = None) -> None:
        """Problems found in file order (``count``: how many there are, when more than given)."""
        self.count += len(errors) if count is None else count
        self.kept += errors[:self.keep]

    def result(self, unit: str) -> ValidationResult:
        kept = [RowError(e.row, e.column, e.reason, unit) for e in self.kept]
        errors, count = limit_errors(kept, count=self.count, limit=self.keep)
        return ValidationResult(_empty(), errors, count)


def _num(cells: pd.Series) -> pd.Series:
    """Numbers from text cells as plain float64, NaN where the cell is not a number."""
    return pd.to_numeric(cells, errors="coerce").astype("float64")


_NAME_RE = re.compile(r"^[^\W\d][\w .()-]{0,63}$")


def _column_label(name: str, position: int) -> str:
    """How a message names a header cell: by its text when that looks like a column name, else by
    position (``#6``), so that a score or a code typed into the header is never echoed."""
    return name if _NAME_RE.match(name) else f"#{position}"


def _header_problems(columns: list[str], item_cols: dict[str, int]) -> tuple[list[RowError], bool]:
    """Duplicated, missing and unknown header cells; the flag says whether the rows can be checked."""
    labels = [_column_label(c, k) for k, c in enumerate(columns, start=1)]
    first_at: dict[str, int] = {}
    errors = []
    for k, c in enumerate(columns):
        if c not in first_at:
            first_at[c] = k
        elif k == columns.index(c, first_at[c] + 1):  # report each name once, at its second cell
            errors.append(RowError(1, labels[k], "this column appears twice in the header; keep one."
                                   if labels[k] == c else
                                   f"this header cell repeats column #{first_at[c] + 1}; give each column its "
                                   f"own name from the format."))
    if errors:
        return errors, False
    missing = [c for c in REQUIRED if c not in columns]
    if missing:
        return [RowError(1, c, "this required column is missing from the header; the header needs "
                               + ", ".join(REQUIRED) + ".") for c in missing], False
    unknown = [k for k, c in enumerate(columns) if c not in REQUIRED + OPTIONAL and c not in item_cols]
    if not unknown:
        return [], True
    known = "(known: " + ", ".join(REQUIRED + OPTIONAL) + ", item_1 … item_N)"
    first = labels[unknown[0]]
    hint = (" (its header cell holds a number: is the header row missing, or is a data row above it?)"
            if _looks_numeric(columns[unknown[0]]) else "")
    if len(unknown) == 1:
        return [RowError(1, first, f"this column is not part of the weekly-scores format{hint}; remove or "
                                   f"rename it {known}.")], True
    others = ", ".join(labels[k] for k in unknown[1:4]) + (", …" if len(unknown) > 4 else "")
    return [RowError(1, first, f"this column and {len(unknown) - 1:,} more ({others}) are not part of the "
                               f"weekly-scores format{hint}; remove or rename them {known}.")], True


def _looks_numeric(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _integral_total(inst: instruments.Instrument) -> bool:
    """Whether every total of ``inst`` is a whole number: its items are whole numbers (the
    validator refuses others) between whole bounds, and the total is their sum (core.instruments)."""
    return float(inst.item_min).is_integer() and float(inst.item_max).is_integer()


def validate_scores(raw: pd.DataFrame, *, first_row: int = FIRST_DATA_ROW, unit: str = "row",
                    max_errors: int = MAX_REPORTED_ERRORS) -> ValidationResult:
    """Validate a weekly-scores table read as text (every cell a string, empty = missing).

    Parameters
    ----------
    raw
        The file as read, one column per header cell, cells as strings. Not modified.
    first_row
        The number of the first data row in messages (2 for a file with a header row).
    unit
        What a row is called in messages (``"row"``; ``"resource"`` for FHIR).
    max_errors
        How many problems to keep (the first by row); all of them are counted.

    Returns
    -------
    ValidationResult
        ``scores`` in the core column contract (empty when there are errors), ``errors`` and
        ``error_count``.
    """
    frame = raw.copy(deep=False)
    frame.attrs = {}
    frame.columns = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
    problems = _Problems(max_errors)
    columns = list(frame.columns)
    item_cols = {c: int(m.group(1)) for c in columns if (m := ITEM_RE.match(c))}
    header, rows_checkable = _header_problems(columns, item_cols)
    problems.extend(header)
    if not rows_checkable:
        return problems.result(unit)
    frame = frame[[c for c in columns if c in REQUIRED + OPTIONAL or c in item_cols]]
    if frame.empty:
        problems.extend([RowError(first_row, "-", "the file has a header but no data rows; add at least one "
                                                  "score.")])
        return problems.result(unit)

    text = frame.astype("string").fillna("").apply(lambda s: s.str.strip())
    numbers = raw.attrs.get("file_rows")
    if numbers is None or len(numbers) != len(frame):
        numbers = np.arange(len(frame)) + first_row
    rows = pd.Series(np.asarray(numbers, dtype="int64"), index=frame.index)

    for col, limit in (("patient_id", 32), ("therapist_id", 64)):
        val = text[col]
        problems.add(val.eq(""), rows, col, "is empty; every row needs one.")
        bad = val.ne("") & (~val.str.match(_CODE_RE) | val.str.len().gt(limit))
        problems.add(bad, rows, col, f"must be a code of letters, digits and . _ - @ "
                                     f"(at most {limit} characters, no spaces).")

    digits = text["week"].str.fullmatch(r"[0-9]{1,6}").fillna(False).astype(bool)
    week_num = _num(text["week"].where(digits, ""))
    week_ok = digits & (week_num >= 1) & (week_num <= MAX_WEEK)
    problems.add(text["week"].eq(""), rows, "week", "is empty; give the treatment week (1, 2, …).")
    problems.add(text["week"].ne("") & ~week_ok, rows, "week",
                 f"must be a whole number from 1 to {MAX_WEEK} written with digits only (the treatment week, "
                 f"e.g. 2, not 2.0).")

    reg = instruments.registry()
    code = text["instrument"]
    known = code.isin(list(reg))
    problems.add(~known, rows, "instrument",
                 "is not a known instrument code; use one of " + ", ".join(sorted(reg)) + ".")

    score_num = _num(text["score"])
    score_given = text["score"].ne("")
    problems.add(score_given & score_num.isna(), rows, "score", "is not a number.")

    items = pd.DataFrame(index=frame.index)
    for col, _n in sorted(item_cols.items(), key=lambda kv: kv[1]):
        cell = text[col]
        num = _num(cell)
        bad = cell.ne("") & (num.isna() | (num != np.floor(num)))
        problems.add(bad, rows, col, "must be a whole number (the item response).")
        items[col] = num.where(~bad)

    total = pd.Series(np.nan, index=frame.index)
    for inst_code, idx in frame[known].groupby(code[known]).groups.items():
        inst = reg[str(inst_code)]
        sub_rows = rows.loc[idx]
        have = [c for c in inst.items if c in items.columns]
        extra = [c for c, n in item_cols.items() if n > inst.n_items]
        for col in extra:
            filled = text.loc[idx, col].ne("")
            problems.add(filled, sub_rows, col, f"{inst.code} has only {inst.n_items} items; leave this cell empty.")
        block = items.loc[idx, have] if have else pd.DataFrame(index=idx)
        n_given = block.notna().sum(axis=1) if have else pd.Series(0, index=idx)
        partial = (n_given > 0) & (n_given < inst.n_items)
        problems.add(partial, sub_rows, "item_1", f"{inst.code} needs all {inst.n_items} item responses or none; "
                                                  f"this row has only some.")
        for col in have:
            out = block[col].notna() & ((block[col] < inst.item_min) | (block[col] > inst.item_max))
            problems.add(out, sub_rows, col, f"is outside {inst.code}'s item range {inst.item_min}–{inst.item_max}.")
        complete = n_given == inst.n_items
        item_total = block.sum(axis=1, min_count=1) if have else pd.Series(np.nan, index=idx)
        s = score_num.loc[idx]
        out_range = s.notna() & ((s < inst.total_min) | (s > inst.total_max))
        problems.add(out_range, sub_rows, "score",
                     f"is outside {inst.code}'s range {inst.total_min:g}–{inst.total_max:g}.")
        if _integral_total(inst):
            fraction = s.notna() & ~out_range & (s != np.floor(s))
            problems.add(fraction, sub_rows, "score", f"must be a whole number: a {inst.code} total is the sum of "
                                                      f"its whole-number item responses.")
        disagree = complete & s.notna() & ((s - item_total).abs() > 1e-9)
        problems.add(disagree, sub_rows, "score",
                     "does not equal the sum of the item responses; correct the score or the items, "
                     "or leave the score empty to have it computed.")
        no_score = ~score_given.loc[idx] & ~complete
        problems.add(no_score, sub_rows, "score",
                     "is empty and the items are not all given; give the total or every item.")
        total.loc[idx] = s.where(s.notna(), item_total.where(complete))

    if "administered_on" in frame.columns:
        cell = text["administered_on"]
        date = pd.to_datetime(cell.where(cell.ne("")), format="%Y-%m-%d", errors="coerce")
        problems.add(cell.ne("") & date.isna(), rows, "administered_on", "must be a date written YYYY-MM-DD.")
    else:
        date = pd.Series(pd.NaT, index=frame.index)

    calendar = {}
    for col in PATIENT_COLUMNS:
        if col not in frame.columns:
            continue
        cell = text[col]
        if col == "patient_status":
            value = cell.str.lower()
            problems.add(value.ne("") & ~value.isin(PATIENT_STATUSES), rows, col,
                         "must be one of " + ", ".join(PATIENT_STATUSES) + " (or empty).")
            calendar[col] = value.where(value.ne(""))
        else:
            day = pd.to_datetime(cell.where(cell.ne("")), format="%Y-%m-%d", errors="coerce")
            problems.add(cell.ne("") & day.isna(), rows, col, "must be a date written YYYY-MM-DD (or empty).")
            calendar[col] = day.dt.date.where(day.notna(), None)
            value = cell
        given = value.ne("") & text["patient_id"].ne("")
        firsts = value[given].groupby(text["patient_id"][given]).transform("first")
        other = pd.Series(False, index=frame.index)
        other[given] = value[given].ne(firsts)
        bad_rows = other[other].index[:max_errors]
        problems.extend([RowError(int(rows[k]), col, f"patient {text['patient_id'][k]} has another {col} in an "
                                                      f"earlier row; give one value per patient (or leave the "
                                                      f"other cells empty).") for k in bad_rows],
                        count=int(other.sum()))

    if "start_date" in calendar and "status_since" in calendar:
        start = pd.to_datetime(calendar["start_date"], errors="coerce")
        since = pd.to_datetime(calendar["status_since"], errors="coerce")
        problems.add(start.notna() & since.notna() & (since < start), rows, "status_since",
                     "is before the row's start_date; a status cannot begin before the treatment started.")

    key = pd.DataFrame({"p": text["patient_id"], "i": code, "w": week_num})
    dup = key.duplicated(keep=False) & week_ok & known & text["patient_id"].ne("")
    if dup.any():
        first = rows.groupby([key["p"], key["i"], key["w"]]).transform("min")
        later = dup & (rows != first)
        shown = later[later].index[:max_errors]
        problems.extend([RowError(int(rows[k]), "week", f"patient {key['p'][k]} already has {key['i'][k]} for this "
                                                        f"week in row {int(first[k])}; keep one of the two rows.")
                         for k in shown], count=int(later.sum()))

    if problems.count:
        return problems.result(unit)
    out = pd.DataFrame({
        "patient_id": text["patient_id"].astype(str),
        "therapist_id": text["therapist_id"].astype(str),
        "instrument": code.astype(str),
        "week": week_num.astype("int64"),
        "score": total.astype("float64"),
        "administered_on": date.dt.date,
    })
    for col, values in calendar.items():
        out[col] = values.astype(object).to_numpy()
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
        raise ValueError(size_problem(len(data), max_bytes))
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
    if content.count("\n") + (not content.endswith("\n")) > MAX_ROWS:
        raise ValueError(f"row {MAX_ROWS + 1:,}, column -: the file has more than {MAX_ROWS:,} rows; split it into "
                         f"smaller files.")
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
    # the header as written: pandas would rename a repeated "week" to "week.1"
    frame.columns = [c.strip() for c in lines[0].rstrip("\r").split(delimiter)]
    return _drop_blank(frame, np.arange(len(frame)) + FIRST_DATA_ROW)


def _drop_blank(frame: pd.DataFrame, numbers: np.ndarray) -> pd.DataFrame:
    """Drop entirely empty rows; remember each remaining row's file row in ``attrs['file_rows']``."""
    if len(frame) and len(frame.columns):
        # judged on the format's columns only (a file with other columns is refused anyway), so
        # that 20,000 stray columns cost nothing
        names = [str(c).strip().lstrip("\ufeff") for c in frame.columns]
        ours = [k for k, c in enumerate(names) if c in REQUIRED + OPTIONAL or ITEM_RE.match(c)]
        probe = frame.iloc[:, ours] if ours else frame
        empty = probe.fillna("").apply(lambda s: s.str.strip().eq("")).all(axis=1).to_numpy()
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


class _Refusal(ValueError):
    """A workbook refused with a sentence of its own (its size, shape or a cell), not as damaged."""


_NOT_A_WORKBOOK = ("row 1, column -: the file is not a readable Excel workbook (.xlsx); save it again from Excel "
                   "as .xlsx, or export it as CSV UTF-8.")


def check_workbook_archive(data: bytes) -> None:
    """Refuse a workbook (a zip archive) that would unpack to more than ``MAX_INFLATED_BYTES``, or
    whose parts compress more than ``MAX_RATIO`` times: checked from the archive's directory
    before anything is unpacked. (Python's zipfile stops a part that inflates beyond the size
    its directory declares, so the declared sizes bound the work.)

    Raises
    ------
    ValueError
        A sentence naming the limit, or saying the file is not a workbook.
    """
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ValueError(_NOT_A_WORKBOOK) from exc
    inflated = sum(part.file_size for part in parts)
    if inflated > MAX_INFLATED_BYTES or len(parts) > 10_000:
        raise _Refusal(f"row 1, column -: this workbook would unpack to {inflated / MB:,.0f} MB in {len(parts):,} "
                       f"parts, more than the {MAX_INFLATED_BYTES / MB:.0f} MB a weekly-scores workbook can "
                       f"need, so it was not opened; split the sheet into smaller workbooks or export it as CSV "
                       f"UTF-8.")
    for part in parts:
        if part.file_size > RATIO_FLOOR and part.file_size > MAX_RATIO * max(part.compress_size, 1):
            raise _Refusal(f"row 1, column -: a part of this workbook ({part.filename[:60]}) is compressed "
                           f"{part.file_size / max(part.compress_size, 1):,.0f} times, far more than a "
                           f"spreadsheet ever is, so it was not opened (it may be built to exhaust the server); "
                           f"save the sheet again from Excel, or export it as CSV UTF-8.")


def _xlsx_text(v: object) -> str:
    """One cell as text: whole floats as ``3``, dates as ``YYYY-MM-DD``."""
    import datetime as dt

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


def _sheet_rows(sheet: Any) -> list[list[str]]:
    """Every row of a read-only sheet to its real end, as text cells under the header's columns.

    The ``<dimension>`` a workbook declares is ignored (``reset_dimensions``): a stale one
    (``A1:E4`` over ten rows) would otherwise cut the sheet short without a word. Bounded by
    ``MAX_ROWS`` rows and ``MAX_CELLS`` cells as the sheet spans them; a value right of the
    header's last column is an error.
    """
    sheet.reset_dimensions()
    rows: list[list[str]] = []
    width = cells = 0
    for values in sheet.iter_rows(min_row=1, min_col=1, values_only=True):
        cells += len(values)
        if len(rows) >= MAX_ROWS or cells > MAX_CELLS:
            what = f"{MAX_ROWS:,} rows" if len(rows) >= MAX_ROWS else f"{MAX_CELLS:,} cells"
            raise _Refusal(f"row {len(rows) + 1:,}, column -: the sheet holds more than {what}; split it into "
                           f"smaller files (a weekly-scores file needs a few columns per row).")
        if not rows:
            head = [_xlsx_text(v) for v in values]
            width = max((i + 1 for i, v in enumerate(head) if v.strip()), default=0)
            rows.append(head[:width])
            continue
        beyond = values[width:]
        extra = (next((i for i, v in enumerate(beyond, start=width) if _xlsx_text(v).strip()), None)
                 if beyond.count(None) < len(beyond) else None)
        if extra is not None:
            raise _Refusal(f"row {len(rows) + 1}, column #{extra + 1} (beyond the header): this row has a value "
                             f"in a column without a header; give it a header or remove the value.")
        row = [_xlsx_text(v) for v in values[:width]]
        rows.append(row + [""] * (width - len(row)) if len(row) < width else row)
    return rows


def read_scores_xlsx(data: bytes, *, max_bytes: int = MAX_BYTES) -> pd.DataFrame:
    """Read the first sheet of an Excel workbook (.xlsx) in the weekly-scores format as text cells.

    Numbers that Excel stores as floats but that are whole (``3.0``) become ``"3"``; dates
    become ``YYYY-MM-DD``. Every row present is read, whatever range the workbook declares.

    Raises
    ------
    ValueError
        One sentence for a file that is too large (as a file, unpacked, or in rows and columns)
        or not a readable workbook (damaged archive, malformed sheet XML, …).
    """
    import io

    import openpyxl

    if len(data) > max_bytes:
        raise ValueError(size_problem(len(data), max_bytes))
    check_workbook_archive(data)
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            rows = _sheet_rows(book.worksheets[0])
        finally:
            book.close()
    except _Refusal:
        raise
    except Exception as exc:  # openpyxl and the XML parser raise a dozen kinds on a damaged file
        raise ValueError(_NOT_A_WORKBOOK) from exc
    while rows and not any(rows[-1]):
        rows.pop()
    if not rows:
        raise ValueError("row 1, column -: the workbook's first sheet is empty; it needs a header row and at "
                         "least one score.")
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
