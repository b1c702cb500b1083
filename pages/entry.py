"""Weekly entry (``/entry``): one questionnaire of one patient and week.

Choose the patient (only those you may see), the questionnaire and the week; enter the item
responses (or only the total); the total and subscales update as you type. Editing a stored
questionnaire asks for a reason, and a save that lost a race with someone else says so.
"""

import streamlit as st

from core import instruments
from core.validation import MAX_WEEK, summarise_items
from db.entry import NoSuchPatient
from ui.dataio import instrument_choices, load_entry, save_weekly_entry
from ui.loaders import current_version, load_patients
from ui.picker import patient_picker
from ui.session import require

actor = require(roles=("therapist", "supervisor", "admin"))
st.title("Weekly entry")
patients = load_patients(actor, current_version())
codes = patients["patient_id"].tolist()
if not codes:
    st.info("No patients are on your caseload yet, so there is nothing to enter. An admin assigns patients.")
    st.stop()

choices = instrument_choices()
left, middle, right = st.columns([2, 3, 1])
requested = st.query_params.get("patient")
code = patient_picker(left, "Patient", codes, current=requested,
                      help="Patients you may see: your caseload (supervisors: your team's).")
instrument = middle.selectbox("Questionnaire", list(choices), format_func=choices.get)
week = int(right.number_input("Week", min_value=1, max_value=MAX_WEEK, value=1, step=1))
if not code:
    st.info("Choose a patient, a questionnaire and the treatment week.")
    st.stop()

stored = load_entry(actor, code, instrument, week)
if isinstance(stored, NoSuchPatient):
    st.error(str(stored))
    st.stop()
inst = instruments.get(instrument)
key = f"{code}|{instrument}|{week}"
# The version read when editing of this week began: a later save must still find it.
read_version = st.session_state.setdefault(f"entry_version|{key}", stored.version if stored else None)

if stored is not None:
    st.info(f"Week {week} already has a {instrument} for patient {code}: total {stored.total:g} "
            f"(entered {stored.entered_at:%d %b %Y} by {stored.entered_by or 'an import'}, version {stored.version}). "
            f"Changing it asks for a reason; the old value stays in the audit trail.")

modes = ["Item responses", "Total only"]
mode = st.radio("Enter", modes, horizontal=True, key=f"mode|{key}",
                index=1 if stored is not None and stored.items is None else 0)
items: list[int | None] | None = None
total: float | None = None
if mode == "Item responses":
    st.caption(f"{inst.n_items} items, each {inst.item_min}–{inst.item_max}.")
    cols = st.columns(6)
    items = []
    for n in range(1, inst.n_items + 1):
        default = stored.items[n - 1] if stored is not None and stored.items else None
        text = inst.item_label(n)
        value = cols[(n - 1) % 6].number_input(text if len(text) < 40 else f"Item {n}", min_value=inst.item_min,
                                               max_value=inst.item_max, value=default, step=1,
                                               key=f"item|{key}|{n}", help=text if len(text) >= 40 else None)
        items.append(None if value is None else int(value))
    live_total, subscales = summarise_items(instrument, items)
    metrics = st.columns(1 + len(subscales))
    metrics[0].metric("Total", "–" if live_total is None else f"{live_total:g}",
                      help=f"Range {inst.total_min:g}–{inst.total_max:g}; shown when every item is answered.")
    for column, (name, value) in zip(metrics[1:], subscales.items(), strict=True):
        column.metric(name.capitalize(), "–" if value is None else f"{value:g}")
else:
    total = st.number_input(f"Total ({inst.total_min:g}–{inst.total_max:g})", min_value=float(inst.total_min),
                            max_value=float(inst.total_max), value=stored.total if stored is not None else None,
                            step=1.0, key=f"total|{key}")

administered = st.date_input("Administered on (optional)", value=stored.administered_on if stored else None,
                             key=f"date|{key}", format="YYYY-MM-DD")
reason = None
if stored is not None:
    reason = st.text_input("Reason for the change", key=f"reason|{key}",
                           placeholder="e.g. typing error on the paper form")

if st.button("Save", type="primary"):
    ok, message, version = save_weekly_entry(actor, code=code, instrument=instrument, week=week, items=items,
                                             total=total, administered_on=administered, read_version=read_version,
                                             reason=reason)
    if ok:
        st.session_state[f"entry_version|{key}"] = version
        st.success(message)
    else:
        st.error(message)
        st.session_state["entry_stale"] = key if "reload the page" in message.lower() else None

if st.session_state.get("entry_stale") == key and st.button("Reload the stored values"):
    for name in [k for k in st.session_state if isinstance(k, str) and k.endswith(key)]:
        del st.session_state[name]
    st.session_state["entry_stale"] = None
    st.rerun()
