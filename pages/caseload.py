"""Caseload scan (``/caseload``): every open alert of the supervisor's team in one table.

Supervisors see their team's patients, admins everyone's (db.access); therapists are refused.
In the order a supervisor acts on them (``core.meeting.caseload_table``): urgent risk items,
unrepaired ruptures, high-severity alerts not addressed within a week (these three stand first),
then the other alerts not addressed within a week, then the rest.
"""

import streamlit as st

from core import clock
from core.caseload import FLAG_STATUS_LABELS, KIND_LABELS, mark_new
from core.clinic_figures import build_small_multiples
from core.markdown import text
from core.meeting import (
    OVERDUE_DAYS,
    SEVERITY_ORDER,
    filter_alerts,
    first_in_words,
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
from ui.pager import page_of
from ui.picker import patient_picker
from ui.session import live_fragment, require

#: The columns the alert table shows, left to right: what to act on and why come before the
#: details, so that they are on screen at 1440 px (only these and :data:`HIDDEN_COLUMNS` are sent to the
#: browser).
# The week beside the alert: one patient's two risk items of weeks 3 and 7 are two rows that differ in it.
TABLE_COLUMNS = ["patient_id", "new_mark", "act_on", "alert", "week", "therapist_id", "explanation", "status_words",
                 "age_days", "note", "rule_words", "severity"]
#: Sent with the table but not shown (the link, and the codes the labels stand for).
HIDDEN_COLUMNS = ["link", "urgent_first", "triage", "kind", "instrument", "status"]
#: Panels of the small multiples.
COURSES = 12

actor = require(roles=("supervisor", "admin"))
version = current_version()
st.title("Caseload")
scope = f"team {actor.team}" if actor.role == "supervisor" else "every team"
table = load_caseload_table(actor, version, clock.today())
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


@live_fragment  # re-checks the login when the fragment reruns on its own (issue 14)
def scan() -> None:
    """Filters, alert table, "Open a patient", per-therapist counts and (on request) the courses;
    changing a filter reruns only this part of the page."""
    with st.container(horizontal=True):
        therapists = st.multiselect("Therapist", therapist_options, placeholder="All therapists")
        kinds = st.multiselect("Kind", kind_options, placeholder="All kinds",
                               format_func=lambda k: KIND_LABELS.get(k, k.replace("_", " ")))
        severities = st.multiselect("Severity", severity_options, placeholder="All severities")
        statuses = st.multiselect("Status", status_options, placeholder="All statuses",
                                  format_func=lambda k: FLAG_STATUS_LABELS.get(k, k.replace("_", " ")))
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
               + new_words + "Select a row, or choose a patient below, to open their page.")
    st.markdown(f"**{first} stand{'s' if first == 1 else ''} first:** {first_in_words(shown)}. Then the other "
                f"alerts not addressed within {OVERDUE_DAYS} days, the oldest first; then recent ones and those "
                "addressed in feedback.")
    # blanks, not "None", where a therapist has written no note
    on_page = page_of(shown, key="alerts_page", noun="alerts")
    view = on_page[[*TABLE_COLUMNS, *HIDDEN_COLUMNS]].assign(note=on_page["note"].astype(object).fillna(""),
                                                              instrument=on_page["instrument"].astype(object).fillna(""))
    picked = st.dataframe(
        view, hide_index=True, width="stretch", placeholder="—",
        height=min(36 * (len(view) + 1) + 4, 640), key="caseload_table", on_select="rerun",
        selection_mode="single-row", column_order=TABLE_COLUMNS,
        column_config={
            "patient_id": st.column_config.TextColumn("Patient", pinned=True, width=70),
            "new_mark": st.column_config.TextColumn("New", width=42, help="Raised since your last visit"),
            "act_on": st.column_config.TextColumn(
                "Act on", width=205, help="First: an urgent risk item not yet addressed, an unrepaired rupture, or a "
                                          f"high-severity alert not addressed within {OVERDUE_DAYS} days."),
            "alert": st.column_config.TextColumn("Alert · questionnaire", width=190),
            "explanation": st.column_config.TextColumn("Why", width=420, help="Hover a cell for the whole text."),
            "status_words": st.column_config.TextColumn("Status", width=100),
            "week": st.column_config.NumberColumn("Week", format="%d", width=50),
            "age_days": st.column_config.NumberColumn("Age (days)", format="%d", width=80),
            "therapist_id": st.column_config.TextColumn("Therapist", width=100),
            "note": st.column_config.TextColumn("Therapist's note", width="medium"),
            "rule_words": st.column_config.TextColumn("Rule", width="medium"),
            "severity": st.column_config.TextColumn("Severity", width=80),
        },
    )
    # Open the patient in this tab (a link to a new tab would be a new session, asking to log in again).
    if picked.selection.rows:
        st.switch_page("pages/patient.py",
                       query_params={"patient": on_page["patient_id"].iloc[picked.selection.rows[0]]})
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    opened = patient_picker(left, "Open a patient", shown["patient_id"].unique().tolist(),
                            placeholder="Choose a patient of the table…", key="caseload_open_patient")
    if right.button("Open patient", disabled=opened is None, key="caseload_open_button"):
        st.switch_page("pages/patient.py", query_params={"patient": opened})
    st.download_button("Download this table (CSV)", data=csv_download(actor, shown, what="caseload"),
                       file_name=f"caseload-{clock.today():%Y-%m-%d}.csv", mime="text/csv", on_click="ignore",
                       icon=":material/download:")

    st.subheader("Per therapist")
    st.dataframe(therapist_counts(shown), hide_index=True, width="content", placeholder="—",
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
