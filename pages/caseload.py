"""Caseload scan (``/caseload``): every open alert of the supervisor's team in one table.

Supervisors see their team's patients, admins everyone's (db.access); therapists are refused.
Unrepaired ruptures and alerts not addressed within a week stand first.
"""

import datetime as dt

import streamlit as st

from core.caseload import mark_new
from core.clinic_figures import build_small_multiples
from core.markdown import text
from core.meeting import (
    OVERDUE_DAYS,
    SEVERITY_ORDER,
    filter_alerts,
    flagged_courses,
    flagged_patients,
    therapist_counts,
)
from ui.loaders import previous_visit
from ui.meeting_loaders import (
    audit_once,
    csv_download,
    current_version,
    load_blind_spots,
    load_caseload_table,
    load_course_scores,
)
from ui.session import require

#: The columns the alert table shows (only these and ``link`` are sent to the browser).
TABLE_COLUMNS = ["urgent_first", "new_mark", "patient_id", "therapist_id", "kind", "instrument", "rule", "severity",
                 "week", "age_days", "status", "note", "explanation"]
#: Panels of the small multiples.
COURSES = 12

actor = require(roles=("supervisor", "admin"))
version = current_version()
st.title("Caseload")
scope = f"team {actor.team}" if actor.role == "supervisor" else "every team"
table = load_caseload_table(actor, version, dt.date.today())
since = previous_visit(actor, "caseload")
table = mark_new(table, since)
audit_once(actor, "view_caseload", alerts=len(table))
blind = load_blind_spots(actor, version)
if len(blind):
    words = {"risk_unchecked": "the self-harm item was not answered or not imported (it cannot be checked)",
             "no_calendar": "no start date is stored (missed questionnaires cannot be detected)"}
    lines = []
    for notice, group in blind.groupby("notice", sort=False):
        codes = sorted(group["patient_id"].unique())
        listed = ", ".join(codes[:8]) + (f" and {len(codes) - 8} more" if len(codes) > 8 else "")
        lines.append(f"- {len(codes)} patient{'s' if len(codes) != 1 else ''}: {words.get(notice, notice)} "
                     f"— {text(listed)}")
    st.info("**Not alerts, but the monitor cannot check everything:**\n" + "\n".join(lines),
            icon=":material/info:")
if table.empty:
    st.info(f"No open alerts in {scope}. New alerts appear here as questionnaires arrive.")
    st.stop()


# What the filters offer, once per page run (a filter's rerun of the fragment below reuses them).
therapist_options = sorted(table["therapist_id"].dropna().unique())
kind_options = sorted(table["kind"].dropna().unique())
severity_options = [s for s in SEVERITY_ORDER if s in set(table["severity"])]
status_options = sorted(table["status"].dropna().unique())
oldest = int(table["age_days"].max()) if table["age_days"].notna().any() else 0
n_new = int(table["new"].sum())


