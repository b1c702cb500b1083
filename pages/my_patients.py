"""My patients (``/``): the caseload, what needs attention first, with latest scores and sparklines."""

import streamlit as st

from core import instruments
from core.caseload import ATTENTION_LABELS, common_instrument, filter_attention, mark_new, open_reasons
from core.figures import OKABE_ITO
from ui.loaders import current_version, load_caseload, previous_visit
from ui.meeting_loaders import audit_once
from ui.pager import page_of
from ui.picker import patient_picker
from ui.session import live_fragment, require

actor = require()
version = current_version()
title = "My patients" if actor.role == "therapist" else "Patients"
st.title(title)
table, counts = load_caseload(actor, version)
since = previous_visit(actor, "my_patients")
table = mark_new(table, since)
if table.empty:
    st.info("No patients are on your caseload yet. An admin assigns patients to therapists; scores "
            "arrive through the weekly entry or an import.")
    st.stop()
listed = sorted(table["patient_id"].astype(str).tolist())  # the latest scores of every listed patient
audit_once(actor, "view_caseload_list", patients=listed, count=len(listed))

needing = int((table["priority"] < 99).sum())
summary = ", ".join(f"{n} {label}" for label, n in counts.items())
st.markdown(f"**{needing} of {len(table)} patients have open flags**" + (f" ({summary})." if summary else "."))
n_new = int(table["new"].sum())
if since is None:
    st.caption("From your next visit on, flags raised since your last visit are marked **New**.")
else:
    st.caption((f"**{n_new} {'patient has' if n_new == 1 else 'patients have'} flags new since your last visit** "
                if n_new else "**No flags are new since your last visit** ")
               + f"({since:%Y-%m-%d %H:%M} UTC)" + (": marked New below." if n_new else "."))
st.caption("Sorted by what needs attention first: risk item, new rupture, unrepaired rupture, reliable "
           "deterioration, missed questionnaires, then the rest. Open a patient by clicking their code.")

@live_fragment  # re-checks the login when the fragment reruns on its own (issue 14)
def caseload_table() -> None:
    """Filter, table and "Open a patient"; changing the filter reruns only this part of the page."""
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    chosen = left.multiselect("Show only patients with", open_reasons(table),
                              format_func=lambda r: ATTENTION_LABELS.get(r, r), placeholder="All patients",
                              key="attention_filter",
                              help="Keep only patients with an open flag of these kinds.")
    only_new = right.toggle("Only new since my last visit", key="only_new",
                            help="Patients with an open flag raised since you last opened this page.")
    shown = filter_attention(table, chosen, new_only=only_new)
    if chosen or only_new:
        st.caption(f"{len(shown)} of {len(table)} patients shown.")

    symptom = common_instrument(table["main_symptom"])
    symptom_range = ({"y_min": instruments.get(symptom).total_min, "y_max": instruments.get(symptom).total_max}
                     if symptom else {})
    wai = instruments.get("WAI-SR")
    columns = ["link", "new_mark", "attention", "open_in_words", "notices", "latest_alliance", "alliance_trend",
               "latest_program", "latest_symptom", "symptom_trend", "clinical_range", "last_questionnaire", "status"]
    if actor.role != "therapist":
        columns.insert(3, "therapist_id")
    page = page_of(shown, key="patients_page", noun="patients")
    st.dataframe(
        page, hide_index=True, width="stretch", placeholder="—", height=min(36 * (len(page) + 1) + 4, 1200),
        column_order=columns, key="caseload_table",
        column_config={
            "link": st.column_config.LinkColumn("Patient", display_text=r"patient=(.*)$", pinned=True),
            "new_mark": st.column_config.TextColumn("New", width="small",
                                                    help="An open flag raised since your last visit."),
            "attention": st.column_config.TextColumn("Needs attention", help="The most urgent open flag."),
            "open_in_words": st.column_config.TextColumn(
                "Open flags", width="medium",
                help="Every open or unrepaired flag, with the week it was raised. A rupture is a fall in the "
                     "alliance against the patient's own level; 'unrepaired' means it did not come back within "
                     "the repair window."),
            "latest_alliance": st.column_config.NumberColumn(
                "Alliance", format="%d", help=f"Latest therapist alliance (WAI-SR, {wai.total_min}–{wai.total_max}, "
                                              "higher = better)."),
            "alliance_trend": st.column_config.LineChartColumn(
                "Alliance course", y_min=wai.total_min, y_max=wai.total_max, color=OKABE_ITO["blue"],
                help="Therapist alliance (WAI-SR) week by week; missing weeks are left out."),
            "latest_program": st.column_config.NumberColumn(
                "Programme", format="%d", help="Latest alliance with the programme (WAI-P, 12–60, higher = better)."),
            "latest_symptom": st.column_config.NumberColumn(
                f"Symptoms ({symptom})" if symptom else "Symptoms", format="%d",
                help="Latest score of the patient's main symptom measure (SPIN, else PHQ-9, else GAD-7; "
                     "higher = worse)."),
            "symptom_trend": st.column_config.LineChartColumn(
                "Symptom course", **symptom_range, color=OKABE_ITO["vermillion"],
                help="The main symptom measure week by week (higher = worse)."),
            "last_questionnaire": st.column_config.NumberColumn(
                "Last week", format="%d", help="The treatment week of the latest questionnaire."),
            "notices": st.column_config.TextColumn(
                "Cannot check", width="medium",
                help="Not alerts: what the monitor cannot check for this patient (a self-harm item not answered "
                     "or not imported; no start date, so missed questionnaires are not detected)."),
            "clinical_range": st.column_config.TextColumn(
                "In clinical range", help="Symptom measures whose latest score is at or past the caseness cut-off "
                                          "(PHQ-9 10, GAD-7 8, SPIN 19), since the week the patient's current run "
                                          "there began. A state, not an alert."),
            "therapist_id": "Therapist", "status": "Status",
        },
    )

    left, right = st.columns([3, 1], vertical_alignment="bottom")
    listed = shown["patient_id"].tolist()
    opened = patient_picker(left, "Open a patient", listed, current=listed[0] if listed else None,
                            key="open_patient", help="In the order above: the most urgent first.")
    if right.button("Open patient", disabled=opened is None):
        st.switch_page("pages/patient.py", query_params={"patient": opened})


caseload_table()
