"""Safe CSV export: cells that a spreadsheet would run as a formula are escaped.

A cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is prefixed with
a single quote (OWASP, "CSV Injection"). Numbers are left as numbers: a negative number is
data, not a formula, and stays readable.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def escape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose text cells cannot start a spreadsheet formula."""
    out = frame.copy()
    for col in out.columns:
        if pd.api.types.is_numeric_dtype(out[col]) or pd.api.types.is_bool_dtype(out[col]):
            continue
        text = out[col].astype("string")
        risky = text.str.startswith(FORMULA_START).fillna(False)
        out[col] = text.where(~risky, "'" + text).astype(object).where(out[col].notna(), None)
    return out


def to_csv_bytes(frame: pd.DataFrame) -> bytes:
    """UTF-8 CSV of ``frame`` with formulas escaped, no index."""
    return escape_formulas(frame).to_csv(index=False, lineterminator="\n").encode("utf-8")


def scores_for_export(scores: pd.DataFrame) -> pd.DataFrame:
    """Scores in the weekly-scores file format (CONTRACT.md), item columns trimmed to those used."""
    cols = ["patient_id", "therapist_id", "week", "instrument", "score", "administered_on"]
    items = [c for c in scores.columns if c.startswith("item_") and scores[c].notna().any()]
    out = scores[cols + items].copy()
    for c in items:
        out[c] = out[c].astype("Int64")
    out["score"] = general_format(out["score"].to_numpy(dtype=np.float64))
    return out.sort_values(["patient_id", "week", "instrument"], ignore_index=True)


def general_format(values: np.ndarray) -> np.ndarray:
    """``f"{v:g}"`` of every value, vectorised for the whole numbers scores nearly always are
    (below 10**6 ``g`` writes them as plain integers); the others one by one."""
    whole = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 1e6) & ~np.signbit(values)
    out = np.empty(len(values), dtype=object)
    out[whole] = values[whole].astype(np.int64).astype(str)
    out[~whole] = [f"{v:g}" for v in values[~whole]]
    return out
