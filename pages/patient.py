"""The patient page (``/patient?patient=CODE``): the weekly course against the patient's own average.

A code the user may not see answers exactly like one that does not exist: "No such patient".
"""

import streamlit as st

from core.figures import build_patient_figure
from ui.loaders import audit_view, current_version, load_patient, load_patients
from ui.session import require

NO_SUCH_PATIENT = ("No such patient. Check the code, or choose a patient from the list; you can only "
                   "open patients on your own caseload (supervisors: your team's).")

actor = require()
version = current_version()
patients = load_patients(actor, version)
codes = patients["patient_id"].tolist()
requested = st.query_params.get("patient")
index = codes.index(requested) if requested in codes else None
chosen = st.selectbox("Patient", codes, index=index, placeholder="Choose a patient…",
                      help="Patients you may see: your caseload (supervisors: your team's).")
if chosen and chosen != requested:
    st.query_params["patient"] = chosen
    requested = chosen
if not requested:
    st.info("Choose a patient to see their weekly course.")
    st.stop()

info, scores, flags = load_patient(actor, requested, version)
if info is None:
    st.error(NO_SUCH_PATIENT)
    st.stop()
audit_view(actor, info.code)

st.title(f"Patient {info.code}")
st.caption(f"Therapist: {info.therapist_display or info.therapist or 'none'} · status: "
           f"{info.status.replace('_', ' ')}"
           + (f" · started {info.start_date:%d %b %Y}" if info.start_date else ""))
if scores.empty:
    st.info("No questionnaires are stored for this patient yet.")
    st.stop()
full = st.toggle("Compare with the whole course's average (retrospective)", value=False,
                 help="Off: each week is compared with the average and spread of the weeks before it, "
                      "which is what the flags use. On: with the average of all weeks, for looking back.")
figure = build_patient_figure(scores, flags=flags, average="full" if full else "running")
st.plotly_chart(figure, width="stretch", key="patient_course")
st.caption("Solid line: the week's score (gaps are missing weeks). Dotted line and band: the patient's own "
           "average and ±1 of their own standard deviation. Marked points are flags; hover for the reason.")
if not flags.empty:
    st.subheader("Flags")
    st.dataframe(flags, hide_index=True, width="stretch",
                 column_order=["week", "instrument", "kind", "severity", "status", "explanation"],
                 column_config={"week": st.column_config.NumberColumn("Week", format="%d"),
                                "explanation": st.column_config.TextColumn("Why", width="large")})
