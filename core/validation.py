"""The one validator for every way scores come in (CSV, Excel, weekly entry, FHIR).

It checks a weekly-scores table (CONTRACT.md) cell by cell and collects **every** problem in
the file, each naming the file row, the column and the reason in plain words, never echoing
a health value beyond the patient code. Checks, in order:

* required columns present (``patient_id, therapist_id, week, instrument, score``; ``score``
  may be left empty on rows whose items are all given);
* ``patient_id`` and ``therapist_id`` non-empty, printable, at most 32/64 characters;
* ``week`` a whole number >= 1;
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


@dataclass(frozen=True)
class RowError:
    """One problem: file row (header = 1), column, and a plain-language reason."""

    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row else "file"
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


def validate_scores(raw: pd.DataFrame) -> ValidationResult:
    """Validate a weekly-scores table read as text (every cell a string, empty = missing).

    Parameters
    ----------
    raw
        The file as read, one column per header cell, cells as strings. Not modified.

    Returns
    -------
    ValidationResult
        ``scores`` in the core column contract (empty when there are errors) and ``errors``.
    """
    frame = raw.copy()
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
            RowError(0, "-", "the file has a header but no data rows; add at least one score."),))

    text = frame.astype("string").fillna("").apply(lambda s: s.str.strip())
    rows = pd.Series(np.arange(len(frame)) + FIRST_DATA_ROW, index=frame.index)

    for col, limit in (("patient_id", 32), ("therapist_id", 64)):
        val = text[col]
        errors += _errors_for(val.eq(""), rows, col, "is empty; every row needs one.")
        bad = val.ne("") & (~val.str.match(_CODE_RE) | val.str.len().gt(limit))
        errors += _errors_for(bad, rows, col, f"must be a code of letters, digits and . _ - @ "
                                              f"(at most {limit} characters, no spaces).")

    week_num = _num(text["week"])
    week_ok = week_num.notna() & np.isfinite(week_num) & (week_num == np.floor(week_num)) & (week_num >= 1)
    errors += _errors_for(text["week"].eq(""), rows, "week", "is empty; give the treatment week (1, 2, …).")
    errors += _errors_for(text["week"].ne("") & ~week_ok, rows, "week",
                          "must be a whole number of 1 or more (the treatment week).")

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
    return ValidationResult(out.reset_index(drop=True))


def _empty() -> pd.DataFrame:
    return pd.DataFrame({
        "patient_id": pd.Series(dtype=str), "therapist_id": pd.Series(dtype=str),
        "instrument": pd.Series(dtype=str), "week": pd.Series(dtype="int64"),
        "score": pd.Series(dtype="float64"), "administered_on": pd.Series(dtype=object),
    })


def read_scores_csv(data: bytes, *, max_bytes: int = 50 * 1024 * 1024) -> pd.DataFrame:
    """Read a weekly-scores CSV (UTF-8 with or without BOM; comma or semicolon) as text cells.

    Raises ``ValueError`` with a plain sentence for files that cannot be read at all
    (too large, not UTF-8, NUL bytes, ragged rows, empty).
    """
    import csv
    import io

    if len(data) > max_bytes:
        raise ValueError(f"The file is {len(data) / 1e6:.1f} MB; the limit is {max_bytes / 1e6:.0f} MB. "
                         f"Split it into smaller files.")
    if b"\x00" in data:
        raise ValueError("The file contains NUL bytes, so it is not a text CSV file; export it again as "
                         "CSV (UTF-8).")
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"The file is not UTF-8 text (byte {exc.start} cannot be read); save it as "
                         f"CSV UTF-8 and import it again.") from exc
    if not content.strip():
        raise ValueError("The file is empty; it needs a header row and at least one score.")
    header = content.splitlines()[0]
    delimiter = ";" if header.count(";") > header.count(",") else ","
    reader = csv.reader(io.StringIO(content, newline=""), delimiter=delimiter, strict=True)
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise ValueError(f"The file is not valid CSV near line {reader.line_num} ({exc}); check its "
                         f"quotes.") from exc
    head, body = rows[0], [r for r in rows[1:] if any(cell.strip() for cell in r)]
    for number, row in enumerate(rows[1:], start=FIRST_DATA_ROW):
        if any(cell.strip() for cell in row) and len(row) != len(head):
            raise ValueError(f"Row {number} has {len(row)} cells but the header has {len(head)}; every row "
                             f"needs one cell per column.")
    return pd.DataFrame(body, columns=head, dtype="string")
