"""Item answers as the database stores them: JSON lists of whole numbers (``"[1, 2, 3]"``).

Decoded without a ``json.loads`` per row (bench/items.py has the figures), for the readers in
``db/`` and for the weekly-scores export (``core.exporting.weekly_scores_csv``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Bytes a stored item list may hold: digits, brackets, commas, the list separator and blanks.
_ITEM_BYTES = np.zeros(256, dtype=bool)
_ITEM_BYTES[np.frombuffer(b"0123456789[],; \t\n", dtype=np.uint8)] = True


def _is_digit(b: np.ndarray) -> np.ndarray:
    return (b >= 48) & (b <= 57)


def _parse_numbers(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Numbers of any length in ``d,d;d,…`` bytes: each digit weighted by its place, summed per number."""
    idx = np.flatnonzero(_is_digit(raw))
    token = np.cumsum((raw == 44) | (raw == 59), dtype=np.int32)[idx]  # which number each digit belongs to
    row = np.cumsum(raw == 59, dtype=np.int32)[idx]  # which stored list it is in
    last = np.r_[token[1:] != token[:-1], True]
    place = np.minimum.accumulate(np.where(last, np.arange(len(idx)), len(idx))[::-1])[::-1] - np.arange(len(idx))
    n_tok = int(token[-1]) + 1
    values = np.bincount(token, weights=(raw[idx] - 48) * 10.0 ** place, minlength=n_tok)
    row_of = np.zeros(n_tok, dtype=np.int64)
    row_of[token] = row
    return values, np.bincount(row_of, minlength=int(row_of.max()) + 1)


def decode_items(texts: pd.Series) -> np.ndarray:
    """Item lists stored as JSON text (``"[1, 2, 3]"``) as a float matrix (NaN where absent).

    Item answers are whole numbers >= 0 (every instrument's item range). All lists are joined
    into one byte string and parsed with ``numpy`` alone, then laid into the matrix by row and
    position: when every answer is one digit (all the registry's instruments) the digits are
    every other byte; otherwise each digit is weighted by its place in its number and summed per
    number (``bincount``). No ``json.loads`` per row (bench/items.py has the figures).
    """
    s = pd.Series(texts, dtype=object).reset_index(drop=True)
    given = (s.notna() & ~s.isin(["null", "[]"])).to_numpy()
    if not given.any():
        return np.full((len(s), 0), np.nan)
    joined = ";".join(s[given].tolist()).replace(" ", "").replace("[", "").replace("]", "")
    raw = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
    if not _ITEM_BYTES[raw].all():
        raise ValueError("Stored item answers are not lists of whole numbers; run manage.py export to see them "
                         "and re-import the affected scores.")
    rows_given = np.flatnonzero(given)
    if len(raw) % 2 == 1 and not _is_digit(raw[1::2]).any() and _is_digit(raw[0::2]).all():
        # every answer is one digit (all of the registry's instruments): digit, separator, digit, …
        values = (raw[0::2] - 48).astype(np.float64)
        ends = np.r_[np.flatnonzero(raw[1::2] == 59), len(values) - 1]  # last answer of each list
        per_row = np.diff(np.r_[-1, ends])
    else:
        values, per_row = _parse_numbers(raw)
    row_of = np.repeat(np.arange(len(per_row)), per_row)
    col = np.arange(len(values)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    matrix = np.full((len(s), int(per_row.max())), np.nan)
    matrix[rows_given[row_of], col] = values
    return matrix
