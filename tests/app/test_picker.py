"""The patient picker (ui/picker.py): every patient listed up to ``LISTED``; beyond, a search by any
part of a code, in any case, and the first ``LISTED`` matches listed, the current patient among them."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _picker_app() -> None:
    import streamlit as st

    import ui.picker

    ui.picker.LISTED = st.session_state.get("listed", 300)
    codes = [f"P{n:05d}" for n in range(1, 21)]
    chosen = ui.picker.patient_picker(st, "Patient", codes, current=st.session_state.get("current"), key="pick")
    st.write(f"chosen: {chosen}")


def _run(listed: int, current: str | None = None) -> AppTest:
    at = AppTest.from_function(_picker_app)
    at.session_state["listed"] = listed
    at.session_state["current"] = current
    return at.run()


def test_a_short_list_is_a_plain_selectbox_of_every_patient() -> None:
    at = _run(300, current="P00007")
    box = at.selectbox(key="pick")
    assert len(box.options) == 20 and box.value == "P00007" and not at.text_input
    assert at.markdown[0].value == "chosen: P00007"


def test_a_long_list_shows_the_first_ones_and_the_current_and_finds_any_other() -> None:
    at = _run(5, current="P00017")
    box = at.selectbox(key="pick")
    assert box.options == ["P00017", "P00001", "P00002", "P00003", "P00004", "P00005"]
    assert "the list shows the first 5" in box.help and box.value == "P00017"
    at.text_input(key="find_pick").set_value("p0001").run()  # any part of a code, in any case
    box = at.selectbox(key="pick")
    assert box.options[:2] == ["P00017", "P00010"] and len(box.options) == 6  # P00010-P00019 match; first 5
    assert "11 of 20 patients contain “P0001”" not in box.help and "10 of 20 patients contain “P0001”" in box.help
    box.set_value("P00012").run()
    assert at.markdown[0].value == "chosen: P00012"
    at.text_input(key="find_pick").set_value("0002").run()
    assert at.selectbox(key="pick").options == ["P00002", "P00020"]
    at.text_input(key="find_pick").set_value("X99").run()
    assert at.selectbox(key="pick").options == [] and at.markdown[0].value == "chosen: None"
    assert "No patient code contains “X99”" in at.caption[0].value
