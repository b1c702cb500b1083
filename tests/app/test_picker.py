"""The patient picker (ui/picker.py): every patient listed up to ``LISTED``; beyond, the first
``LISTED`` and the current one listed, any other code typed in and matched regardless of case."""

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
    assert len(box.options) == 20 and box.value == "P00007" and not box.proto.accept_new_options
    assert at.markdown[0].value == "chosen: P00007"


def test_a_long_list_shows_the_first_ones_and_the_current_and_takes_a_typed_code() -> None:
    at = _run(5, current="P00017")
    box = at.selectbox(key="pick")
    assert box.options == ["P00017", "P00001", "P00002", "P00003", "P00004", "P00005"]
    assert box.proto.accept_new_options and "5 of your 20 patients" in box.help
    assert box.value == "P00017"
    at.selectbox(key="pick").set_value("P00003").run()
    assert at.markdown[0].value == "chosen: P00003"


class _Typed:
    """Stands in for ``st``: its selectbox answers what the user typed into it (AppTest selects by
    index only, so it cannot type a new option)."""

    def __init__(self, typed: str | None) -> None:
        self.typed, self.seen = typed, {}

    def selectbox(self, label, options, **kwargs):  # type: ignore[no-untyped-def]
        self.seen = {"options": options, **kwargs}
        return self.typed


def test_a_typed_code_is_the_patients_own_whatever_its_case_and_an_unknown_one_comes_back_as_typed(
        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import ui.picker

    monkeypatch.setattr(ui.picker, "LISTED", 5)
    codes = [f"P{n:05d}" for n in range(1, 21)]
    typed = _Typed(" p00012 ")
    assert ui.picker.patient_picker(typed, "Patient", codes) == "P00012"
    assert typed.seen["accept_new_options"] and typed.seen["index"] is None and len(typed.seen["options"]) == 5
    assert ui.picker.patient_picker(_Typed("X99"), "Patient", codes) == "X99"
    assert ui.picker.patient_picker(_Typed(None), "Patient", codes) is None
