"""Long tables a page at a time: an admin's 10,000 patients or 7,000 alerts are not sent whole to
the browser on every filter change (issue 19: a cleared filter took 0.6-0.7 s to redraw them)."""

from __future__ import annotations

import math

import pandas as pd
import streamlit as st

#: Rows per page of a long table; a table this long or shorter is shown whole.
PAGE_ROWS = 500


def page_of(frame: pd.DataFrame, *, key: str, noun: str = "rows") -> pd.DataFrame:
    """The rows of ``frame`` on the page the user chose (all of them up to :data:`PAGE_ROWS`).

    Draws, above the table, a page number and a caption saying which rows are shown, in the
    table's own order (the most urgent first where the page sorts so). A filter that leaves
    fewer pages than the page chosen shows the last one.
    """
    n = len(frame)
    if n <= PAGE_ROWS:
        return frame
    pages = math.ceil(n / PAGE_ROWS)
    if int(st.session_state.get(key, 1)) > pages:
        st.session_state[key] = pages
    left, right = st.columns([1, 3], vertical_alignment="bottom")
    page = int(left.number_input(f"Page (of {pages})", min_value=1, max_value=pages, value=1, step=1, key=key))
    start = (page - 1) * PAGE_ROWS
    right.caption(f"Showing {noun} {start + 1:,}–{min(start + PAGE_ROWS, n):,} of {n:,}, in the order of the "
                  f"table; {PAGE_ROWS} a page. Filter to narrow them down.")
    return frame.iloc[start:start + PAGE_ROWS]
