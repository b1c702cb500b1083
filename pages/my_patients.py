"""My patients (``/``): the caseload, what needs attention first."""

import streamlit as st

from core.caseload import attention_table
from ui.loaders import current_version, load_flags, load_patients
from ui.session import require

actor = require()
version = current_version()
title = "My patients" if actor.role == "therapist" else "Patients"
st.title(title)
patients = load_patients(actor, version)
if patients.empty:
    st.info("No patients are on your caseload yet. An admin assigns patients to therapists; scores "
            "arrive through the weekly entry or an import.")
    st.stop()
table = attention_table(patients, load_flags(actor, version))
needing = int((table["priority"] < 99).sum())
st.caption(f"{len(table)} patients; {needing} with open flags. Sorted by what needs attention first.")
st.dataframe(
    table, hide_index=True, width="stretch", height=min(36 * (len(table) + 1) + 4, 1200),
    column_order=["link", "attention", "open_in_words", "last_week", "therapist_id", "status"],
    column_config={
        "link": st.column_config.LinkColumn("Patient", display_text=r"patient=(.*)$"),
        "attention": "Needs attention", "open_in_words": "Open flags",
        "last_week": st.column_config.NumberColumn("Last week", format="%d"),
        "therapist_id": "Therapist", "status": "Status",
    },
)