@st.fragment
def scan() -> None:
    """Filters, alert table, "Open a patient", per-therapist counts and (on request) the courses;
    changing a filter reruns only this part of the page."""
    with st.container(horizontal=True):
        therapists = st.multiselect("Therapist", therapist_options, placeholder="All therapists")
        kinds = st.multiselect("Kind", kind_options, placeholder="All kinds", format_func=lambda k: k.replace("_", " "))
        severities = st.multiselect("Severity", severity_options, placeholder="All severities")
        statuses = st.multiselect("Status", status_options, placeholder="All statuses")
        only_new = st.toggle("Only new since my last visit",
                             help="Alerts raised since you last opened the caseload (the date is above the table).")
    min_age, max_age = st.slider("Age in days (since the flagged week was administered)", 0, max(oldest, 1),
                                 (0, max(oldest, 1)))
    shown = filter_alerts(table, therapists=therapists, kinds=kinds, severities=severities, statuses=statuses,
                          min_age=min_age if min_age > 0 else None, max_age=max_age if max_age < oldest else None,
                          new_only=only_new)

    first = int(shown["urgent_first"].sum())
    new_words = (f"{n_new} new since your last visit ({since:%Y-%m-%d %H:%M} UTC). " if since is not None else
                 "From your next visit on, alerts raised since your last visit are marked New. ")
    st.caption(f"{len(shown)} of {len(table)} alerts in {scope}, for {shown['patient_id'].nunique()} patients. "
               + new_words +
               f"{first} stand first: risk items, unrepaired ruptures and alerts not addressed within "
               f"{OVERDUE_DAYS} days. "
               "Select a row, or choose a patient below, to open their page.")
    # blanks, not "None", where a therapist has written no note or a flag has no instrument
    # (a patient-level flag such as missed questionnaires)
    view = shown[[*TABLE_COLUMNS, "link"]].assign(note=shown["note"].astype(object).fillna(""),
                                                  instrument=shown["instrument"].astype(object).fillna(""))
    picked = st.dataframe(
        view, hide_index=True, width="stretch",
        height=min(36 * (len(shown) + 1) + 4, 640), key="caseload_table", on_select="rerun",
        selection_mode="single-row", column_order=TABLE_COLUMNS,
        column_config={
            "urgent_first": st.column_config.CheckboxColumn("First", help="Risk item, unrepaired rupture, or not "
                                                            f"addressed within {OVERDUE_DAYS} days", width="small"),
            "new_mark": st.column_config.TextColumn("New", width="small", help="Raised since your last visit"),
            "patient_id": st.column_config.TextColumn("Patient", pinned=True),
            "therapist_id": "Therapist", "kind": "Kind", "instrument": "Instrument", "rule": "Rule",
            "severity": "Severity",
            "week": st.column_config.NumberColumn("Week", format="%d"),
            "age_days": st.column_config.NumberColumn("Age (days)", format="%d"),
            "status": "Status",
            "note": st.column_config.TextColumn("Therapist's note", width="medium"),
            "explanation": st.column_config.TextColumn("Why", width="large"),
        },
    )
    # Open the patient in this tab (a link to a new tab would be a new session, asking to log in again).
    if picked.selection.rows:
        st.switch_page("pages/patient.py",
                       query_params={"patient": shown["patient_id"].iloc[picked.selection.rows[0]]})
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    opened = left.selectbox("Open a patient", shown["patient_id"].unique().tolist(), index=None,
                            placeholder="Choose a patient of the table…", key="caseload_open_patient")
    if right.button("Open patient", disabled=opened is None, key="caseload_open_button"):
        st.switch_page("pages/patient.py", query_params={"patient": opened})
    st.download_button("Download this table (CSV)", data=csv_download(actor, shown, what="caseload"),
                       file_name=f"caseload-{dt.date.today():%Y-%m-%d}.csv", mime="text/csv", on_click="ignore",
                       icon=":material/download:")

    st.subheader("Per therapist")
    st.dataframe(therapist_counts(shown), hide_index=True, width="content",
                 column_config={"therapist_id": "Therapist", "therapist_name": "Name", "alerts": "Alerts",
                                "patients": "Patients", "unrepaired_ruptures": "Unrepaired ruptures",
                                "overdue": f"Not addressed > {OVERDUE_DAYS} days", "addressed": "Addressed"})

    st.subheader("Alliance courses of flagged patients")
    # Drawn on request: twelve plotly panels cost ~0.5 s to build and ~1.4 s of plotly.js layout,
    # which would hold up the table on every visit and every filter (bench/README.md).
    if not st.toggle(f"Show the alliance courses of up to {COURSES} flagged patients", key="caseload_courses",
                     help="Small multiples of the patients of the table above, those with a rupture or low "
                          "alliance first."):
        return
    codes = flagged_patients(shown, limit=COURSES)
    courses = flagged_courses(load_course_scores(actor, version, tuple(codes)), shown, limit=COURSES)
    st.caption(f"Up to {COURSES} patients of the table above, those with a rupture or low alliance first. Dark "
               "blue: therapist alliance (WAI-SR); light blue: alliance with the program (WAI-P); triangles: "
               "flagged weeks.")
    st.plotly_chart(build_small_multiples(courses, flags=shown), width="stretch", key="caseload_multiples")


scan()
