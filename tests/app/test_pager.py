"""Long tables a page at a time (ui/pager.py)."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _table_app() -> None:
    import pandas as pd
    import streamlit as st

    from ui.pager import page_of

    frame = pd.DataFrame({"n": range(1, st.session_state.get("rows", 1200) + 1)})
    page = page_of(frame, key="page", noun="patients")
    st.write(f"first {page['n'].iloc[0]} last {page['n'].iloc[-1]} count {len(page)}")


def _run(rows: int) -> AppTest:
    at = AppTest.from_function(_table_app)
    at.session_state["rows"] = rows
    return at.run()


def test_a_short_table_is_shown_whole_without_a_pager() -> None:
    at = _run(500)
    assert at.markdown[0].value == "first 1 last 500 count 500" and not at.number_input


def test_a_long_table_is_shown_a_page_at_a_time_and_a_shorter_one_keeps_a_page_that_exists() -> None:
    at = _run(1200)
    assert at.markdown[0].value == "first 1 last 500 count 500"
    assert at.number_input(key="page").label == "Page (of 3)"
    assert "Showing patients 1–500 of 1,200" in at.caption[0].value
    at.number_input(key="page").set_value(3).run()
    assert at.markdown[0].value == "first 1001 last 1200 count 200"
    assert "Showing patients 1,001–1,200 of 1,200" in at.caption[0].value
    at.session_state["rows"] = 700  # a filter leaves two pages: the last one is shown
    at.run()
    assert at.markdown[0].value == "first 501 last 700 count 200" and at.number_input(key="page").value == 2
