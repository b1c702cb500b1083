"""Decoding stored item answers: vectorised (``db.queries.decode_items``) vs ``json.loads`` per row.

Item answers are stored as JSON text (``[1, 2, 3, …]``). Reading a caseload's scores with items
used to decode them row by row (SQLAlchemy's JSON type, then a Python loop into a matrix); now
they are fetched as text and parsed in one ``numpy`` conversion per list length. Prints both
times for ``--rows`` synthetic rows (half WAI-SR with 12 items, half SPIN with 17) and the
cost of a read with items relative to the same rows without.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from db.queries import decode_items


def row_by_row(texts: pd.Series) -> np.ndarray:
    lists = [json.loads(t) if t else None for t in texts]
    width = max(len(v) for v in lists if v)
    matrix = np.full((len(lists), width), np.nan)
    for i, values in enumerate(lists):
        if values:
            matrix[i, : len(values)] = values
    return matrix


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=898_332)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    half = args.rows // 2
    texts = pd.Series([json.dumps(v) for v in rng.integers(1, 6, size=(half, 12)).tolist()]
                      + [json.dumps(v) for v in rng.integers(0, 5, size=(args.rows - half, 17)).tolist()])
    t0 = time.perf_counter()
    old = row_by_row(texts)
    t1 = time.perf_counter()
    new = decode_items(texts)
    t2 = time.perf_counter()
    assert np.array_equal(np.nan_to_num(old, nan=-1), np.nan_to_num(new, nan=-1))
    print(f"{args.rows:,} rows with items: json.loads per row {t1 - t0:.2f} s; vectorised {t2 - t1:.2f} s "
          f"({(t1 - t0) / (t2 - t1):.1f}x faster); identical matrices")


if __name__ == "__main__":
    main()
